"""Merging a LoRA adapter into its base model as a standalone model, without deleting what
the user owns.

A QLoRA adapter was trained against 4-bit NF4 weights. Its deltas cannot be folded into
4-bit weights without a second rounding, so the export loads the base model again
unquantized, in the profile's dtype (bf16 for qwen3-1.7b), and merges there: the merged
weights are the dequantised-precision base plus the LoRA deltas, in full precision. Expect
small differences from the 4-bit model the adapter was trained with.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from peft import PeftModel
from transformers import GenerationConfig

from medsft.core.artifacts import verify_run_artifacts
from medsft.core.errors import UserError
from medsft.core.io import atomic_dir, atomic_write_json
from medsft.core.sampling import generate_kwargs
from medsft.core.spec import RunSpec
from medsft.modeling.generation import REPLY_ENDS
from medsft.modeling.loading import (
    check_adapter_base,
    check_safetensors_only,
    load_model_and_tokenizer,
    peft_quietly,
)
from medsft.modeling.vocab import TokenMap, TokenMapError, clear_special_ids

# Written into every export: only a folder holding it may be replaced by a later export.
EXPORT_MARKER = ".medsft-export.json"
# A trimmed export's model class for trust_remote_code loaders (lm_eval): a standalone file.
TRIMMED_MODEL_CODE = Path(__file__).with_name("trimmed_qwen3.py")
TRIMMED_MODEL_CLASS = "TrimmedVocabQwen3ForCausalLM"


class ExportTargetError(UserError, ValueError):
    """The export folder would replace something the export did not create."""


def check_export_target(out_dir: str | Path, repo_root: str | Path = ".") -> Path:
    """Refuse an export folder whose replacement would lose anything the user owns.

    Never the filesystem root, ``$HOME``, the repository or a folder above either; an
    existing path only when it is an earlier export of this project (it holds
    ``EXPORT_MARKER``). Returns the folder.
    """
    out = Path(out_dir)
    target = out.resolve()
    protected = {Path("/").resolve(), Path(repo_root).resolve()}
    if os.environ.get("HOME"):
        protected.add(Path(os.environ["HOME"]).resolve())
    for place in protected:
        if target == place or target in place.parents:
            raise ExportTargetError(f"export_dir={out}: is {place} or a folder above it; choose a new folder")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ExportTargetError(f"export_dir={out}: exists and is not a folder; choose a new folder")
    if out.exists() and not (out / EXPORT_MARKER).is_file():
        raise ExportTargetError(
            f"export_dir={out}: exists and is not an earlier export (no {EXPORT_MARKER}); "
            "choose a new folder, or remove it yourself"
        )
    return out


def export_generation_config(
    generation: dict[str, Any], tokenizer: Any, tmap: TokenMap | None = None
) -> GenerationConfig:
    """``generation_config.json`` of an export: the profile's ``generation`` section (greedy
    unless ``do_sample``) and the tokens a reply ends at, so that a plain ``generate`` decodes
    as evaluate and chat do. With a trimmed vocabulary (``tmap``), the ids are the saved
    model's rows, as its ``token_map.json`` gives them."""
    ends = [tokenizer.convert_tokens_to_ids(token) for token in REPLY_ENDS]
    pad = tokenizer.pad_token_id
    if tmap is not None:
        ends, pad = [tmap.row(i) for i in ends], tmap.row(pad)
    return GenerationConfig(**generate_kwargs(generation), eos_token_id=ends, pad_token_id=pad)


def add_real_id_loader(model: Any, tmap: TokenMap) -> None:
    """Name :data:`TRIMMED_MODEL_CODE` in ``model``'s config (``auto_map``, with the map as
    ``token_map``), so that ``trust_remote_code=True`` loads the saved rows as a model of the
    tokenizer's ids: what lm-eval and other tools that feed the tokenizer's ids need. Without
    ``trust_remote_code`` transformers loads the plain Qwen3 of the rows, as before."""
    if model.config.model_type != "qwen3":
        raise TokenMapError(f"a trimmed vocabulary is exported for Qwen3 only, not {model.config.model_type!r}")
    model.config.auto_map = {"AutoModelForCausalLM": f"{TRIMMED_MODEL_CODE.stem}.{TRIMMED_MODEL_CLASS}"}
    model.config.token_map = {"real_vocab_size": tmap.real_vocab_size, "kept": list(tmap.kept)}


def merge_adapter(
    spec: RunSpec, adapter_dir: str | Path, out_dir: str | Path, generation: dict[str, Any] | None = None
) -> Path:
    """Write a standalone model (safetensors) with its tokenizer into ``out_dir``: loadable by
    ``AutoModelForCausalLM.from_pretrained`` without peft, with ``generation`` (the config's
    section) as its ``generation_config.json``. A trimmed base's export has its rows and its
    ``token_map.json``: token ids go in and come out through that list, or, loaded with
    ``trust_remote_code=True``, through ``trimmed_qwen3.py`` (:func:`add_real_id_loader`).
    ``out_dir`` must pass :func:`check_export_target`."""
    out = check_export_target(out_dir)
    if spec.artifacts:
        verify_run_artifacts(spec.artifacts, adapter_dir)
    check_adapter_base(adapter_dir, spec.base_model_source)
    check_safetensors_only(adapter_dir)
    base, tokenizer = load_model_and_tokenizer(spec.model, quantize=False)
    # With modules_to_save, embed_tokens and lm_head were trained as two copies (as the real
    # V2 did); peft unties them on merge (tie_word_embeddings=False), so both are saved.
    tmap = getattr(base, "token_map", None)  # a trimmed base: the export keeps its rows and map
    merged = peft_quietly(PeftModel.from_pretrained, base, str(adapter_dir)).merge_and_unload()
    if tmap is not None:
        clear_special_ids(merged)
        add_real_id_loader(merged, tmap)
    if generation is not None:
        merged.generation_config = export_generation_config(generation, tokenizer, tmap)
    with atomic_dir(out) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if tmap is not None:
            tmap.save(tmp)
            shutil.copyfile(TRIMMED_MODEL_CODE, tmp / TRIMMED_MODEL_CODE.name)
        atomic_write_json(
            tmp / EXPORT_MARKER,
            {"variant": spec.variant, "base_model": spec.base_model_id, "adapter": str(adapter_dir)},
        )
    return out
