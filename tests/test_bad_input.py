"""Every bad value is a one-line error before any work: config ranges and names, conf/
syntax and options, files of the wrong kind, and records the pipeline cannot hold."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from medsft.core.config import ConfigError, compose_conf, load_config
from medsft.data.records import DataError, read_records
from tests.conftest import ROOT
from tests.test_records import GOOD

# (override, the start of the message after "params.yaml: "): each refused by load_config.
CONFIG_CASES = [
    ("variants.v1.lora.lora_dropout=1.5", "variants.v1.lora.lora_dropout: 1.5 is out of range: must be in [0, 1)"),
    ("variants.v1.lora.lora_dropout=-0.1", "variants.v1.lora.lora_dropout: -0.1 is out of range"),
    ("variants.v1.training.learning_rate=-0.001", "variants.v1.training.learning_rate: -0.001 is out of range"),
    ("variants.v1.training.learning_rate=0", "variants.v1.training.learning_rate: 0 is out of range: must be > 0"),
    ("variants.v1.lora.r=0", "variants.v1.lora.r: 0 is out of range: must be an integer >= 1"),
    ("variants.v1.lora.target_modules=[nonexistent_proj]", "variants.v1.lora.target_modules: ['nonexistent_proj']"),
    ("variants.v2.lora.modules_to_save=[embed]", "variants.v2.lora.modules_to_save: ['embed'] not among"),
    ("model.training.max_steps=0", "model.training.max_steps: 0 is out of range: must be >= 1, or -1"),
    ("variants.v1.training.lr_scheduler_type=cosinus", "variants.v1.training.lr_scheduler_type: 'cosinus' is not"),
    ("model.training.optim=adam", "variants.v1.training.optim: 'adam' is not one of transformers'"),
    ("variants.v1.training.max_grad_norm=.nan", "variants.v1.training.max_grad_norm: nan is out of range"),
    ("generation.max_new_tokens=0", "generation: `max_new_tokens` must be greater than 0"),
    ("generation.temperature=0", "generation.temperature: 0 is out of range: must be > 0"),
    ("generation.top_p=1.5", "generation.top_p: 1.5 is out of range"),
    ("report.phase_steps=-5", "report.phase_steps: -5 is out of range: must be an integer >= 1"),
    ("report.phase_steps=0", "report.phase_steps: 0 is out of range"),
    ("evaluate.num_generations=-1", "evaluate.num_generations: -1 is out of range: must be an integer >= 0"),
    ("data.max_reject_fraction=-1", "data.max_reject_fraction: -1.0 is out of range: must be in [0, 1]"),
    ("data.max_reject_fraction=1.5", "data.max_reject_fraction: 1.5 is out of range"),
    ("model.max_length=1", "model.max_length: 1 is out of range"),
    ("variant@variants.v4=nope", "variant@variants.v4=nope: no option 'nope' in conf/variant/"),
    ("model=nope", "model=nope: no option 'nope' in conf/model/ (options: ['qwen3-1.7b', 'tiny'])"),
]


@pytest.mark.parametrize(("override", "message"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_a_bad_setting_is_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config([override])
    text = str(info.value)
    assert "\n" not in text
    assert message in text, text


def test_good_values_at_the_edges_of_the_ranges_pass():
    edges = ["variants.v1.lora.lora_dropout=0", "model.training.max_steps=-1", "data.max_reject_fraction=1"]
    cfg = load_config([*edges, "evaluate.num_generations=0", "variant@variants.v4=v2"])
    assert cfg.variants.v4.lora.modules_to_save == ["embed_tokens", "lm_head"]  # v4 is v2, composed


def test_a_range_error_on_the_command_line_exits_2_before_any_model_loads():
    env = {**os.environ, "MEDSFT_DEBUG": ""}
    cmd = [sys.executable, "-m", "stages.train", "v1", "variants.v1.lora.target_modules=[nonexistent_proj]"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "variants.v1.lora.target_modules" in line and "q_proj" in line
    assert "Loading weights" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture
def conf_copy(tmp_path, monkeypatch):
    """A copy of conf/ as the working directory's, to break."""
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "conf"


def test_a_yaml_syntax_error_in_conf_names_the_file_and_line(conf_copy):
    with open(conf_copy / "data" / "sample.yaml", "a", encoding="utf-8") as fh:
        fh.write("x: [1, 2\n")
    with pytest.raises(ConfigError, match=r"^conf/data/sample.yaml:\d+:\d+: YAML syntax error: expected ','"):
        compose_conf()
    with pytest.raises(ConfigError, match=r"conf/data/sample.yaml:\d+:\d+: YAML syntax error"):
        compose_conf(["model=qwen3-1.7b"])


def test_compose_on_the_command_line_is_one_line_and_exit_2(conf_copy):
    (conf_copy / "config.yaml").write_text("defaults: [model: tiny\n", encoding="utf-8")
    env = {**os.environ, "MEDSFT_DEBUG": "", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "stages.compose"], cwd=conf_copy.parent, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    assert [x for x in proc.stderr.splitlines() if x.strip()] == [
        x for x in proc.stderr.splitlines() if x.startswith("error: conf/config.yaml:")
    ]


def write_lines(path, lines: list[str], encoding: str = "utf-8"):
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


GOOD_LINES = [json.dumps(r, ensure_ascii=False) for r in GOOD]


def test_a_folder_is_named_as_a_folder(tmp_path):
    with pytest.raises(DataError, match=r": is a directory, not a data file \(data.path"):
        read_records(tmp_path)


def test_a_gb18030_file_is_named_with_the_command_that_converts_it(tmp_path):
    path = write_lines(tmp_path / "gb.jsonl", GOOD_LINES, encoding="gb18030")
    with pytest.raises(DataError, match=r"not UTF-8 \(it decodes as GB18030\); convert it: iconv -f GB18030 -t UTF-8"):
        read_records(path)


def test_a_utf16_file_is_named_by_its_byte_order_mark(tmp_path):
    path = tmp_path / "u16.jsonl"
    path.write_bytes(("\n".join(GOOD_LINES) + "\n").encode("utf-16"))
    with pytest.raises(DataError, match=r"not UTF-8 \(a UTF-16 byte order mark\)"):
        read_records(path)


@pytest.mark.parametrize(("delimiter", "kind"), [(",", "CSV"), ("\t", "TSV")])
def test_a_csv_file_is_named_with_its_columns(tmp_path, delimiter, kind):
    path = tmp_path / "data.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["question", "think", "answer"], delimiter=delimiter, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(GOOD)
    with pytest.raises(DataError, match=rf"not JSON Lines \(it looks like {kind} with columns \['question', 'think'"):
        read_records(path)


def test_a_few_bad_lines_in_another_encoding_are_rejected_one_by_one(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(("\n".join(GOOD_LINES) + "\n").encode() + GOOD_LINES[0].replace("1", "9").encode("gb18030"))
    result = read_records(path)
    assert len(result.accepted) == len(GOOD)
    (reject,) = result.rejects
    assert reject.kind == "invalid UTF-8" and reject.line == len(GOOD) + 1


SURROGATES = {
    "question": '{"question": "头痛\\ud800怎么办", "think": "t", "answer": "a"}',
    "instruction": '{"instruction": "\\udfff", "question": "q", "think": "t", "answer": "a"}',
    "extra": '{"question": "q2", "think": "t", "answer": "a", "extra": {"k": ["\\ud83d"]}}',
}


def test_lone_surrogates_are_rejected_naming_line_and_field_and_the_rest_is_kept(tmp_path):
    path = write_lines(tmp_path / "s.jsonl", [*GOOD_LINES, *SURROGATES.values()])
    result = read_records(path)
    assert len(result.accepted) == len(GOOD)  # no good record is lost
    assert [(r.line, r.field, r.kind) for r in result.rejects] == [
        (len(GOOD) + 1 + i, field, "lone surrogate") for i, field in enumerate(SURROGATES)
    ]
    for reject in result.rejects:  # kept as written, and writable as UTF-8
        reject.raw.encode("utf-8")
        assert "\\ud" in reject.raw


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("answer", "\u200b\u200b", "empty after stripping"),
        ("answer", "\xa0\u200b", "empty after stripping"),
        ("answer", "。。。", "no content"),
        ("question", "\u200d", "empty after stripping"),
        ("think", " \u2060\ufeff ", "empty after stripping"),
    ],
)
def test_invisible_or_contentless_text_is_no_target(tmp_path, field, value, kind):
    record = {**GOOD[0], field: value}
    path = write_lines(tmp_path / "r.jsonl", [*GOOD_LINES[1:], json.dumps(record, ensure_ascii=False)])
    (reject,) = read_records(path).rejects
    assert (reject.field, reject.kind) == (field, kind)


def test_data_errors_exit_1_with_one_line_and_debug_shows_the_traceback(tmp_path):
    path = write_lines(tmp_path / "gb.jsonl", GOOD_LINES, encoding="gb18030")
    cmd = [
        sys.executable,
        "-m",
        "stages.prepare",
        f"data.path={path}",
        f"prepare.out_dir={tmp_path / 'out'}",
        f"output_roots=[{tmp_path}]",
    ]
    for debug in ("", "1"):
        env = {**os.environ, "MEDSFT_DEBUG": debug}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1
        if debug:
            assert "Traceback (most recent call last)" in proc.stderr and "DataError" in proc.stderr
        else:
            (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
            assert f"{path}: not UTF-8 (it decodes as GB18030)" in line
            assert "Traceback" not in proc.stderr
