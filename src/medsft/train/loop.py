"""The pipeline's ``Trainer``: padded evaluation batches beside flattened training ones, and
the causal-LM loss computed without the full logits (``medsft.modeling.loss``)."""

from __future__ import annotations

from typing import Any

from peft import PeftModel
from torch import nn
from transformers import Trainer

from medsft.modeling.loss import causal_lm_loss, final_hidden_states


class PipelineTrainer(Trainer):
    """A ``Trainer`` with two additions, both off unless asked for:

    - ``eval_data_collator``: evaluation batches come from it (padded) while training batches
      come from ``data_collator`` (flattened under ``model.packing``);
    - ``loss_chunk_size``: training steps compute the loss with
      :func:`~medsft.modeling.loss.linear_cross_entropy`, that many positions at a time. The
      model's forward pass stops at the final hidden states (its output layer runs on one
      position only). Evaluation with ``prediction_loss_only`` computes its loss the same
      way (equal to transformers' loss: tests/test_loss.py), so a trimmed-vocabulary model,
      which has no transformers loss, evaluates too.
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
        chunked = self.loss_chunk_size is not None and "labels" in inputs
        if not chunked or (return_outputs and not self.args.prediction_loss_only):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        inputs.pop("shift_labels", None)  # not produced by our collators; labels are shifted here
        lm = self.causal_lm()
        with final_hidden_states(lm) as captured:
            # Through the (possibly distributed) wrapper, so its forward bookkeeping runs; the
            # output layer sees the last position only and no loss is computed there.
            model(**inputs, logits_to_keep=1)
        loss = causal_lm_loss(lm, captured[-1], labels, num_items_in_batch, self.loss_chunk_size)
        # As Trainer.compute_loss: a loss normalised by the tokens of all devices is scaled back up
        # by their number, since the gradients (and the evaluation losses) are averaged over devices.
        # Evaluation too: its num_items_in_batch counts every device's tokens as well, so an
        # unscaled eval loss under N processes would read 1/N of the true one.
        args = self.args
        if args.average_tokens_across_devices and self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            scale = self.accelerator.num_processes // self.get_tp_size()
            loss = loss * (scale if args.n_gpu <= 1 else args.n_gpu)
        if return_outputs:  # evaluation: the loss alone (prediction_loss_only)
            return loss, {"loss": loss}
        return loss
