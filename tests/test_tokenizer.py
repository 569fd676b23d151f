import json

import pytest

from medsft.data.tokenizer import build_offline_qwen3_tokenizer


def test_special_token_ids_are_qwen3s():
    tok = build_offline_qwen3_tokenizer()
    ids = {
        t: tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
    }
    assert ids == {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<think>": 151667,
        "</think>": 151668,
    }
    assert len(tok) == 151669
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_chinese_sentence_ids_are_pinned():
    tok = build_offline_qwen3_tokenizer()
    ids = tok("你好，我最近总是头痛，需要做什么检查？", add_special_tokens=False)["input_ids"]
    assert ids == [108386, 3837, 35946, 104044, 104014, 109180, 3837, 85106, 106428, 101071, 11319]


def test_special_tokens_are_single_tokens_inside_text():
    tok = build_offline_qwen3_tokenizer()
    ids = tok("<|im_start|>assistant\n<think>\n嗯</think>", add_special_tokens=False)["input_ids"]
    assert ids[0] == 151644 and 151667 in ids and ids[-1] == 151668
    # The think markers are ordinary added tokens in Qwen3: kept by skip_special_tokens.
    assert tok.decode(ids, skip_special_tokens=True).startswith("assistant\n<think>")


def test_token_sums_equal_real_qwen3_on_reference_records(reference):
    tok = build_offline_qwen3_tokenizer()
    rows = [json.loads(line) for line in open(reference / "delicate_medical_r1_val241.jsonl", encoding="utf-8")]
    sums = {
        f: sum(len(i) for i in tok([r[f] for r in rows], add_special_tokens=False)["input_ids"])
        for f in ("question", "think", "answer")
    }
    # Counted with the hub's Qwen/Qwen3-1.7B tokenizer.
    assert sums == {"question": 8730, "think": 136827, "answer": 36523}


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty tokenizer cache, and the in-process memo cleared before and after."""
    monkeypatch.setenv("MEDSFT_CACHE", str(tmp_path / "cache"))
    build_offline_qwen3_tokenizer.cache_clear()
    yield tmp_path / "cache" / "tokenizers"
    build_offline_qwen3_tokenizer.cache_clear()


def test_cached_tokenizer_saves_the_same_bytes_as_a_fresh_conversion(fresh_cache, tmp_path):
    built = build_offline_qwen3_tokenizer()
    (cached_file,) = fresh_cache.glob("qwen3-offline-*.json")
    build_offline_qwen3_tokenizer.cache_clear()
    cached = build_offline_qwen3_tokenizer()
    # The pretrain stage saves the tokenizer into a DVC output: a cold and a warm cache must
    # give identical bytes there, or a rerun would not be byte-identical.
    built.save_pretrained(tmp_path / "a")
    cached.save_pretrained(tmp_path / "b")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    text = "<|im_start|>system\n头痛三天<|im_end|>\n<think>\n\n</think>\n\nA  b\r\n 12345 ﬁ é\u200b"
    assert built(text).input_ids == cached(text).input_ids
    assert cached_file.stat().st_size > 1_000_000


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", json.dumps({"version": "1.0", "model": {"type": "WordLevel", "vocab": {"a": 0}}}).encode()],
    ids=["empty", "truncated", "foreign"],
)
def test_a_broken_cached_tokenizer_is_rebuilt(fresh_cache, content, caplog):
    from medsft.data.tokenizer import cache_key, qwen_tiktoken_path

    cached_file = fresh_cache / f"qwen3-offline-{cache_key(qwen_tiktoken_path())}.json"
    cached_file.parent.mkdir(parents=True)
    cached_file.write_bytes(content)
    tok = build_offline_qwen3_tokenizer()
    assert len(tok) == 151669 and tok.convert_tokens_to_ids("<think>") == 151667
    assert "rebuilding it" in caplog.text
    assert cached_file.stat().st_size > 1_000_000  # rewritten


def test_an_unwritable_cache_costs_time_not_correctness(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MEDSFT_CACHE", str(blocker))
    build_offline_qwen3_tokenizer.cache_clear()
    try:
        tok = build_offline_qwen3_tokenizer()
    finally:
        build_offline_qwen3_tokenizer.cache_clear()
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645
    assert "could not cache the converted tokenizer" in caplog.text
