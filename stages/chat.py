"""chat: answer questions with a variant's trained adapter (base model and adapter loaded apart).

    python -m stages.chat --variant v2 "问题"
    python -m stages.chat --variant v2 --interactive          # multi-turn; empty line or /exit ends
    python -m stages.chat --variant v2 --no-think "问题"      # Qwen3's non-thinking mode
    python -m stages.chat --variant v2 "问题" model.pretrained_model_name_or_path=/models/Qwen3-1.7B  (overrides)

Sampling follows the seed's deployment (temperature 0.7, top_p 0.95, max_new_tokens 512),
seeded; --greedy decodes greedily. Prints the reasoning and the answer separately.
Not for clinical decisions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medsft.chat import ChatError, ChatSession, check_adapter
from medsft.config import ConfigError, load_config, require_variant
from medsft.modeling import base_model_id, load_adapter
from medsft.paths import train_dir


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m stages.chat", description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True, help="a variant of params.yaml, e.g. v2")
    parser.add_argument("--adapter", help="adapter folder (default: runs/<variant>/train/adapter)")
    parser.add_argument("--interactive", action="store_true", help="a multi-turn conversation on stdin")
    parser.add_argument("--no-think", action="store_true", help="Qwen3's non-thinking mode")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("words", nargs="*", help="the question, then any key=value overrides of params.yaml")
    args = parser.parse_args(argv)
    overrides = [w for w in args.words if "=" in w and not w.startswith("=")]
    question = " ".join(w for w in args.words if w not in overrides)
    if not question and not args.interactive:
        parser.error("give a question, or --interactive")
    args.question = question
    return args, overrides


def main(argv: list[str] | None = None, stdin=None, stdout=None) -> int:
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    args, overrides = parse(list(sys.argv[1:] if argv is None else argv))
    try:
        cfg = load_config(overrides)
        require_variant(cfg, args.variant)
        adapter = Path(args.adapter) if args.adapter else train_dir(args.variant) / "adapter"
        check_adapter(adapter, base_model_id(cfg.model), args.variant)
    except (ChatError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    model, tokenizer = load_adapter(cfg.model, str(adapter))
    generation = {"max_new_tokens": args.max_new_tokens, "do_sample": not args.greedy}
    if not args.greedy:
        generation.update(temperature=args.temperature, top_p=args.top_p)
    session = ChatSession(
        model, tokenizer, cfg.format.system_prompt, think=not args.no_think, generation=generation, seed=args.seed
    )

    def answer(question: str) -> None:
        reasoning, reply = session.ask(question)
        if not args.no_think:
            print(f"[思考]\n{reasoning or '(none)'}\n", file=stdout)
        print(f"[回答]\n{reply}\n", file=stdout, flush=True)

    if args.question:
        answer(args.question)
    if args.interactive:
        for line in stdin:
            question = line.strip()
            if not question or question in ("/exit", "/quit"):
                break
            answer(question)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
