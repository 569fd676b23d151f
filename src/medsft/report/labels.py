"""The report's tables and the words of their headers, in every report language.

A table is defined once, where its rows are computed (:mod:`medsft.report.sections`), as a
:class:`Table`: its columns (keys of :data:`LABELS`, or :class:`Name` for a header that is
data, such as a run's name) and its rows. The template only places it (``{{ table(t) }}``)
and its header is written in the report's language; a key without a label in that language
is an error, not an English fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from medsft.analysis.tables import md_table

Row = list[str]

# key -> language -> header. A text shared by all languages (a metric's name, a field name a
# reader searches for) is given once under "*".
LABELS: dict[str, dict[str, str]] = {
    # shared by many tables
    "run": {"en": "run", "zh": "运行"},
    "variant": {"en": "variant", "zh": "变体"},
    "key": {"en": "config key", "zh": "配置键"},
    "change": {"en": "Δ vs base", "zh": "相对基准 Δ"},
    "mean": {"en": "mean", "zh": "均值"},
    "min": {"en": "min", "zh": "最小值"},
    "max": {"en": "max", "zh": "最大值"},
    "output": {"en": "output", "zh": "输出"},
    # overview
    "history_file": {"en": "logged file", "zh": "记录文件"},
    "last_step": {"en": "last logged step", "zh": "最后记录步"},
    "train_seconds": {"en": "training time (s)", "zh": "训练时长 (秒)"},
    "eval_seconds": {"en": "evaluation in training (s)", "zh": "训练中评估 (秒)"},
    "tokens_per_second": {"en": "throughput (non-padding tokens/s)", "zh": "吞吐 (非填充 token/秒)"},
    "hardware": {"en": "hardware", "zh": "硬件"},
    "asked": {"en": "{run}: variant's value", "zh": "{run}: 变体的值"},
    "used": {"en": "used", "zh": "实际使用"},
    # losses, learning rate, gradients
    "phase": {"en": "phase", "zh": "阶段"},
    "phase_first_loss": {"en": "train loss (first)", "zh": "训练损失（首）"},
    "phase_last_loss": {"en": "train loss (last)", "zh": "训练损失（末）"},
    "phase_drop": {"en": "Δ in phase", "zh": "阶段内 Δ"},
    "phase_eval_loss": {"en": "eval loss", "zh": "验证损失"},
    "lr_first": {"en": "first", "zh": "首步"},
    "lr_warmup_end": {"en": "warmup end", "zh": "预热结束"},
    "lr_mid": {"en": "mid-run", "zh": "中点"},
    "lr_end": {"en": "end", "zh": "结束"},
    "min_at": {"en": "min @ step", "zh": "最小值 @ 步"},
    "max_at": {"en": "max @ step", "zh": "最大值 @ 步"},
    "std": {"en": "std", "zh": "标准差"},
    "cv": {"en": "CV", "zh": "变异系数"},
    "cv_all": {"en": "CV (all)", "zh": "变异系数（全程）"},
    "cv_after_warmup": {"en": "CV (after warmup)", "zh": "变异系数（预热后）"},
    "late_range": {"en": "late range", "zh": "后段范围"},
    "group": {"en": "group", "zh": "参数组"},
    "final_train_loss": {"en": "final train loss", "zh": "最终训练损失"},
    "final_eval_loss": {"en": "final eval loss", "zh": "最终验证损失"},
    "generalization_gap": {"en": "generalization gap", "zh": "泛化差距"},
    "plateau_step": {"en": "plateau step", "zh": "平台期步"},
    "grad_norm_cv": {"en": "grad-norm CV", "zh": "梯度范数变异系数"},
    # data and augmentation
    "split": {"en": "split", "zh": "划分"},
    "field": {"en": "field", "zh": "字段"},
    "sum": {"en": "sum", "zh": "总和"},
    "median": {"en": "median", "zh": "中位数"},
    "p95": {"*": "p95"},
    "max_length": {"*": "max_length"},
    "truncated": {"en": "examples truncated", "zh": "超长被截断的样本"},
    "target_lost": {"en": "target tokens lost to truncation", "zh": "截断损失的目标 token 占比"},
    "records": {"en": "records", "zh": "记录数"},
    "knowledge_injection": {"en": "knowledge injection", "zh": "知识注入"},
    "records_injected": {"en": "records injected", "zh": "注入的记录"},
    "terms_injected": {"en": "terms injected", "zh": "注入的术语"},
    "term_masking": {"en": "term masking (p · field)", "zh": "术语掩码 (概率 · 字段)"},
    "masked_per_epoch": {"en": "records masked per epoch (by mask type)", "zh": "各 epoch 被掩码的记录（按掩码类型）"},
    "on": {"en": "on", "zh": "开"},
    "off": {"en": "off", "zh": "关"},
    # evaluation (eval/metrics.json fields)
    "eval_loss_token_weighted": {"en": "eval loss (token-weighted)", "zh": "验证损失（按 token 加权）"},
    "perplexity": {"en": "perplexity", "zh": "困惑度"},
    "think_format_validity": {"en": "think format", "zh": "think 格式有效率"},
    "rouge_l_f1": {"*": "ROUGE-L F1"},
    "bleu": {"*": "BLEU"},
    "word_rouge_1": {"en": "ROUGE-1 (words)", "zh": "ROUGE-1（词）"},
    "word_rouge_2": {"en": "ROUGE-2 (words)", "zh": "ROUGE-2（词）"},
    "word_rouge_l": {"en": "ROUGE-L (words)", "zh": "ROUGE-L（词）"},
    "bleu_4": {"*": "BLEU-4"},
    "term_recall": {"en": "term recall", "zh": "术语召回率"},
    "mechanism_mention_rate": {"en": "mechanism mentions", "zh": "机制提及率"},
    "rare_term_rate": {"en": "rare-term rate", "zh": "罕见术语率"},
    "reference": {"en": "reference", "zh": "参考答案"},
    "task": {"en": "task", "zh": "任务"},
    "version": {"en": "version", "zh": "版本"},
    "examples": {"en": "examples", "zh": "样本数"},
    "shots": {"en": "shots", "zh": "示例数 (shots)"},
    "metric": {"en": "metric", "zh": "指标"},
    # seeds and sweep
    "seeds": {"en": "seeds", "zh": "种子"},
    "loss_per_seed": {"en": "final eval loss per seed", "zh": "各种子最终验证损失"},
    "spread": {"en": "spread", "zh": "波动"},
    "rank": {"en": "rank", "zh": "排名"},
    "status": {"en": "status", "zh": "状态"},
    "swept_key": {"en": "swept key", "zh": "扫描的键"},
    "mean_per_value": {"en": "mean final eval loss per value", "zh": "各取值的最终验证损失均值"},
    "effect": {"en": "effect (max − min)", "zh": "效应（最大 − 最小）"},
    "vs_seed_spread": {"en": "vs seed spread", "zh": "与种子间波动相比"},
    "above_noise": {"en": "larger", "zh": "更大"},
    "within_noise": {"en": "within (noise)", "zh": "不超过（噪声）"},
    # claims audit
    "claim_id": {"en": "id", "zh": "编号"},
    "claim": {"en": "claim", "zh": "结论"},
    "verdict": {"en": "verdict", "zh": "判定"},
    "measured": {"en": "measured (≈ claimed)", "zh": "实测（≈ 结论所述）"},
    "holds": {"en": "holds", "zh": "成立"},
    "does not hold": {"en": "does not hold", "zh": "不成立"},
    "no data": {"en": "no data", "zh": "无数据"},
    # reproducibility
    "path": {"en": "path", "zh": "路径"},
    "md5": {"*": "md5"},
    # figures (axis labels and titles)
    "fig_step": {"en": "optimizer step", "zh": "优化步"},
    "fig_loss": {"en": "train loss (mean over the logging window)", "zh": "训练损失（记录窗口均值）"},
    "fig_eval_loss": {"en": "eval loss (Trainer, batch mean)", "zh": "验证损失（Trainer 批次均值）"},
    "fig_learning_rate": {"en": "learning rate", "zh": "学习率"},
    "fig_grad_norm": {"en": "grad norm (global L2, before clipping)", "zh": "梯度范数（全局 L2，裁剪前）"},
    "fig_lengths": {"en": "example lengths", "zh": "样本长度"},
    "fig_tokens_per_example": {
        "en": "tokens per formatted example (prompt + target)",
        "zh": "格式化样本的 token 数（提示 + 目标）",
    },
    "fig_examples": {"en": "examples", "zh": "样本数"},
    "fig_noise_floor": {
        "en": "y axis spans at least the seed spread {floor}: smaller gaps are noise",
        "zh": "纵轴跨度不小于种子间波动 {floor}：更小的差异是噪声",
    },
}


def label(key: str, lang: str, **fields: str) -> str:
    """The header ``key`` in ``lang`` (``fields`` filled in); a missing one is an error."""
    texts = LABELS.get(key)
    if texts is None:
        raise KeyError(f"report label {key!r} is not defined in medsft/report/labels.py")
    text = texts.get("*", texts.get(lang))
    if text is None:
        raise KeyError(f"report label {key!r} has no {lang!r} text in medsft/report/labels.py")
    return text.format(**fields) if fields else text


@dataclass(frozen=True)
class Name:
    """A header that is data, shown as it is in every language (a run's name, a config key)."""

    text: str


@dataclass(frozen=True)
class Label:
    """A :data:`LABELS` key with fields to fill in (``Label("asked", run="v2")``)."""

    key: str
    fields: dict[str, str] = field(default_factory=dict)


Column = str | Name | Label


@dataclass(frozen=True)
class Table:
    """A report table: ``columns`` (label keys, :class:`Label` or :class:`Name`) and ``rows``
    of formatted cells, one per column."""

    columns: tuple[Column, ...]
    rows: list[Row]

    def header(self, lang: str) -> list[str]:
        """The column headers in ``lang``."""
        return [_header(c, lang) for c in self.columns]

    def markdown(self, lang: str) -> str:
        """The table as markdown with its header in ``lang``."""
        return md_table(self.header(lang), self.rows)


def _header(column: Column, lang: str) -> str:
    if isinstance(column, Name):
        return column.text
    if isinstance(column, Label):
        return label(column.key, lang, **column.fields)
    return label(column, lang)


def names(texts: Sequence[str]) -> tuple[Name, ...]:
    """Headers that are data (run names, task names) as columns."""
    return tuple(Name(t) for t in texts)
