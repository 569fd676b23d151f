"""Training on the tiny profile: outputs, adapter contents, reload, history."""

import json

import pandas as pd
import pytest
import torch
from safetensors import safe_open

from medsft.core.config import load_config
from medsft.core.history import HISTORY_COLUMNS
from medsft.core.spec import RunSpec
from medsft.modeling.loading import load_adapter
from medsft.train.trainer import train_variant
from tests.conftest import ROOT

RECORDS = [
    {
        "question": f"第{i}位患者血压升高应如何处理？",
        "think": "先评估心血管风险，再决定用药。" * 3,
        "answer": "改善生活方式，必要时用药。",
    }
    for i in range(12)
]
# timing.json's fields (with the peak memory: CPU RSS here, CUDA allocated on a GPU)
RUN_TIME = ("wall_seconds", "train_seconds", "eval_seconds", "tokens_per_second", "device", "hardware", "cpu_count")
FAST = [
    "tracking.mode=disabled",
    "model.pretrain.training=null",  # the seeded init as the base: no pretrain stage needed
    "model.pretrain.trim_vocabulary=false",
    "model.max_length=64",
    "model.training.max_steps=4",
    "model.training.logging_steps=1",
    "model.training.eval_steps=2",
    "model.training.save_steps=2",
    "model.training.per_device_train_batch_size=2",
]


@pytest.fixture(scope="module")
def trained_v2(tmp_path_factory):
    cfg = load_config(FAST, path=ROOT / "params.yaml")
    out = tmp_path_factory.mktemp("v2")
    metrics = train_variant(cfg, "v2", RECORDS[:10], RECORDS[10:], out)
    return cfg, out, metrics


def test_outputs_history_and_metrics(trained_v2):
    _, out, metrics = trained_v2
    hist = pd.read_csv(out / "history.csv")
    assert tuple(hist.columns) == (*HISTORY_COLUMNS, "grad_norm_lora", "grad_norm_modules_to_save")
    # The groups split the global pre-clipping norm: lora² + modules_to_save² = global².
    train_rows = hist.dropna(subset=["grad_norm"])
    recombined = (train_rows["grad_norm_lora"] ** 2 + train_rows["grad_norm_modules_to_save"] ** 2) ** 0.5
    assert recombined.tolist() == pytest.approx(train_rows["grad_norm"].tolist(), rel=1e-4)
    assert (train_rows["grad_norm_modules_to_save"] > 0).all()
    assert hist["step"].tolist() == [1, 2, 3, 4]
    assert hist["eval_loss"].notna().tolist() == [False, True, False, True]
    assert hist[["loss", "grad_norm", "learning_rate"]].notna().all().all()
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert sum("eval_loss" in e for e in state["log_history"]) == 2  # no duplicate final evaluation
    assert metrics["steps"] == 4
    assert metrics["final_train_loss"] == pytest.approx(hist["loss"].iloc[-1])
    assert metrics["final_eval_loss"] == pytest.approx(hist["eval_loss"].iloc[-1])
    assert metrics["tokens_per_second"] > 0 and 0 < metrics["trainable_params"] < metrics["total_params"]
    # metrics.json holds the results, timing.json how the run ran (DVC metrics are results only).
    results, timing = (json.loads((out / name).read_text()) for name in ("metrics.json", "timing.json"))
    assert results["steps"] == 4 and {**results, **timing} == metrics
    assert set(timing) == {*RUN_TIME, "peak_cpu_rss_bytes", "resumed_from"} and timing["cpu_count"] >= 1
    assert not set(results) & set(timing)
    # The spec holds the TrainingArguments as passed: the profile's batch, not the variant's 4.
    spec = RunSpec.read(out)
    assert spec.training["per_device_train_batch_size"] == 2 == state["train_batch_size"]
    assert spec.profile_overrides["per_device_train_batch_size"] == {"variant": 4, "profile": 2}
    assert spec.lora["modules_to_save"] == ["embed_tokens", "lm_head"] and spec.variant == "v2"
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert (
        adapter_config["base_model_name_or_path"]
        == spec.base_model_id.startswith("medsft/tiny-qwen3-") * spec.base_model_id
    )
    assert adapter_config["target_modules"] == sorted(adapter_config["target_modules"])
    assert not any(k.endswith(("_runtime", "_per_second")) for e in state["log_history"] for k in e)


def test_adapter_is_safetensors_with_embedding_and_output_layers(trained_v2):
    _, out, _ = trained_v2
    files = {p.name for p in (out / "adapter").iterdir()}
    assert "adapter_model.safetensors" in files and not any(f.endswith((".bin", ".pt")) for f in files)
    with safe_open(out / "adapter" / "adapter_model.safetensors", "pt") as fh:
        keys = list(fh.keys())
    assert any("embed_tokens" in k for k in keys) and any("lm_head" in k for k in keys)
    assert any("lora_A" in k for k in keys)


def test_reloaded_adapter_gives_the_trained_logits(trained_v2):
    cfg, out, _ = trained_v2
    from peft import PeftModel

    from medsft.modeling.loading import load_model_and_tokenizer

    spec = RunSpec.read(out)
    model, tok = load_adapter(spec.model, out / "adapter")
    ids = torch.tensor([tok("糖尿病的诊断标准是什么？", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        reloaded = model(input_ids=ids).logits
        base, _ = load_model_and_tokenizer(spec.model)
        plain = base(input_ids=ids).logits
    assert not torch.allclose(reloaded, plain), "the adapter changed nothing"
    # Loading the saved weights into a freshly wrapped model reproduces the same logits.
    base2, _ = load_model_and_tokenizer(spec.model)
    again = PeftModel.from_pretrained(base2, str(out / "adapter")).eval()
    with torch.no_grad():
        assert torch.equal(again(input_ids=ids).logits, reloaded)


def test_stale_checkpoints_of_another_config_are_not_resumed(tmp_path):
    cfg = load_config(FAST + ["model.training.max_steps=2"], path=ROOT / "params.yaml")
    train_variant(cfg, "v1", RECORDS[:10], RECORDS[10:], tmp_path)
    cfg2 = load_config(
        FAST + ["model.training.max_steps=2", "variants.v1.lora.lora_dropout=0.3"], path=ROOT / "params.yaml"
    )
    metrics = train_variant(cfg2, "v1", RECORDS[:10], RECORDS[10:], tmp_path)
    assert metrics["resumed_from"] is None and metrics["steps"] == 2
    assert not list((tmp_path / "checkpoints").glob("checkpoint-*")), "a finished run keeps no checkpoint"
    again = train_variant(cfg2, "v1", RECORDS[:10], RECORDS[10:], tmp_path)
    assert again["resumed_from"] is None and again["steps"] == 2


def test_same_config_and_seed_give_identical_histories(tmp_path):
    cfg = load_config(FAST, path=ROOT / "params.yaml")
    for name in ("a", "b"):
        train_variant(cfg, "v2", RECORDS[:10], RECORDS[10:], tmp_path / name)
    first, second = (pd.read_csv(tmp_path / n / "history.csv") for n in ("a", "b"))
    pd.testing.assert_frame_equal(first, second)  # exact: LoRA init, dropout and data order are seeded
    other = load_config(FAST + ["variants.v2.training.seed=7"], path=ROOT / "params.yaml")
    train_variant(other, "v2", RECORDS[:10], RECORDS[10:], tmp_path / "c")
    assert not pd.read_csv(tmp_path / "c" / "history.csv")["loss"].equals(first["loss"])


def test_train_owns_term_masking_and_reports_the_masks_it_applied(tmp_path, monkeypatch):
    from medsft.train import datasets

    applied: dict[tuple[int, str], int] = {}
    original = datasets.augment_for_epoch

    def recording(record, settings, lexicon, seed, epoch):
        out, masks = original(record, settings, lexicon, seed, epoch)
        applied[(epoch, record["question"])] = len(masks)
        return out, masks

    monkeypatch.setattr(datasets, "augment_for_epoch", recording)
    records = [{**r, "question": f"第{i}例糖尿病患者多尿，需排除高血压吗？"} for i, r in enumerate(RECORDS)]
    # 10 records, batch 2: 10 steps are exactly two epochs, so every record is seen in each.
    overrides = [*FAST, "model.training.max_steps=10", "variants.v3.augment.term_masking.probability=0.5"]
    cfg = load_config(overrides, path=ROOT / "params.yaml")
    train_variant(cfg, "v3", records[:10], records[10:], tmp_path)
    report = json.loads((tmp_path / "masking.json").read_text())
    assert [e["epoch"] for e in report["epochs"]] == [0, 1]
    for entry in report["epochs"]:
        seen = {q: n for (epoch, q), n in applied.items() if epoch == entry["epoch"]}
        assert len(seen) == 10
        assert entry["records_masked"] == sum(1 for n in seen.values() if n) > 0
        assert entry["terms_masked"] == sum(seen.values())
