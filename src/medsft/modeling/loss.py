"""The causal-LM loss without the full logits: the output layer and cross-entropy fused,
chunk by chunk.

With a 152k-token vocabulary the logits of a training batch are the largest tensor of the
step (4 x 2048 positions: 1.25 G floats, 5 GB in float32), and transformers' loss reads and
writes them several times (upcast, log-softmax, its backward). Here each chunk of positions
computes its logits, its loss and, at once, its gradients: d(loss)/d(logits) is
``softmax - onehot``, which gives the gradients of the hidden states and of the output
layer's weight in two matrix products. No logits outlive their chunk and nothing is
recomputed in the backward pass, which only scales the stored gradients.

Liger's fused linear cross-entropy (``use_liger_kernel``) does the same on CUDA with Triton
kernels; this one is plain torch, so it also runs on CPU. The loss equals
``transformers.loss.loss_utils.ForCausalLMLoss``: labels shifted by one, -100 ignored, a sum
over ``num_items_in_batch`` when the Trainer passes it, else a mean over the real targets.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from peft.utils.other import ModulesToSaveWrapper
from torch import nn

from medsft.core.config import ConfigError
from medsft.data.formatting import IGNORE_INDEX
from medsft.modeling.vocab import TrimmedHead, output_rows


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum of the cross-entropy of ``hidden @ weight.T`` against ``targets``, gradients
    computed in the forward pass, ``chunk_size`` rows at a time."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int):
        needs_weight_grad = weight.requires_grad
        grad_hidden = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device)
        grad_weight = None
        if needs_weight_grad:
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        weight_in = None
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start : start + chunk_size]
            t = targets[start : start + chunk_size]
            # As the model would: logits in the compute dtype (autocast applies), loss in float32.
            raw = nn.functional.linear(h, weight)
            compute_dtype = raw.dtype
            logits = raw.float()
            # torch's (log-)softmax kernels, not logsumexp and exp: on CPU those two go through
            # MKL's vector math, whose results depend on the CPU's vendor (medsft.core.runtime).
            total += nn.functional.cross_entropy(logits, t, reduction="sum")
            # d(loss)/d(logits) = softmax - onehot, then the two products of the output layer's
            # backward pass in the dtype of its forward.
            grad_logits = torch.softmax(logits, dim=-1)
            del raw, logits
            grad_logits[torch.arange(t.shape[0], device=t.device), t] -= 1.0
            grad_logits = grad_logits.to(compute_dtype)
            if weight_in is None:
                weight_in = weight.to(compute_dtype)
            grad_hidden[start : start + chunk_size] = torch.mm(grad_logits, weight_in)
            if needs_weight_grad:
                grad_weight += torch.mm(grad_logits.t(), h.to(compute_dtype))
        ctx.save_for_backward(grad_hidden, grad_weight if needs_weight_grad else torch.empty(0))
        ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.needs_weight_grad = needs_weight_grad
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        d_hidden = (grad_hidden * grad_output).to(hidden_dtype)
        d_weight = (grad_weight * grad_output).to(weight_dtype) if ctx.needs_weight_grad else None
        return d_hidden, d_weight, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """The causal-LM loss of ``hidden`` (batch x positions x hidden) under the output layer
    ``weight`` (vocab x hidden) against unshifted ``labels`` (batch x positions), as
    transformers' ``ForCausalLMLoss`` computes it from the logits."""
    if chunk_size < 1:
        raise ConfigError(f"model.loss_chunk_size: expected a positive number of positions, got {chunk_size}")
    shifted = nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].reshape(-1).to(hidden.device)
    keep = (shifted != IGNORE_INDEX).nonzero().squeeze(-1)
    # Positions without a target (prompts, padding, the last position) never reach the output layer.
    states = hidden.reshape(-1, hidden.shape[-1]).index_select(0, keep)
    total = _LinearCrossEntropy.apply(states, weight, shifted.index_select(0, keep), chunk_size)
    if num_items_in_batch is not None:
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(total.device)
        return total / num_items_in_batch
    return total / keep.numel()  # nan when nothing is a target, as cross_entropy's mean


def output_layer(model: nn.Module) -> nn.Linear:
    """``model``'s output layer as its forward pass uses it: the trained copy peft keeps under
    ``modules_to_save``, else the layer itself. Raise a :class:`ConfigError` when it is not a
    plain bias-free linear layer with a floating-point weight (a trimmed-vocabulary head,
    :class:`~medsft.modeling.vocab.TrimmedHead`, is one)."""
    head = model.get_output_embeddings()
    if isinstance(head, ModulesToSaveWrapper):
        if head.disable_adapters or head.active_adapters[0] not in head.modules_to_save:
            head = head.original_module
        else:
            head = head.modules_to_save[head.active_adapters[0]]
    config = model.config
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        raise ConfigError("model.loss_chunk_size: the model rescales its logits, which the chunked loss does not")
    if type(head) not in (nn.Linear, TrimmedHead) or head.bias is not None or not head.weight.is_floating_point():
        raise ConfigError(
            f"model.loss_chunk_size: the output layer is a {type(head).__name__}, not a plain bias-free "
            "floating-point nn.Linear (a LoRA or a quantized output layer); set model.loss_chunk_size=null"
        )
    return head


def output_weight(model: nn.Module) -> torch.Tensor:
    """The weight of ``model``'s output layer as its forward pass uses it (:func:`output_layer`)."""
    return output_layer(model).weight


def causal_lm_loss(
    model: nn.Module,
    hidden: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """:func:`linear_cross_entropy` of the final hidden states of ``model`` (the causal LM
    under peft's wrappers) against real-id ``labels``, on the rows of its output layer."""
    weight, targets = output_rows(output_layer(model), labels)
    return linear_cross_entropy(hidden, weight, targets, num_items_in_batch, chunk_size)


@contextmanager
def final_hidden_states(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward pass of ``model`` (the causal LM) appends its decoder's
    output, the final hidden states, to the yielded list."""
    captured: list[torch.Tensor] = []
    hook = model.get_decoder().register_forward_hook(lambda _m, _i, out: captured.append(out[0]))
    try:
        yield captured
    finally:
        hook.remove()
