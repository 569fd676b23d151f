"""Turning a QA record into ChatML training tokens with the prompt masked out of the loss."""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100  # label of tokens that do not count in the loss (the prompt)
TARGET_STYLES = ("qwen3", "seed")

# A formatted conversation is a list of parts: structural tokens of the chat format, which
# are encoded as their ids, and text, which is encoded as text whatever it contains. A
# record whose answer holds "<|im_end|>" thus trains on the characters, never on a control
# token: the labels hold exactly the structural tokens of the format.
Part = tuple[str, bool]  # (string, is a structural token)


def _token(name: str) -> Part:
    return (name, True)


def _text(text: str) -> Part:
    return (text, False)


def prompt_parts(question: str, system_prompt: str) -> list[Part]:
    """The ChatML prompt up to the assistant's turn, as Qwen3 and the seed code lay it out."""
    return [*_turn("system", system_prompt), *_turn("user", question), _token("<|im_start|>"), _text("assistant\n")]


def _turn(role: str, content: str) -> list[Part]:
    return [_token("<|im_start|>"), _text(f"{role}\n{content}"), _token("<|im_end|>"), _text("\n")]


def chat_parts(system_prompt: str, history: Sequence[tuple[str, str]], question: str, think: bool) -> list[Part]:
    """ChatML of a conversation: system, earlier turns (answers only, as Qwen3 keeps history),
    the question, and the assistant's turn (prefilled with an empty ``<think>`` block when
    ``think`` is off, Qwen3's non-thinking mode)."""
    parts = _turn("system", system_prompt)
    for user, assistant in history:
        parts += _turn("user", user) + _turn("assistant", assistant)
    parts += [*_turn("user", question), _token("<|im_start|>"), _text("assistant\n")]
    if not think:
        parts += EMPTY_THINK_PARTS
    return parts


EMPTY_THINK_PARTS = [_token("<think>"), _text("\n\n"), _token("</think>"), _text("\n\n")]


def target_parts(think: str, answer: str, style: str, eos_token: str = "<|im_end|>") -> list[Part]:
    """The assistant's side: reasoning in ``<think>`` then the answer, with its end token.

    ``qwen3``: Qwen3's reasoning layout, ``<think>\\n…\\n</think>\\n\\n answer``, closed by
    ``<|im_end|>``. ``seed``: the original training code's ``<think>{think}</think> \\n
    {answer}``; its end token (the pad token) is appended as an id by :func:`encode_records`.
    """
    if style == "qwen3":
        return [
            _token("<think>"),
            _text(f"\n{think.strip()}\n"),
            _token("</think>"),
            _text(f"\n\n{answer.strip()}"),
            _token(eos_token),
        ]
    if style == "seed":
        return [_token("<think>"), _text(think), _token("</think>"), _text(f" \n {answer}")]
    raise ValueError(f"format.target_style: unknown style {style!r} (one of {TARGET_STYLES})")


def render(parts: Sequence[Part]) -> str:
    """The parts as one string (what the chat template writes)."""
    return "".join(s for s, _ in parts)


def prompt_text(question: str, system_prompt: str) -> str:
    return render(prompt_parts(question, system_prompt))


def target_text(think: str, answer: str, style: str, eos_token: str = "<|im_end|>") -> str:
    return render(target_parts(think, answer, style, eos_token))


_PLAIN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def text_tokenizer(tokenizer: PreTrainedTokenizerBase) -> Tokenizer:
    """The tokenizer's pipeline (normaliser, pre-tokeniser, BPE) without its added tokens:
    text through it never yields a special or added token id, and ordinary text gives the
    same ids as through the full tokenizer."""
    if tokenizer not in _PLAIN:
        spec = json.loads(tokenizer.backend_tokenizer.to_str())
        spec["added_tokens"] = []
        _PLAIN[tokenizer] = Tokenizer.from_str(json.dumps(spec))
    return _PLAIN[tokenizer]


def encode_text(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of content strings, as text (see :func:`text_tokenizer`)."""
    return [e.ids for e in text_tokenizer(tokenizer).encode_batch(list(texts), add_special_tokens=False)]


def encode_parts(tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Sequence[Part]]) -> list[list[int]]:
    """Token ids of formatted conversations: structural tokens by id, text as text.

    Special and added tokens split the text around them in the full tokenizer too, so for
    text that holds none this equals tokenizing the rendered string.
    """
    texts = [s for parts in conversations for s, is_token in parts if not is_token and s]
    encoded = iter(encode_text(tokenizer, texts))
    out = []
    for parts in conversations:
        ids: list[int] = []
        for s, is_token in parts:
            if is_token:
                token_id = tokenizer.convert_tokens_to_ids(s)
                if token_id is None or token_id == tokenizer.unk_token_id:
                    raise ValueError(f"the tokenizer has no token {s!r} (not a Qwen3 tokenizer?)")
                ids.append(token_id)
            elif s:
                ids.extend(next(encoded))
        out.append(ids)
    return out


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
    p_ids = encode_parts(tokenizer, [prompt_parts(r["question"], system_prompt) for r in records])
    t_ids = encode_parts(tokenizer, [target_parts(r["think"], r["answer"], target_style) for r in records])
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
