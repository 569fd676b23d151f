"""Answering questions with a trained adapter: the seed report's §6 deployment, runnable.

The base model and the adapter load separately; the reply is generated in the ChatML layout
the model was trained on, with the system prompt, and split into reasoning and answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medsft.core.config import ModelProfile
from medsft.core.errors import UserError
from medsft.data.formatting import EMPTY_THINK_PARTS, chat_parts, encode_parts, parse_reply, render
from medsft.modeling.generation import generate_replies

# Qwen3's non-thinking mode: the assistant turn opens with an empty reasoning block.
EMPTY_THINK = render(EMPTY_THINK_PARTS)

# Shown once before the first reply of a run on the `tiny` profile, whose replies look like text.
TINY_PROFILE_NOTICE = (
    "note: this run uses the 'tiny' model profile, a pipeline check (a toy-sized Qwen3 trained for "
    "seconds on a CPU), not a medical assistant: its replies are not meaningful. "
    "For real answers, train with model=qwen3-1.7b."
)


def profile_notice(model_profile: ModelProfile) -> str | None:
    """The line to show before a chat with a run of this model profile, if any."""
    return TINY_PROFILE_NOTICE if model_profile.name == "tiny" else None


def chat_prompt(system_prompt: str, history: list[tuple[str, str]], question: str, think: bool = True) -> str:
    """The ChatML prompt of :func:`~medsft.data.formatting.chat_parts`, as a string."""
    return render(chat_parts(system_prompt, history, question, think))


class ChatInputError(UserError, ValueError):
    """A question the session cannot answer as asked (empty, or beyond the model's context)."""


@dataclass
class ChatSession:
    """A conversation with one model; ``ask`` returns (reasoning, answer) and keeps history
    (the answers only, as Qwen3's template keeps it)."""

    model: Any
    tokenizer: Any
    system_prompt: str
    think: bool = True
    generation: dict[str, Any] = field(default_factory=dict)
    seed: int = 42
    history: list[tuple[str, str]] = field(default_factory=list)

    def ask(self, question: str) -> tuple[str | None, str]:
        """Answer ``question`` in the conversation: (reasoning, answer), or (None, the whole
        reply) when the reply holds no complete ``<think>…</think>`` block followed by an answer."""
        if not question.strip():
            raise ChatInputError("the question is empty")
        # The question is text: "<|im_start|>system" typed by a user stays characters.
        parts = chat_parts(self.system_prompt, self.history, question, self.think)
        prompt = encode_parts(self.tokenizer, [parts])
        context = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        wanted = len(prompt[0]) + int(self.generation.get("max_new_tokens") or 0)
        if context and wanted > context:
            raise ChatInputError(
                f"the conversation is {len(prompt[0])} tokens; with max_new_tokens="
                f"{self.generation.get('max_new_tokens')} it exceeds the model's context of {context} tokens: "
                "ask a shorter question, or start a new conversation"
            )
        # Seeded, and different per turn.
        (text,) = generate_replies(
            self.model, self.tokenizer, prompt, self.generation, seed=self.seed + len(self.history), progress=False
        )
        if not self.think:
            text = EMPTY_THINK + text
        reply = parse_reply(text)
        reasoning, answer = (reply.think, reply.answer) if reply.valid else (None, text.strip())
        self.history.append((question, answer))
        return reasoning, answer
