"""Shared command-line handling of the stage entry points."""

from __future__ import annotations

import errno
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from omegaconf import DictConfig

from medsft.core.config import ConfigError, load_config, require_variant
from medsft.core.errors import UserError
from medsft.core.exp_guard import restore_params
from medsft.core.runtime import keep_large_allocations


def setup_logging() -> None:
    """INFO logs with the time and the logger's name (the stages' progress lines)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def parse_args(
    argv: list[str] | None, positional: int = 0, usage: str = "", libraries: bool = True
) -> tuple[list[str], DictConfig]:
    """Split ``argv`` into ``positional`` names and ``key=value`` overrides of params.yaml.

    ``libraries=False`` for stages that read no ``lora``/``training``/``quantization``/
    ``generation`` section: their fields are then checked by the stages that read them.

    Exits with status 2 and the usage line on a malformed command line or an invalid config.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    if any(a in ("-h", "--help") for a in args):
        print(usage)
        raise SystemExit(0)
    keep_large_allocations()
    names = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    if len(names) != positional:
        print(f"error: expected {positional} name(s), got {names}\n{usage}", file=sys.stderr)
        raise SystemExit(2)
    try:
        cfg = load_config(overrides, libraries=libraries)
    except ConfigError as err:
        fail(str(err))
    return names, cfg


def parse_variant_args(
    argv: list[str] | None, usage: str = "", check: bool = True, libraries: bool = True
) -> tuple[str, DictConfig]:
    """``parse_args`` for the stages that take one VARIANT; exits with status 2 on an unknown one.

    ``check=False`` for stages that read a variant's run, not its config (evaluate): they
    name the missing run instead (:func:`require_inputs`).
    """
    (variant,), cfg = parse_args(argv, positional=1, usage=usage, libraries=libraries)
    if not check:
        return variant, cfg
    try:
        require_variant(cfg, variant)
    except ConfigError as err:
        fail(str(err))
    return variant, cfg


def debugging() -> bool:
    """``MEDSFT_DEBUG`` is set (to anything but 0): errors show their traceback."""
    return os.environ.get("MEDSFT_DEBUG", "") not in ("", "0")


def recovery_hint() -> str:
    """What became of params.yaml when this stage fails inside ``dvc exp run`` (DVC names the
    experiment in the stage's environment): put back as it was (:mod:`medsft.core.exp_guard`),
    or, where that cannot be done, how to restore it."""
    name = os.environ.get("DVC_EXP_NAME")
    if not name:
        return ""
    if restore_params():
        return f" [dvc exp run {name!r} failed: params.yaml is back as it was before it]"
    return (
        f" [dvc exp run {name!r} failed: in the workspace, params.yaml keeps its settings; "
        "`git checkout params.yaml` restores the committed ones]"
    )


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``; the traceback of the error
    being handled only with ``MEDSFT_DEBUG=1``."""
    if debugging() and sys.exc_info()[0] is not None:
        traceback.print_exc()
    print(f"error: {message}{recovery_hint()}", file=sys.stderr)
    raise SystemExit(code)


def require_inputs(*inputs: tuple[Path, str]) -> None:
    """Exit with a one-line error for the first missing input, naming the stage that writes it."""
    for path, stage in inputs:
        if not Path(path).exists():
            fail(f"{path}: not found; it is written by the {stage} stage (run: dvc repro {stage})")


# A folder that cannot be written or a full disk: the user's to fix, in one line.
STORAGE_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def run_stage(main: Callable[[], int]) -> int:
    """Run a stage's ``main``. A mistake the user can fix (a :class:`UserError`, or a missing
    file) ends in one ``error:`` line (:func:`fail`) and exit status 1; ``MEDSFT_DEBUG=1``
    re-raises it with its traceback."""
    try:
        status = main()
    except (UserError, FileNotFoundError) as err:
        if debugging():
            _restore_after_failure()
            raise
        fail(str(err), code=1)
    except SystemExit as err:
        if err.code not in (0, None):
            _restore_after_failure()
        raise
    except OSError as err:
        if err.errno not in STORAGE_ERRORS or debugging():
            _restore_after_failure()
            raise
        fail(f"{err.filename or 'an output'}: {err.strerror}", code=1)
    except BaseException:  # a bug or an interrupt: the traceback stays, the workspace is restored
        _restore_after_failure()
        raise
    if status:
        _restore_after_failure()
    return status


def _restore_after_failure() -> None:
    """Restore params.yaml after a failure outside :func:`fail`, and say so."""
    if restore_params():
        print(
            f"note: dvc exp run {os.environ['DVC_EXP_NAME']!r} failed: params.yaml is back as it was before it",
            file=sys.stderr,
        )
