"""Reading, validating and splitting QA records (the delicate_medical_r1_data schema).

Every record is accepted unchanged or rejected with its source line, the field and the
reason; nothing is dropped silently.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import random
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsft.core.errors import UserError
from medsft.data.formatting import encode_records

REQUIRED_FIELDS = ("question", "think", "answer")
TEXT_FIELDS = ("instruction", "question", "think", "answer")


@dataclass
class Reject:
    """A record that failed validation, kept with where and why."""

    line: int
    field: str | None
    reason: str
    raw: str

    @property
    def kind(self) -> str:
        """The reason without its particulars (line, column, byte, value): rejects group by it."""
        return re.split(r" at | of | U\+|:| \(", self.reason, maxsplit=1)[0]

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason, "raw": self.raw}


@dataclass
class ReadResult:
    accepted: list[dict[str, Any]]
    rejects: list[Reject]
    source: str
    lines: list[int] = field(default_factory=list)  # source line of each accepted record

    @property
    def total(self) -> int:
        return len(self.accepted) + len(self.rejects)


def normalise_question(text: str) -> str:
    """NFKC, no whitespace, no invisible format characters (zero-width space, BOM, …), lower
    case: two questions equal under this are duplicates."""
    return visible_text(unicodedata.normalize("NFKC", text)).lower()


def visible_text(text: str) -> str:
    """``text`` without whitespace (non-breaking spaces included) and invisible format
    characters (zero-width spaces and joiners, BOM, …): what a reader sees of it."""
    return "".join(ch for ch in text if not ch.isspace() and unicodedata.category(ch) != "Cf")


def lone_surrogate(value: Any) -> int | None:
    """The first lone surrogate code point in the strings of ``value`` (JSON's ``"\\ud800"``
    escapes decode to one; no UTF-8 file can hold it), or ``None``."""
    if isinstance(value, str):
        return next((ord(ch) for ch in value if 0xD800 <= ord(ch) <= 0xDFFF), None)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = lone_surrogate(key) if isinstance(key, str) else None
        found = found if found is not None else lone_surrogate(item)
        if found is not None:
            return found
    return None


def validate_record(obj: Any, max_record_chars: int) -> tuple[str | None, str] | None:
    """Return ``(field, reason)`` for an invalid record, ``None`` for a valid one."""
    if not isinstance(obj, dict):
        return None, f"not a JSON object ({type(obj).__name__})"
    for name, value in obj.items():
        code = lone_surrogate(name) if lone_surrogate(name) is not None else lone_surrogate(value)
        if code is not None:
            return name, f"lone surrogate U+{code:04X} (a broken \\u escape; not encodable as UTF-8)"
    for name in REQUIRED_FIELDS:
        if name not in obj:
            return name, "missing field"
    for name in TEXT_FIELDS:
        if name not in obj:
            continue
        if not isinstance(obj[name], str):
            return name, f"not a string ({type(obj[name]).__name__})"
        if name in REQUIRED_FIELDS:
            seen = visible_text(obj[name])
            if not seen:
                return name, "empty after stripping (whitespace and invisible characters only)"
            if not any(ch.isalnum() for ch in seen):
                return name, "no content (no letter or digit, only punctuation or symbols)"
    size = sum(len(obj[n]) for n in TEXT_FIELDS if n in obj)
    if size > max_record_chars:
        return None, f"over-long: {size} characters > max_record_chars={max_record_chars}"
    return None


def read_records(path: str | Path, max_record_chars: int = 20000) -> ReadResult:
    """Read a JSONL file (or a JSON array) of records, validating each one.

    Lines are decoded one by one, so a line with invalid UTF-8 is rejected on its own.
    A record whose normalised question was already accepted is rejected as a duplicate,
    naming the line of the first one.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: data file not found (data.path)")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file (data.path: a JSONL file of records)")
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):  # a UTF-8 byte order mark is not part of line 1
        data = data[len(codecs.BOM_UTF8) :]
    check_file_kind(path, data)
    if path.suffix == ".json" and data.lstrip()[:1] == b"[":
        try:
            items = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a valid JSON array ({err})") from None
        return validate_items(((i + 1, item) for i, item in enumerate(items)), max_record_chars, str(path))
    return validate_items(_jsonl_lines(data), max_record_chars, str(path))


class DataError(UserError):
    """A data file that is not what the pipeline reads (a folder, another encoding, CSV): the
    stage prints one line and exits 1."""


# Encodings a Chinese text file that is not UTF-8 most likely has (GB18030 covers GBK and GB2312).
OTHER_ENCODINGS = ("gb18030", "big5")


def check_file_kind(path: Path, data: bytes) -> None:
    """Raise :class:`DataError` when no line of ``data`` could be a record: the whole file in
    another encoding, or CSV/TSV. A file with some bad lines goes on (each one is rejected
    with its line, field and reason)."""
    lines = [line.rstrip(b"\r") for line in data.split(b"\n") if line.strip()]
    if not lines:
        return
    for bom, name in (
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
        (codecs.BOM_UTF32_LE, "UTF-32"),
    ):
        if data.startswith(bom):
            raise DataError(f"{path}: not UTF-8 (a {name} byte order mark); convert it: {_iconv(path, name)}")
    if all(not _is_utf8(line) for line in lines):
        for encoding in OTHER_ENCODINGS:
            try:
                data.decode(encoding)
            except UnicodeDecodeError:
                continue
            raise DataError(
                f"{path}: not UTF-8 (it decodes as {encoding.upper()}); convert it: {_iconv(path, encoding.upper())}"
            )
        raise DataError(f"{path}: not UTF-8 (no line decodes as UTF-8); data files are UTF-8 JSON Lines")
    text_lines = [line.decode("utf-8", "replace") for line in lines[:50]]
    if any(line.lstrip().startswith(("{", "[")) for line in text_lines):
        return
    try:
        dialect = csv.Sniffer().sniff("\n".join(text_lines[:5]), delimiters=",\t;")
    except csv.Error:
        raise DataError(f"{path}: not JSON Lines (no line starts with '{{'); one JSON record per line") from None
    header = next(csv.reader([text_lines[0]], dialect))
    kind = "TSV" if dialect.delimiter == "\t" else "CSV"
    raise DataError(
        f"{path}: not JSON Lines (it looks like {kind} with columns {header[:8]}); convert it, e.g. "
        f"pandas.read_csv({str(path)!r}{', sep=chr(9)' if kind == 'TSV' else ''})"
        ".to_json('records.jsonl', orient='records', lines=True, force_ascii=False)"
    )


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _iconv(path: Path, encoding: str) -> str:
    return f"iconv -f {encoding} -t UTF-8 {path} > {path.with_suffix('')}.utf8{path.suffix or '.jsonl'}"


def _jsonl_lines(data: bytes) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or a Reject) for each non-blank line."""
    for i, raw in enumerate(data.split(b"\n")):
        raw_bytes = raw.rstrip(b"\r")
        if not raw_bytes.strip():
            continue
        try:
            text = raw_bytes.decode("utf-8")
        except UnicodeDecodeError as err:
            yield i + 1, Reject(i + 1, None, f"invalid UTF-8 at byte {err.start}", raw_bytes.decode("utf-8", "replace"))
            continue
        try:
            yield i + 1, json.loads(text)
        except json.JSONDecodeError as err:
            yield i + 1, Reject(i + 1, None, f"invalid JSON at column {err.colno}: {err.msg}", text)


def validate_items(items: Iterable[tuple[int, Any]], max_record_chars: int, source: str) -> ReadResult:
    """Validate (line, object) pairs: each object is accepted unchanged or rejected with why."""
    accepted: list[dict[str, Any]] = []
    lines: list[int] = []
    rejects: list[Reject] = []
    seen: dict[str, int] = {}
    for lineno, obj in items:
        if isinstance(obj, Reject):
            rejects.append(obj)
            continue
        # As written in the source; a lone surrogate stays an escape, or no UTF-8 file could hold it.
        raw_text = json.dumps(obj, ensure_ascii=lone_surrogate(obj) is not None)
        problem = validate_record(obj, max_record_chars)
        if problem is not None:
            rejects.append(Reject(lineno, problem[0], problem[1], raw_text))
            continue
        key = normalise_question(obj["question"])
        if key in seen:
            rejects.append(Reject(lineno, "question", f"duplicate of line {seen[key]}", raw_text))
            continue
        seen[key] = lineno
        accepted.append(obj)
        lines.append(lineno)
    return ReadResult(accepted, rejects, source, lines)


def load_source(
    source: str, path: str, dataset_id: str | None, dataset_split: str, max_record_chars: int
) -> ReadResult:
    """Records from ``data.source``: a local file, a Hugging Face or a ModelScope dataset id.

    Hub records are validated like file lines; their "line" is the row number in the split.
    """
    if source == "local":
        return read_records(path, max_record_chars)
    if not dataset_id:
        raise ValueError(f"data.source={source} needs data.dataset_id (e.g. krisfu/delicate_medical_r1_data)")
    if source == "huggingface":
        from datasets import load_dataset

        rows = load_dataset(dataset_id, split=dataset_split)
    elif source == "modelscope":
        try:
            from modelscope.msdatasets import MsDataset
        except ImportError as err:
            raise ImportError(
                "data.source=modelscope needs the optional extra 'modelscope': pip install -e '.[modelscope]'"
            ) from err
        rows = MsDataset.load(dataset_id, split=dataset_split)
    else:
        raise ValueError(f"data.source: unknown source {source!r} (local | huggingface | modelscope)")
    return validate_items(
        ((i + 1, dict(row)) for i, row in enumerate(rows)), max_record_chars, f"{source}:{dataset_id}[{dataset_split}]"
    )


def stable_bucket(question: str) -> float:
    """A number in [0, 1) fixed by the normalised question alone."""
    digest = hashlib.sha256(normalise_question(question).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_records(
    records: list[dict[str, Any]], method: str, val_fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split into (train, val).

    ``hash``: a record goes to val when the hash of ``seed`` and its normalised question falls
    below ``val_fraction``, so adding records never moves existing ones. ``seed_shuffle``: the
    original code, ``random.seed(seed)``, shuffle, first ``1 - val_fraction`` to train.
    """
    if method == "hash":
        train, val = [], []
        for rec in records:
            (val if stable_bucket(f"{seed}\x00{rec['question']}") < val_fraction else train).append(rec)
        return train, val
    if method == "seed_shuffle":
        shuffled = list(records)
        random.seed(seed)
        random.shuffle(shuffled)
        cut = int(len(shuffled) * (1 - val_fraction))
        return shuffled[:cut], shuffled[cut:]
    raise ValueError(f"split.method: unknown method {method!r} (hash | seed_shuffle)")


def reject_without_target(
    result: ReadResult, tokenizer, system_prompt: str, target_style: str, max_length: int
) -> ReadResult:
    """Move to the rejects every record whose prompt alone fills ``max_length``: truncation
    would keep none of its target, so it would add nothing to the loss (a batch of them gives
    a NaN loss)."""
    encoded = encode_records(result.accepted, tokenizer, system_prompt, target_style, max_length)
    accepted, lines, rejects = [], [], list(result.rejects)
    for record, line, prompt, kept in zip(
        result.accepted, result.lines, encoded.prompt_tokens, encoded.kept_target_tokens, strict=True
    ):
        if kept > 0:
            accepted.append(record)
            lines.append(line)
        else:
            reason = (
                f"no target token left: the prompt (system prompt + question) is {prompt} tokens, "
                f"model.max_length={max_length}"
            )
            rejects.append(Reject(line, "question", reason, json.dumps(record, ensure_ascii=False)))
    rejects.sort(key=lambda r: r.line)
    return ReadResult(accepted, rejects, result.source, lines)
