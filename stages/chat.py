"""chat: answer questions with a variant's trained adapter (base model and adapter loaded apart).

    python -m stages.chat --variant v2 "问题"
    python -m stages.chat --variant v2 --interactive          # multi-turn; empty line or /exit ends
    python -m stages.chat --variant v2 --no-think "问题"      # Qwen3's non-thinking mode
    python -m stages.chat --adapter DIR "问题"                # an adapter folder beside its run_config.yaml

The base model, its settings and the prompt format come from the run's run_config.yaml
(runs/<variant>/train/); the adapter must record that base. Generation follows params.yaml's
`generation` section (the model profile's: max_new_tokens, temperature, top_p,
repetition_penalty…), sampling seeded, like the seed's deployment; --greedy decodes greedily,
and the flags below replace single fields. Prints the reasoning and the answer separately.
Not for clinical decisions; on the `tiny` profile (a pipeline check) a one-line notice on
stderr says its replies are not meaningful.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from medsft.core.cli import fail, run_stage
from medsft.core.config import load_config
from medsft.core.paths import train_dir
from medsft.core.spec import SPEC_FILE, RunSpec
from medsft.modeling.loading import load_adapter
from medsft.serve.chat import ChatInputError, ChatSession, profile_notice


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.chat", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--variant", help="a trained variant, e.g. v2 (runs/<variant>/train)")
    which.add_argument("--adapter", help="an adapter folder whose run_config.yaml is beside or inside it")
    parser.add_argument("--interactive", action="store_true", help="a multi-turn conversation on stdin")
    parser.add_argument("--no-think", action="store_true", help="Qwen3's non-thinking mode")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    parser.add_argument("--temperature", type=float, help="default: generation.temperature in params.yaml")
    parser.add_argument("--top-p", type=float, help="default: generation.top_p in params.yaml")
    parser.add_argument("--max-new-tokens", type=int, help="default: generation.max_new_tokens in params.yaml")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("question", nargs="*", help="the question")
    args = parser.parse_args(argv)
    args.question = " ".join(args.question).strip()
    if not args.question and not args.interactive:
        parser.error("give a question, or --interactive")
    return args


def chat_generation(generation: dict, args: argparse.Namespace) -> dict:
    """The config's ``generation`` fields with the command line's on top: sampling unless
    ``--greedy``."""
    flags = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p}
    return {**generation, **{k: v for k, v in flags.items() if v is not None}, "do_sample": not args.greedy}


def locate_run(args: argparse.Namespace, variants: Sequence[str] = ()) -> tuple[RunSpec, Path]:
    """The run spec and adapter folder that ``--variant`` (one of ``variants``, params.yaml's)
    or ``--adapter`` names."""
    if args.variant:
        run = train_dir(args.variant)
        if not (run / SPEC_FILE).exists():
            if args.variant not in variants:
                raise FileNotFoundError(
                    f"--variant {args.variant}: no such variant in params.yaml (variants: {', '.join(variants)}); "
                    f"add one with: dvc exp run -S '+variant@variants.{args.variant}=v2'"
                )
            raise FileNotFoundError(
                f"no trained run for variant {args.variant!r}: {run / SPEC_FILE} not found "
                f"(run: dvc repro train@{args.variant})"
            )
        adapter = run / "adapter"
    else:
        adapter = Path(args.adapter)
        run = next((d for d in (adapter, adapter.parent) if (d / SPEC_FILE).exists()), None)
        if run is None:
            raise FileNotFoundError(f"{adapter}: no {SPEC_FILE} in it or beside it (train writes one per run)")
    if not (adapter / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter}: no trained adapter (adapter_config.json missing)")
    return RunSpec.read(run / SPEC_FILE), adapter


def main(argv: list[str] | None = None, stdin=None, stdout=None, stderr=None) -> int:
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    args = parse(list(sys.argv[1:] if argv is None else argv))
    try:
        cfg = load_config()
        generation = chat_generation(OmegaConf.to_container(cfg.generation, resolve=True), args)
        spec, adapter = locate_run(args, list(cfg.variants))
        model, tokenizer = load_adapter(spec.model, adapter, spec.artifacts)
    except (FileNotFoundError, ValueError) as err:  # BaseModelMismatch and ConfigError are ValueErrors
        fail(str(err))
    session = ChatSession(
        model, tokenizer, spec.format.system_prompt, think=not args.no_think, generation=generation, seed=args.seed
    )

    def answer(question: str) -> None:
        reasoning, reply = session.ask(question)
        if reasoning is None:  # not split: the reply as generated, said so once
            print(
                f"[回复] (no complete <think>…</think> block followed by an answer)\n{reply}\n", file=stdout, flush=True
            )
            return
        if not args.no_think:
            print(f"[思考]\n{reasoning}\n", file=stdout)
        print(f"[回答]\n{reply}\n", file=stdout, flush=True)

    notice = profile_notice(spec.model)
    if notice:  # once, before the first reply; on stderr, so that stdout holds the replies only
        print(notice, file=stderr, flush=True)
    if args.question:
        answer(args.question)
    if args.interactive:
        for line in stdin:
            question = line.strip()
            if not question or question in ("/exit", "/quit"):
                break
            try:
                answer(question)
            except ChatInputError as err:  # one turn refused; the conversation goes on
                print(f"error: {err}", file=stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
