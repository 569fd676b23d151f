"""Turning a QA record into ChatML training tokens with the prompt masked out of the loss."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100  # label of tokens that do not count in the loss (the prompt)
TARGET_STYLES = ("qwen3", "seed")


def prompt_text(question: str, system_prompt: str) -> str:
    """The ChatML prompt up to the assistant's turn, as Qwen3 and the seed code lay it out."""
    return (
        f"<|im_start|>system\n{system_prompt}<|im_end|>\n"
        f"<|im_start|>user\n{question}<|im_end|>\n"
        f"<|im_start|>assistant\n"
    )


def target_text(think: str, answer: str, style: str, eos_token: str = "<|im_end|>") -> str:
    """The assistant's side: reasoning in ``<think>`` then the answer, with its end token.

    ``qwen3``: Qwen3's reasoning layout, ``<think>\\n…\\n</think>\\n\\n answer``, closed by
    ``<|im_end|>``. ``seed``: the original training code's ``<think>{think}</think> \\n
    {answer}``; its end token (the pad token) is appended as an id by :func:`encode_records`.
    """
    if style == "qwen3":
        return f"<think>\n{think.strip()}\n</think>\n\n{answer.strip()}{eos_token}"
    if style == "seed":
        return f"<think>{think}</think> \n {answer}"
    raise ValueError(f"format.target_style: unknown style {style!r} (one of {TARGET_STYLES})")


@dataclass
class Encoded:
    """Tokenized examples, one list entry per record."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    prompt_tokens: list[int]  # before truncation
    target_tokens: list[int]  # before truncation
    kept_target_tokens: list[int]  # after truncation

    def __len__(self) -> int:
        return len(self.input_ids)

    def rows(self) -> list[dict[str, Any]]:
        return [{"input_ids": i, "labels": lab} for i, lab in zip(self.input_ids, self.labels, strict=True)]


def encode_records(
    records: Sequence[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    system_prompt: str,
    target_style: str,
    max_length: int,
) -> Encoded:
    """Tokenize records in one batch: prompt labels set to -100, truncated to ``max_length``.

    Truncation keeps the prompt and cuts the end of the target, as the original code did.
    """
    prompts = [prompt_text(r["question"], system_prompt) for r in records]
    eos = "<|im_end|>"
    targets = [target_text(r["think"], r["answer"], target_style, eos) for r in records]
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    t_ids = tokenizer(targets, add_special_tokens=False)["input_ids"]
    if target_style == "seed":
        t_ids = [ids + [tokenizer.pad_token_id] for ids in t_ids]
    out = Encoded([], [], [], [], [])
    for p, t in zip(p_ids, t_ids, strict=True):
        ids = (p + t)[:max_length]
        labels = ([IGNORE_INDEX] * len(p) + t)[:max_length]
        out.input_ids.append(ids)
        out.labels.append(labels)
        out.prompt_tokens.append(len(p))
        out.target_tokens.append(len(t))
        out.kept_target_tokens.append(max(0, len(ids) - len(p)))
    return out


THINK_BLOCK = re.compile(r"^\s*<think>(.*?)</think>(.*)$", re.DOTALL)


@dataclass
class ParsedReply:
    """A reply split into reasoning and answer; ``valid`` per :func:`parse_reply`."""

    think: str
    answer: str
    valid: bool


def parse_reply(text: str) -> ParsedReply:
    """Split a reply into its ``<think>`` block and the answer after it.

    Valid (think-format validity): the reply opens with exactly one ``<think>…</think>``
    block, contains no other think tag, and a non-empty answer follows it. An invalid reply's
    whole text counts as its answer.
    """
    match = THINK_BLOCK.match(text)
    if match is None or text.count("<think>") != 1 or text.count("</think>") != 1:
        return ParsedReply("", text.strip(), False)
    answer = match.group(2).strip()
    return ParsedReply(match.group(1).strip(), answer, bool(answer))
