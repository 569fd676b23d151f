"""Replies from a chat model: the one generation path of evaluate, chat and export.

``generation`` is the config's ``generation`` section: ``transformers.GenerationConfig``
fields (``max_new_tokens``, ``do_sample``, ``temperature``, ``top_p``, ``repetition_penalty``…),
chosen per model profile (``conf/generation/``). A reply ends at the first of
:data:`REPLY_ENDS`; sampling, when asked for, is seeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from medsft.core.sampling import generate_kwargs

# Where a reply ends: Qwen3's end of turn and end of text (both are end tokens in Qwen3's
# generation_config.json), and the start of another turn (a model that writes
# "<|im_start|>user" has left its own turn; chat would show it as part of the answer).
REPLY_ENDS = ("<|im_end|>", "<|endoftext|>", "<|im_start|>")


@torch.no_grad()
def generate_replies(
    model,
    tokenizer,
    prompts: Sequence[list[int]],
    generation: dict[str, Any],
    batch_size: int = 8,
    seed: int = 42,
    token_counts: list[int] | None = None,
    progress: bool = True,
) -> list[str]:
    """Generate a reply to each prompt (token ids) in left-padded batches.

    Returns the decoded text after each prompt, special tokens kept, up to the first of
    :data:`REPLY_ENDS`; the number of tokens generated per reply is appended to ``token_counts``.
    With ``do_sample`` the global RNG is seeded with ``seed`` first.
    """
    device = next(model.parameters()).device
    stop_ids = [tokenizer.convert_tokens_to_ids(token) for token in REPLY_ENDS]
    pad_id = tokenizer.pad_token_id
    kwargs = generate_kwargs(generation)
    if kwargs["do_sample"]:
        torch.manual_seed(seed)
    outputs: list[str] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="generate", leave=False, disable=not progress):
        batch = prompts[start : start + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prompt in enumerate(batch):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            eos_token_id=stop_ids,
            pad_token_id=pad_id,
            **kwargs,
        )
        for row in out[:, width:].tolist():
            row = row[: next((i for i, t in enumerate(row) if t in stop_ids), len(row))]
            if token_counts is not None:
                token_counts.append(len(row))
            outputs.append(tokenizer.decode(row, skip_special_tokens=False))
    return outputs
