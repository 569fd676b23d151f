import json

from medsft.data.records import normalise_question, read_records, split_records

GOOD = [
    {"instruction": f"说明{i}", "question": f"问题{i}是什么？", "think": f"思考{i}", "answer": f"回答{i}"}
    for i in range(20)
]


def write_lines(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_each_bad_record_is_rejected_with_line_field_and_reason(tmp_path):
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in GOOD[:3]]
    lines += [
        b'{"question": "broken json"',  # line 4
        json.dumps({"question": "缺答案", "think": "t"}, ensure_ascii=False).encode(),  # 5
        json.dumps({"question": "空答案", "think": "t", "answer": "  "}, ensure_ascii=False).encode(),  # 6
        json.dumps({"question": "非字符串", "think": "t", "answer": 3}, ensure_ascii=False).encode(),  # 7
        json.dumps(dict(GOOD[0], question=" 问题0是什么？ "), ensure_ascii=False).encode(),  # 8: duplicate
        b'{"question": "\xff\xfe", "think": "t", "answer": "a"}',  # 9: invalid UTF-8
        json.dumps({"question": "长", "think": "x" * 50, "answer": "a"}, ensure_ascii=False).encode(),  # 10
    ]
    path = tmp_path / "mixed.jsonl"
    write_lines(path, lines)
    result = read_records(path, max_record_chars=40)
    assert result.accepted == GOOD[:3]
    got = {r.line: (r.field, r.kind) for r in result.rejects}
    assert got == {
        4: (None, "invalid JSON"),
        5: ("answer", "missing field"),
        6: ("answer", "empty after stripping"),
        7: ("answer", "not a string"),
        8: ("question", "duplicate"),
        9: (None, "invalid UTF-8"),
        10: (None, "over-long"),
    }
    assert result.rejects[4].reason == "duplicate of line 1"  # the kind groups; the reason says which
    assert all(r.raw for r in result.rejects)


def test_hash_split_is_deterministic_and_stable_when_records_are_added():
    train, val = split_records(GOOD, "hash", 0.3, seed=42)
    assert (train, val) == split_records(GOOD, "hash", 0.3, seed=42)
    assert sorted(map(json.dumps, train + val)) == sorted(map(json.dumps, GOOD))
    more = GOOD + [dict(GOOD[0], question=f"新问题{i}") for i in range(30)]
    train2, val2 = split_records(more, "hash", 0.3, seed=42)
    assert all(r in val2 for r in val) and all(r in train2 for r in train)
    assert split_records(GOOD, "hash", 0.3, seed=7) != (train, val)


def test_seed_shuffle_reproduces_the_original_code():
    import random

    data = list(GOOD)
    random.seed(42)
    random.shuffle(data)
    expected = (data[: int(len(data) * 0.9)], data[int(len(data) * 0.9) :])
    assert split_records(GOOD, "seed_shuffle", 0.1, seed=42) == expected


def test_normalised_question_ignores_width_space_and_case():
    assert normalise_question(" ＡBc 问题？") == normalise_question("abc问题?")
