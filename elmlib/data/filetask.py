"""Your own data as a task: a CSV, TSV, JSONL or Parquet file becomes a registered ``TaskSpec``.

The file holds ``text``, optional ``text_pair`` and ``label`` columns (other names via the
``text_column``, ``text_pair_column`` and ``label_column`` settings). String, integer or boolean
labels make a classification task (label names kept for the exported ``id2label``); floats make
a regression task. Without ``dev_file``, 20% of the rows, stratified by label, are held out as dev
by a seeded hash of each row's text (``split_seed``); the rest is split 90/10 into train90 and
search as the paper does. The task's name, ``file-<stem>-<digest12>``, hashes the file bytes, the
dev file, the column settings and the seed, so tokenized splits and teachers are cached by content.
The same rules serve any hub dataset read whole (`elmlib.data.hubtask`, via `add_table_task`).

    spec = register("reviews.csv", label_column="stars")     # resolve_task(config) / get_task("reviews.csv")
    load_split(spec, "search")                                # datasets.Dataset, like any task
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import numpy as np

from elmlib.data.registry import DEV_FRACTION, SEARCH_FRACTION, TASKS, TaskSpec
from elmlib.data.rows import dedupe, hash_holdout, row_key, rows_dataset
from elmlib.errors import UserError

SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
READER_VERSION = 1  # bump when the rows read from a file change: renames every file task
IMBALANCE = 1.5  # largest / smallest class count above which MCC is reported (and macro-F1 leads)
FILE_TASKS: dict[str, TaskSpec] = {}  # registered file tasks by name (file-<stem>-<digest12>)
_SPLITS: dict[str, dict] = {}  # name -> {"rows": {split: [row, ...]}, "record": the split's record}
_SEEN: dict[tuple, str] = {}  # (files' path, size, mtime; settings) -> name


def is_file_task(name: str) -> bool:
    """A task name that is a data file path (by its suffix), not a registered task."""
    return name not in TASKS and Path(str(name)).suffix.lower() in SUFFIXES


def read_table(path: str | Path):
    """The file as a pandas DataFrame; a missing or unreadable file is one line naming it."""
    import pandas as pd  # heavy: pandas, needed only to read a data file

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"data file {path}: suffix {suffix or '(none)'!r} is not allowed; expected one of {SUFFIXES}")
    if not path.is_file():
        raise UserError(f"data file {path} does not exist (or is not a file)")
    if suffix == ".parquet":
        if importlib.util.find_spec("pyarrow") is None:
            raise UserError(f"data file {path}: reading Parquet needs pyarrow; run `pip install pyarrow`")
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False, na_values=[""])
    except Exception as err:  # pandas/pyarrow raise many types for a malformed file
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise UserError(f"data file {path} cannot be read as {suffix[1:].upper()} ({type(err).__name__}: "
                        f"{first[:120]})") from None


def _kind(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    try:  # a CSV column mixing words and numbers reads as text: "1" beside "pos" is a mixed column
        float(str(value))
        return "number as text"
    except ValueError:
        return "str"


def label_kind(values, where: str, column: str) -> str:
    """'classification' (str / int / bool labels) or 'regression' (floats); mixed types are an error.
    ``where`` names the source in messages (``data file reviews.csv``, ``hub dataset imdb``)."""
    kinds = {_kind(v) for v in values}
    if kinds == {"float"} or kinds == {"float", "int"}:
        return "regression"
    if len(kinds) == 1:
        return "classification"
    examples = {k: next(v for v in values if _kind(v) == k) for k in sorted(kinds)}
    raise UserError(f"{where}: column {column!r} mixes label types "
                    f"({', '.join(f'{k} e.g. {v!r}' for k, v in examples.items())}); use one type")


def check_columns(df, where: str, text: str, pair: str, label: str, pair_required: bool) -> tuple[str, ...]:
    """The text field(s) of a table (text, and the pair column when required or present); a missing one is an error."""
    wanted = [text, label] + ([pair] if pair_required or pair in df.columns else [])
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise UserError(f"{where}: missing column(s) {missing}; found {list(map(str, df.columns))} "
                        "(name them with --set text_column=... text_pair_column=... label_column=...)")
    return (text, pair) if pair in wanted else (text,)


def read_rows(df, where: str, fields: tuple[str, ...], label: str) -> list[dict]:
    """Rows {key, text, [text_pair], label}; empty cells are an error naming the first such row."""
    for c in (*fields, label):
        empty = df[c].isna() | (df[c].astype(str).str.strip() == "") if c != label else df[c].isna()
        if empty.any():
            raise UserError(f"{where}: column {c!r} is empty in {int(empty.sum())} row(s), first at data "
                            f"row {int(np.flatnonzero(empty.to_numpy())[0]) + 1}; fill or remove them")
    rows = []
    for values in zip(*(df[c] for c in fields), df[label]):
        texts = [str(t).strip() for t in values[:-1]]
        row = dict(key=row_key(*texts), text=texts[0], label=values[-1].item() if hasattr(values[-1], "item") else values[-1])
        if len(texts) == 2:
            row["text_pair"] = texts[1]
        rows.append(row)
    return rows


def _digest(paths, settings: dict) -> str:
    h = hashlib.sha256(json.dumps({"reader": READER_VERSION, **settings}, sort_keys=True).encode())
    for p in paths:
        h.update(Path(p).read_bytes())
        h.update(b"\x1d")
    return h.hexdigest()


def encode_labels(rows: list[dict], dev_rows: list[dict], where: str, column: str) -> tuple[str, tuple[str, ...]]:
    """Label kind and names; class labels become indices 0..k-1 in place (sorted names; ints by value)."""
    kind = label_kind([r["label"] for r in rows + dev_rows], where, column)
    if kind == "regression":
        for r in rows + dev_rows:
            r["label"] = float(r["label"])
        return kind, ()
    values = sorted({r["label"] for r in rows}, key=lambda v: (not isinstance(v, (int, np.integer)), v))
    if len(values) < 2:
        raise UserError(f"{where}: every row has {column}={values[0]!r}; classification needs two "
                        "classes or more")
    unseen = sorted({repr(r["label"]) for r in dev_rows} - {repr(v) for v in values})
    if unseen:
        raise UserError(f"dev rows: label(s) {', '.join(unseen)} do not occur in {where}")
    index = {repr(v): i for i, v in enumerate(values)}
    for r in rows + dev_rows:
        r["label"] = index[repr(r["label"])]
    return kind, tuple(str(v) for v in values)


def _strata(rows: list[dict], kind: str) -> list:
    if kind == "classification":
        return [r["label"] for r in rows]
    y = np.array([r["label"] for r in rows])  # scores: five quantile bins
    edges = np.quantile(y, [0.2, 0.4, 0.6, 0.8]) if len(y) else []
    return np.digitize(y, edges).tolist()


def split_rows(rows: list[dict], dev_rows: list[dict] | None, kind: str, salt: str) -> dict[str, list[dict]]:
    """train / train90 / search / dev: the official dev rows (their texts leave train), or a stratified
    ``DEV_FRACTION`` held out by salted hash; then ``SEARCH_FRACTION`` of train as search."""
    if dev_rows is None:
        is_dev = hash_holdout([r["key"] for r in rows], _strata(rows, kind), DEV_FRACTION, f"{salt}:dev")
        dev_rows = [r for r, d in zip(rows, is_dev) if d]
        rows = [r for r, d in zip(rows, is_dev) if not d]
    else:  # an official dev file: its texts leave the training rows
        dev_keys = {r["key"] for r in dev_rows}
        rows = [r for r in rows if r["key"] not in dev_keys]
    held = hash_holdout([r["key"] for r in rows], _strata(rows, kind), SEARCH_FRACTION, f"{salt}:search")
    return {"train": rows, "train90": [r for r, s in zip(rows, held) if not s],
            "search": [r for r, s in zip(rows, held) if s], "dev": dev_rows}


def _metrics(kind: str, rows: list[dict], num_labels: int) -> tuple[str, ...]:
    if kind == "regression":
        return ("pearson", "spearman")
    counts = np.bincount([r["label"] for r in rows], minlength=num_labels)
    if counts.max() > IMBALANCE * max(counts.min(), 1):  # accuracy flatters a majority-class guess
        return ("macro_f1", "accuracy", "mcc")
    return ("accuracy", "macro_f1")


def register(path: str | Path, dev_file: str = "", text_column: str = "text", text_pair_column: str = "text_pair",
             label_column: str = "label", split_seed: int = 0) -> TaskSpec:
    """Read, check and split a data file; register and return its TaskSpec (named by content)."""
    path = Path(path)
    stamp = _stamp([path] + ([Path(dev_file)] if dev_file else []),
                   (text_column, text_pair_column, label_column, split_seed))
    if stamp in _SEEN:  # same files (size and mtime) and settings: read once per process
        return FILE_TASKS[_SEEN[stamp]]
    df, where = read_table(path), f"data file {path}"
    pair_required = text_pair_column != "text_pair"
    fields = check_columns(df, where, text_column, text_pair_column, label_column, pair_required)
    rows = dedupe(read_rows(df, where, fields, label_column), repr)
    dev_rows = None
    if dev_file:
        dev_df, dev_where = read_table(dev_file), f"data file {dev_file}"
        check_columns(dev_df, dev_where, *fields[:1], text_pair_column, label_column, len(fields) == 2)
        dev_rows = dedupe(read_rows(dev_df, dev_where, fields, label_column), repr)
    kind, names = encode_labels(rows, dev_rows or [], where, label_column)
    settings = dict(columns=[*fields, label_column], split_seed=split_seed, dev=bool(dev_file))
    digest = _digest([path] + ([dev_file] if dev_file else []), settings)
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", path.stem).strip("_")[:40] or "data"
    spec = add_table_task(
        f"file-{stem}-{digest[:12]}", "file", fields, kind, names, (rows, dev_rows), f"{digest[:16]}:{split_seed}",
        f"{path.name}: {kind}" + (f" ({len(names)} classes)" if names else "")
        + (f", dev from {Path(dev_file).name}" if dev_file else ", seeded 20% dev"),
        {"file": str(path), "dev_file": str(dev_file) or None, "sha256": digest, "columns": settings["columns"],
         "split_seed": split_seed})
    if stamp is not None:
        _SEEN[stamp] = spec.name
    return spec


def add_table_task(name: str, source: str, fields: tuple[str, ...], kind: str, names: tuple[str, ...],
                   rows: tuple[list[dict], list[dict] | None], salt: str, description: str, record: dict) -> TaskSpec:
    """Split rows read whole (a data file, or a hub dataset: ``elmlib.data.hubtask``) with `split_rows`
    (``rows`` = (train rows, official dev rows or None)), register the TaskSpec under ``name`` with the
    metrics of `_metrics`, and keep the split's record (``record`` names the source; its digest and
    settings). A name already registered is returned as it is: names are digests of the content."""
    if name not in FILE_TASKS:
        official_dev = rows[1] is not None
        splits = split_rows(rows[0], rows[1], kind, salt)
        num_labels = 1 if kind == "regression" else len(names)
        FILE_TASKS[name] = TaskSpec(name, source, fields, num_labels, _metrics(kind, splits["train"], num_labels),
                                    names, description=description)
        _SPLITS[name] = {"rows": splits, "record": {
            "task": name, **record, "label_kind": kind, "label_names": list(names),
            "metrics": list(FILE_TASKS[name].metrics), "official_dev": official_dev,
            "counts": {s: len(r) for s, r in splits.items()},
            "rule": f"per stratum, rows sorted by sha256('<salt>:<split>:<key>'); "
                    f"{'official dev rows' if official_dev else f'first {DEV_FRACTION:.0%} dev'}, "
                    f"then first {SEARCH_FRACTION:.0%} of train = search",
            "dev": sorted(r["key"] for r in splits["dev"]), "search": sorted(r["key"] for r in splits["search"])}}
    return FILE_TASKS[name]


def _stamp(paths: list[Path], settings: tuple):
    try:
        return tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths) + settings
    except OSError:
        return None


def split_record(name: str) -> dict:
    """What a run folder stores beside its config: the file, its digest, label kind and the split's keys."""
    return _SPLITS[name]["record"]


def load_split(spec: TaskSpec, split: str):
    """A split of a registered file task as a ``datasets.Dataset`` (key, text, [text_pair], label)."""
    return rows_dataset(spec, _SPLITS[spec.name]["rows"][split])
