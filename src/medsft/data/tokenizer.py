"""The Qwen3 tokenizer: from the hub for real checkpoints, rebuilt offline for ``tiny``.

Qwen3 shares Qwen's byte-level BPE ranks, which the ``dashscope`` package ships as
``resources/qwen.tiktoken``. Converting those ranks with Qwen2's pre-tokenizer split and
adding Qwen3's special tokens at their ids gives the same ids as the hub tokenizer, so token
statistics, truncation and label masks are real on a laptop with no download.
"""

from __future__ import annotations

import functools
from pathlib import Path

from tokenizers import AddedToken, normalizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

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


@functools.lru_cache(maxsize=1)
def build_offline_qwen3_tokenizer() -> PreTrainedTokenizerFast:
    """Qwen3's tokenizer rebuilt from dashscope's BPE ranks, with no network access."""
    backend = TikTokenConverter(vocab_file=str(qwen_tiktoken_path()), pattern=QWEN_SPLIT_PATTERN).converted()
    backend.normalizer = normalizers.NFC()
    if backend.get_vocab_size() != QWEN_BPE_RANKS:
        raise ValueError(f"qwen.tiktoken holds {backend.get_vocab_size()} ranks, expected {QWEN_BPE_RANKS}")
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in QWEN3_SPECIAL_TOKENS])
    backend.add_tokens([AddedToken(t, normalized=False, special=False) for t in QWEN3_ADDED_TOKENS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    return tok


def load_tokenizer(
    pretrained_model_name_or_path: str | None, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """The model's own tokenizer, or the offline Qwen3 one when no checkpoint is named."""
    if pretrained_model_name_or_path is None:
        return build_offline_qwen3_tokenizer()
    return AutoTokenizer.from_pretrained(pretrained_model_name_or_path, trust_remote_code=trust_remote_code)
