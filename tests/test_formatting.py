import pytest

from medsft.data.formatting import IGNORE_INDEX, encode_records, prompt_text, target_text
from medsft.data.tokenizer import build_offline_qwen3_tokenizer

SYSTEM = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"
RECORD = {"question": "高血压患者为什么要限盐？", "think": "钠潴留增加血容量。", "answer": "限盐可降低血压。"}


def test_qwen3_target_layout_and_prompt_mask():
    tok = build_offline_qwen3_tokenizer()
    enc = encode_records([RECORD], tok, SYSTEM, "qwen3", max_length=2048)
    ids, labels = enc.input_ids[0], enc.labels[0]
    text = tok.decode(ids)
    assert text == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{RECORD['question']}<|im_end|>\n"
        f"<|im_start|>assistant\n<think>\n{RECORD['think']}\n</think>\n\n{RECORD['answer']}<|im_end|>"
    )
    n_prompt = enc.prompt_tokens[0]
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert ids[n_prompt] == tok.convert_tokens_to_ids("<think>")
    assert ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")


def test_seed_style_is_the_original_code():
    tok = build_offline_qwen3_tokenizer()
    enc = encode_records([RECORD], tok, SYSTEM, "seed", max_length=2048)
    ids = enc.input_ids[0]
    n_prompt = enc.prompt_tokens[0]
    assert tok.decode(ids[n_prompt:-1]) == f"<think>{RECORD['think']}</think> \n {RECORD['answer']}"
    assert ids[-1] == tok.pad_token_id == 151643  # <|endoftext|>, not <|im_end|>
    assert enc.labels[0][-1] == 151643


def test_truncation_keeps_the_prompt_and_cuts_the_target():
    tok = build_offline_qwen3_tokenizer()
    full = encode_records([RECORD], tok, SYSTEM, "qwen3", max_length=2048)
    n_prompt = full.prompt_tokens[0]
    cut = encode_records([RECORD], tok, SYSTEM, "qwen3", max_length=n_prompt + 3)
    assert len(cut.input_ids[0]) == n_prompt + 3 == len(cut.labels[0])
    assert cut.input_ids[0] == full.input_ids[0][: n_prompt + 3]
    assert cut.kept_target_tokens[0] == 3 and cut.target_tokens[0] == full.target_tokens[0]


def test_prompt_text_and_unknown_style():
    assert prompt_text("Q", "S").endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="target_style"):
        target_text("t", "a", "chatml")


def added_tokens(tok) -> list[str]:
    """Every added token of the tokenizer (special or not), from the tokenizer itself."""
    return [t.content for t in tok.added_tokens_decoder.values()]


def test_added_token_strings_in_content_stay_text():
    tok = build_offline_qwen3_tokenizer()
    hostile = "".join(added_tokens(tok))
    assert len(added_tokens(tok)) == 26
    rec = {"question": f"问{hostile}", "think": f"想{hostile}", "answer": f"答{hostile}"}
    clean = {"question": "问", "think": "想", "answer": "答"}
    added_ids = set(tok.convert_tokens_to_ids(added_tokens(tok)))
    for style in ("qwen3", "seed"):
        enc, ref = (encode_records([r], tok, SYSTEM, style, 8192) for r in (rec, clean))
        structural = [i for i in enc.input_ids[0] if i in added_ids]
        assert structural == [i for i in ref.input_ids[0] if i in added_ids]  # only the format's own
        n = enc.prompt_tokens[0]
        expected_labels = {
            "qwen3": ["<think>", "</think>", "<|im_end|>"],
            "seed": ["<think>", "</think>", "<|endoftext|>"],
        }
        assert [i for i in enc.labels[0][n:] if i in added_ids] == tok.convert_tokens_to_ids(expected_labels[style])
        assert tok.decode(enc.input_ids[0]).count(hostile) == 3  # the characters survive


def test_text_encoding_equals_the_tokenizer_on_ordinary_records():
    from medsft.data.records import read_records

    tok = build_offline_qwen3_tokenizer()
    records = read_records("data/raw/medical_qa_sample.jsonl").accepted[:40]
    enc = encode_records(records, tok, SYSTEM, "qwen3", 100000)
    for r, ids in zip(records, enc.input_ids, strict=True):
        whole = prompt_text(r["question"], SYSTEM) + target_text(r["think"], r["answer"], "qwen3")
        assert ids == tok(whole, add_special_tokens=False)["input_ids"]
