import json

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
