"""Answering questions with a trained adapter: the seed report's §6 deployment, runnable.

The base model and the adapter load separately; the reply is generated in the ChatML layout
the model was trained on, with the system prompt, and split into reasoning and answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from medsft.data.formatting import parse_reply

# Qwen3's non-thinking mode: the assistant turn opens with an empty reasoning block.
EMPTY_THINK = "<think>\n\n</think>\n\n"


def chat_prompt(system_prompt: str, history: list[tuple[str, str]], question: str, think: bool = True) -> str:
    """ChatML prompt: system, earlier turns (answers only, as Qwen3 keeps history), the question.

    With ``think=False`` the assistant turn is prefilled with an empty ``<think>`` block,
    which is how Qwen3 switches reasoning off.
    """
    turns = [f"<|im_start|>system\n{system_prompt}<|im_end|>\n"]
    for user, assistant in history:
        turns.append(f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{assistant}<|im_end|>\n")
    turns.append(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
    if not think:
        turns.append(EMPTY_THINK)
    return "".join(turns)


@dataclass
class ChatSession:
    """A conversation with one model; ``ask`` returns (reasoning, answer) and keeps history."""

    model: Any
    tokenizer: Any
    system_prompt: str
    think: bool = True
    generation: dict[str, Any] = field(default_factory=dict)
    seed: int = 42
    history: list[tuple[str, str]] = field(default_factory=list)

    def ask(self, question: str) -> tuple[str, str]:
        prompt = chat_prompt(self.system_prompt, self.history, question, self.think)
        ids = torch.tensor([self.tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        device = next(self.model.parameters()).device
        stop_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if self.generation.get("do_sample"):
            torch.manual_seed(self.seed + len(self.history))  # seeded, and different per turn
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids.to(device),
                attention_mask=torch.ones_like(ids).to(device),
                eos_token_id=stop_id,
                pad_token_id=self.tokenizer.pad_token_id,
                **self.generation,
            )
        new = out[0, ids.shape[1] :].tolist()
        if stop_id in new:
            new = new[: new.index(stop_id)]
        text = self.tokenizer.decode(new, skip_special_tokens=False)
        if not self.think:
            text = EMPTY_THINK + text
        reply = parse_reply(text)
        reasoning, answer = (reply.think, reply.answer) if reply.valid else ("", text.strip())
        self.history.append((question, answer))
        return reasoning, answer
