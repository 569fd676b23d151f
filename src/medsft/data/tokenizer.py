"""The Qwen3 tokenizer: from the hub for real checkpoints, rebuilt offline for ``tiny``.

Qwen3 shares Qwen's byte-level BPE ranks, which the ``dashscope`` package ships as
``resources/qwen.tiktoken``. Converting those ranks with Qwen2's pre-tokenizer split and
adding Qwen3's special tokens at their ids gives the same ids as the hub tokenizer, so token
statistics, truncation and label masks are real on a laptop with no download. It carries
a chat template of Qwen3's layout written for it (``qwen3_chat_template.jinja``), so
``apply_chat_template`` (with ``enable_thinking``) renders conversations as the hub tokenizer
does; tool calls are refused.

The conversion takes about 5 s, paid by every stage process, so its result is cached as a
``tokenizer.json`` under ``$MEDSFT_CACHE`` (default ``~/.cache/medsft``), keyed by a hash of
the BPE ranks, this recipe and the tokenizers/transformers versions: a new input or library
gives a new file, and a cached file that does not load or lost its special-token ids is
rebuilt. Loading it takes about 1 s.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from pathlib import Path

import tokenizers
import transformers
from tokenizers import AddedToken, normalizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

from medsft.core.hub import check_model_source
from medsft.core.io import atomic_write_bytes

log = logging.getLogger(__name__)

# Qwen2/Qwen3 pre-tokenizer: like GPT-4's but with single digits.
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN_BPE_RANKS = 151643  # tokens of qwen.tiktoken; the added tokens follow from this id

# Qwen3's added tokens in id order from 151643. The first fourteen are "special" (dropped by
# skip_special_tokens); the tool-call, FIM and think markers are ordinary added tokens.
QWEN3_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
QWEN3_ADDED_TOKENS = [
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
]


def qwen_tiktoken_path() -> Path:
    """Path of Qwen's BPE ranks inside the installed ``dashscope`` package."""
    try:
        import dashscope
    except ImportError as err:
        raise ImportError("the offline Qwen3 tokenizer needs the 'dashscope' package (pip install dashscope)") from err
    path = Path(dashscope.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing from the installed dashscope package")
    return path


# The special tokens every stage relies on, at their Qwen3 ids: a cached file must keep them.
PINNED_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<think>": 151667,
    "</think>": 151668,
}
# Qwen3's chat layout, written here (tools left out): it renders system, user and assistant
# turns and the generation prompt as the hub tokenizer's template does.
QWEN3_CHAT_TEMPLATE = (Path(__file__).with_name("qwen3_chat_template.jinja")).read_text(encoding="utf-8")
QWEN3_CHAT_TEMPLATE = QWEN3_CHAT_TEMPLATE.removesuffix("\n")
WRAPPER_FIELDS = {
    "eos_token": "<|im_end|>",
    "pad_token": "<|endoftext|>",
    "model_max_length": 131072,
    "clean_up_tokenization_spaces": False,
    "chat_template": QWEN3_CHAT_TEMPLATE,
}


def convert_qwen_ranks(ranks: Path) -> tokenizers.Tokenizer:
    """The tokenizers backend converted from Qwen's BPE ranks, with Qwen3's added tokens."""
    backend = TikTokenConverter(vocab_file=str(ranks), pattern=QWEN_SPLIT_PATTERN).converted()
    backend.normalizer = normalizers.NFC()
    if backend.get_vocab_size() != QWEN_BPE_RANKS:
        raise ValueError(f"{ranks} holds {backend.get_vocab_size()} ranks, expected {QWEN_BPE_RANKS}")
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in QWEN3_SPECIAL_TOKENS])
    backend.add_tokens([AddedToken(t, normalized=False, special=False) for t in QWEN3_ADDED_TOKENS])
    return backend


def tokenizer_cache_dir() -> Path:
    """Where converted tokenizers are cached: ``$MEDSFT_CACHE``, else ``~/.cache/medsft``."""
    root = os.environ.get("MEDSFT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medsft"
    return Path(root) / "tokenizers"


def cache_key(ranks: Path) -> str:
    """Hash of everything the converted tokenizer depends on."""
    recipe = {
        "ranks": hashlib.sha256(ranks.read_bytes()).hexdigest(),
        "pattern": QWEN_SPLIT_PATTERN,
        "special": QWEN3_SPECIAL_TOKENS,
        "added": QWEN3_ADDED_TOKENS,
        "tokenizers": tokenizers.__version__,
        "transformers": transformers.__version__,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:20]


def _load_cached(path: Path) -> PreTrainedTokenizerFast | None:
    """The cached tokenizer, or None (with the reason logged) when it is unusable."""
    try:
        tok = PreTrainedTokenizerFast(tokenizer_file=str(path), **WRAPPER_FIELDS)
    except Exception as err:  # a truncated or foreign file: rebuild rather than fail
        log.warning("%s: unreadable cached tokenizer (%s); rebuilding it", path, err)
        return None
    ids = {t: tok.convert_tokens_to_ids(t) for t in PINNED_IDS}
    if len(tok) != QWEN_BPE_RANKS + len(QWEN3_SPECIAL_TOKENS) + len(QWEN3_ADDED_TOKENS) or ids != PINNED_IDS:
        log.warning("%s: cached tokenizer has the wrong vocabulary (%d tokens); rebuilding it", path, len(tok))
        return None
    return tok


@functools.lru_cache(maxsize=1)
def build_offline_qwen3_tokenizer() -> PreTrainedTokenizerFast:
    """Qwen3's tokenizer rebuilt from dashscope's BPE ranks, with no network access."""
    ranks = qwen_tiktoken_path()
    path = tokenizer_cache_dir() / f"qwen3-offline-{cache_key(ranks)}.json"
    if path.exists():
        tok = _load_cached(path)
        if tok is not None:
            return tok
    backend = convert_qwen_ranks(ranks)
    try:
        atomic_write_bytes(path, backend.to_str().encode())
    except OSError as err:  # a read-only home costs time, not correctness
        log.warning("could not cache the converted tokenizer at %s: %s", path, err)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **WRAPPER_FIELDS)


def load_tokenizer(
    pretrained_model_name_or_path: str | None, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """The model's own tokenizer, or the offline Qwen3 one when no checkpoint is named."""
    if pretrained_model_name_or_path is None:
        return build_offline_qwen3_tokenizer()
    check_model_source(str(pretrained_model_name_or_path))
    return AutoTokenizer.from_pretrained(pretrained_model_name_or_path, trust_remote_code=trust_remote_code)
