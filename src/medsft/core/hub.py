"""Where a profile's model comes from: a local folder or a Hugging Face Hub id.

``transformers`` reports a missing local folder as a malformed hub id and an unreachable hub
after five retries per file (about a minute and 70 lines). This check runs first and fails in
one line that says what to set.
"""

from __future__ import annotations

import os
from pathlib import Path

from medsft.core.config import ConfigError

FIELD = "model.pretrained_model_name_or_path"


class ModelSourceError(ConfigError):
    """The profile names a model that cannot be loaded from here."""


def looks_like_path(name: str) -> bool:
    """A local folder rather than a hub id (``owner/name``)."""
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists() or name.count("/") > 1


def check_model_source(name: str) -> None:
    """Raise :class:`ModelSourceError` unless ``name`` is a model folder, a cached hub model, or
    a hub model the hub answers for."""
    if looks_like_path(name):
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise ModelSourceError(f"{FIELD}={name}: no such folder (a local model folder holds config.json)")
        if not (folder / "config.json").exists():
            raise ModelSourceError(f"{FIELD}={name}: holds no config.json (not a transformers model folder)")
        return
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    download = f"download it once where the hub is reachable (hf download {name} --local-dir DIR) and set {FIELD}=DIR"
    if constants.HF_HUB_OFFLINE:
        raise ModelSourceError(
            f"{FIELD}={name}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {download}"
        )
    try:
        model_info(name, timeout=10)
    except RepositoryNotFoundError:
        raise ModelSourceError(f"{FIELD}={name}: no such model on the Hugging Face Hub (or it is private)") from None
    except Exception as err:  # noqa: BLE001 - any transport failure means the same to the user
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        raise ModelSourceError(
            f"{FIELD}={name}: the Hugging Face Hub ({endpoint}) cannot be reached ({type(err).__name__}: {err}) "
            f"and the model is not in the local cache; {download}, or set HF_HUB_OFFLINE=1 to use the cache only"
        ) from None
