"""``train.launcher``: the program that starts the train stage.

dvc.yaml runs ``${train.launcher} -m stages.train <variant>``, so the launcher is a command
prefix that must take ``-m MODULE ARGS``: ``python`` (one process), ``torchrun`` or
``accelerate launch`` with their options (several processes, one DDP job: over NCCL on GPUs,
gloo on CPUs). DVC hands the line to a shell, so a launcher that is not one of these, or that
holds shell syntax, is refused here in one line naming the key, before any model loads.
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePath

# python, python3, python3.11 (or a path to one)
PYTHON = re.compile(r"python(\d+(\.\d+)?)?")
# Shell syntax that would chain, redirect or substitute commands: the value is a prefix of the
# stage's command line, not a shell line. $NAME stays allowed (--machine_rank $RANK on SLURM).
SHELL_SYNTAX = re.compile(r"[;&|<>`\n]|\$\(")
# Options that would take away the `-m stages.train <variant>` the stage appends.
CONFLICTING = ("-m", "--module", "--no_python", "--no-python")
FORMS = "python, torchrun [options] or accelerate launch [options]"


def launcher_problem(launcher: str) -> str | None:
    """Why ``launcher`` cannot start the train stage, or ``None`` when it can."""
    if SHELL_SYNTAX.search(launcher):
        return f"holds shell syntax ({SHELL_SYNTAX.search(launcher).group()!r}); give a command prefix: {FORMS}"
    try:
        words = shlex.split(launcher)
    except ValueError as err:  # an unclosed quote
        return f"cannot be split into words ({err})"
    if not words:
        return f"is empty; use {FORMS}"
    program = PurePath(words[0]).name
    if program == "accelerate" and words[1:2] != ["launch"]:
        return f"runs `{' '.join(words[:2])}`; the launcher of accelerate is `accelerate launch`"
    if not (PYTHON.fullmatch(program) or program in ("torchrun", "accelerate", "accelerate-launch")):
        return f"runs {program!r}; the stage runs `<launcher> -m stages.train <variant>`: use {FORMS}"
    conflicting = (*CONFLICTING, "-c") if PYTHON.fullmatch(program) else CONFLICTING
    bad = [w for w in words[1:] if w.split("=", 1)[0] in conflicting or w.endswith(".py") or w.startswith("stages.")]
    if bad:
        return f"has {bad[0]!r}: the stage appends `-m stages.train <variant>` itself"
    return None
