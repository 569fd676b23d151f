"""The prepare stage standalone: reference records, bad records, determinism."""

import json

import pytest

from stages.prepare import main
from tests.test_records import GOOD


def exit_code(argv) -> int:
    """The stage's exit status: its return value, or the code it exits with on an error."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def run_prepare(tmp_path, data, *extra, out="out"):
    out_dir = tmp_path / out
    code = exit_code([f"data.path={data}", f"prepare.out_dir={out_dir}", f"output_roots=[{tmp_path}]", *extra])
    return code, out_dir


def test_reference_records_all_accepted_with_real_token_sums(reference, tmp_path):
    code, out = run_prepare(tmp_path, reference / "delicate_medical_r1_val241.jsonl")
    assert code == 0
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["accepted"], stats["rejected"]) == (241, 0)
    sums = {
        f: sum(stats["splits"][s]["fields"][f]["sum"] for s in ("train", "val"))
        for f in ("question", "think", "answer")
    }
    assert sums == {"question": 8730, "think": 136827, "answer": 36523}
    assert (out / "rejects.jsonl").read_text() == ""


def test_bad_records_are_kept_with_reasons_and_the_threshold_fails(tmp_path, capsys):
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in GOOD]
    lines += [
        b"{oops",
        json.dumps({"question": "q", "think": "t"}).encode(),
        b'{"question": "\xff", "think": "t", "answer": "a"}',
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    code, out = run_prepare(tmp_path, path, "data.max_reject_fraction=0.5")
    assert code == 0
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [(21, None), (22, "answer"), (23, None)]
    kept = [json.loads(line) for f in ("train", "val") for line in (out / f"{f}.jsonl").read_text().splitlines()]
    assert sorted(map(json.dumps, kept)) == sorted(map(json.dumps, GOOD))

    code, out = run_prepare(tmp_path, path, "data.max_reject_fraction=0.1", out="strict")
    assert code == 1
    err = capsys.readouterr().err
    assert "3 of 23 records rejected" in err and str(out / "rejects.jsonl") in err


def test_same_seed_same_bytes_other_seed_other_split(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in GOOD * 1), encoding="utf-8")
    outs = [run_prepare(tmp_path, path, "split.val_fraction=0.3", out=f"o{i}")[1] for i in range(2)]
    for name in ("train.jsonl", "val.jsonl", "stats.json", "rejects.jsonl"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    _, other = run_prepare(tmp_path, path, "split.val_fraction=0.3", "split.seed=7", out="o7")
    assert (other / "val.jsonl").read_bytes() != (outs[0] / "val.jsonl").read_bytes()


def test_unknown_source_missing_dataset_id_and_missing_file_are_clear(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["data.source=s3"])
    assert "data.source: 's3' is not one of" in capsys.readouterr().err
    assert exit_code(["data.source=huggingface", f"prepare.out_dir={tmp_path}/out", f"output_roots=[{tmp_path}]"]) == 2
    assert "needs data.dataset_id" in capsys.readouterr().err
    assert (
        exit_code(
            [f"data.path={tmp_path / 'none.jsonl'}", f"prepare.out_dir={tmp_path}/out", f"output_roots=[{tmp_path}]"]
        )
        == 2
    )
    assert "none.jsonl: data file not found" in capsys.readouterr().err


def test_modelscope_source_names_the_missing_extra(monkeypatch):
    import sys

    from medsft.data.records import load_source

    monkeypatch.setitem(sys.modules, "modelscope", None)
    monkeypatch.setitem(sys.modules, "modelscope.msdatasets", None)
    with pytest.raises(ImportError, match=r"optional extra 'modelscope'"):
        load_source("modelscope", "unused", "krisfu/delicate_medical_r1_data", "train", 20000)


def write_records(path, records, prefix=b""):
    path.write_bytes(prefix + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
    return path


def test_a_record_whose_prompt_fills_max_length_is_rejected_naming_line_and_field(tmp_path, capsys):
    long_question = {**GOOD[3], "question": "胸痛持续" * 40}  # about 80 tokens of question
    data = write_records(tmp_path / "d.jsonl", [*GOOD[:3], long_question, *GOOD[4:]])
    code, out = run_prepare(tmp_path, data, "model.max_length=64", "data.max_reject_fraction=0.5")
    assert code == 0
    (reject,) = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert (reject["line"], reject["field"]) == (4, "question")
    assert "no target token left" in reject["reason"] and "model.max_length=64" in reject["reason"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["accepted"] == len(GOOD) - 1
    for split in stats["splits"].values():  # every kept record keeps part of its target
        assert split["target_tokens_lost_fraction"] < 1


def test_an_empty_split_and_an_empty_file_are_one_line_errors(tmp_path, capsys):
    code, _ = run_prepare(tmp_path, write_records(tmp_path / "few.jsonl", GOOD[1:5]))  # all four hash to train
    err = capsys.readouterr().err
    assert code == 1 and "the val split is empty (4 records accepted" in err and "split.val_fraction" in err
    assert err.count("\n") == 1
    code, _ = run_prepare(tmp_path, write_records(tmp_path / "empty.jsonl", []))
    assert code == 2 and "no records" in capsys.readouterr().err


def test_a_bom_a_zero_width_space_and_a_failed_rerun(tmp_path, capsys):
    twin = {**GOOD[0], "question": GOOD[0]["question"][:2] + "\u200b" + GOOD[0]["question"][2:]}
    data = write_records(tmp_path / "bom.jsonl", [*GOOD, twin], prefix=b"\xef\xbb\xbf")
    code, out = run_prepare(tmp_path, data, "data.max_reject_fraction=0.5")
    assert code == 0
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [(len(GOOD) + 1, "duplicate of line 1")]
    # A failing rerun into the same folder leaves no split of the earlier run behind.
    code, out = run_prepare(tmp_path, data, "data.max_reject_fraction=0.0")
    assert code == 1 and not (out / "train.jsonl").exists() and not (out / "stats.json").exists()
    assert (out / "rejects.jsonl").exists()


def test_invalid_json_message_reads_once(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_bytes(b'{"question": "unterminated\n')
    from medsft.data.records import read_records

    (reject,) = read_records(data).rejects
    assert reject.reason.startswith("invalid JSON at column ") and "at at" not in reject.reason
