"""The errors a user can fix: stage entry points print them as one line."""

from __future__ import annotations


class UserError(Exception):
    """A mistake with a known fix (a bad setting, a missing input, a diverged run): the stage
    prints ``error: <message>`` and exits 1; ``MEDSFT_DEBUG=1`` shows the traceback too."""
