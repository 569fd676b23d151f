"""The pipeline's ``Trainer``: padded evaluation batches beside flattened training ones, and
the causal-LM loss computed without the full logits (``medsft.train.loss``)."""

from __future__ import annotations

from typing import Any

import torch
from peft import PeftModel
from torch import nn
from transformers import Trainer

from medsft.train.loss import linear_cross_entropy, output_weight


class PipelineTrainer(Trainer):
    """A ``Trainer`` with two additions, both off unless asked for:

    - ``eval_data_collator``: evaluation batches come from it (padded) while training batches
      come from ``data_collator`` (flattened under ``model.packing``);
    - ``loss_chunk_size``: training steps compute the loss with
      :func:`~medsft.train.loss.linear_cross_entropy`, that many positions at a time. The
      model's forward pass stops at the final hidden states (its output layer runs on one
      position only); evaluation keeps transformers' own loss, so ``eval_loss`` is computed
      the same way with the option on or off.
    """

    def __init__(self, *args: Any, eval_data_collator: Any = None, loss_chunk_size: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator
        self.loss_chunk_size = loss_chunk_size

    def get_eval_dataloader(self, eval_dataset=None):
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator = self.data_collator
        self.data_collator = self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def causal_lm(self) -> nn.Module:
        """The transformers model under the accelerator's and peft's wrappers."""
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model() if isinstance(model, PeftModel) else model

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.loss_chunk_size is None or return_outputs or not model.training or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        inputs.pop("shift_labels", None)  # not produced by our collators; labels are shifted here
        lm = self.causal_lm()
        captured: list[torch.Tensor] = []
        hook = lm.get_decoder().register_forward_hook(lambda _m, _i, out: captured.append(out[0]))
        try:
            # Through the (possibly distributed) wrapper, so its forward bookkeeping runs; the
            # output layer sees the last position only and no loss is computed there.
            model(**inputs, logits_to_keep=1)
        finally:
            hook.remove()
        loss = linear_cross_entropy(captured[-1], output_weight(lm), labels, num_items_in_batch, self.loss_chunk_size)
        # As Trainer.compute_loss: a loss normalised by the tokens of all devices is scaled back up
        # by their number, since the gradients are averaged over devices.
        args = self.args
        if args.average_tokens_across_devices and self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            scale = self.accelerator.num_processes // self.get_tp_size()
            loss = loss * (scale if args.n_gpu <= 1 else args.n_gpu)
        return loss
