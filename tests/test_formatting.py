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
