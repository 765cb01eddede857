"""Tasks by name: the registry, data files and the hub behind one interface (paper, "Training settings").

The paper fine-tunes on 90% of each GLUE training set and scores architectures on the other 10%
(MNLI), keeping dev for final reporting. Every task here exposes the same four splits: ``train``,
``train90`` (fine-tuning), ``search`` (the 10% that scores architectures) and ``dev`` (reporting),
whether it is packaged offline (`elmlib.data.packaged`), a data file (`elmlib.data.filetask`), any hub
dataset (``hub:<name>``, `elmlib.data.hubtask`) or GLUE from the hub.

    from elmlib.data.tasks import get_task, load_task, compute_metrics
    ds = load_task("boolq", "train90")          # datasets.Dataset: text, text_pair, label, key
    compute_metrics("boolq", predictions=[1, 0], labels=[1, 1])   # {'accuracy': 0.5}
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from elmlib.data.filetask import FILE_TASKS, is_file_task, load_split, register, split_record
from elmlib.data.hubtask import is_hub_task, register_hub
from elmlib.data.packaged import READER_VERSION, load_packaged, packaged_files
from elmlib.data.registry import DEV_FRACTION, SEARCH_FRACTION, TASKS, TaskSpec, UnknownTask
from elmlib.data.rows import hash_holdout, row_key
from elmlib.data.sources import hub_load
from elmlib.errors import UserError


def get_task(name: str) -> TaskSpec:
    """A registered task, a registered data-file or hub-dataset task (``file-...``, ``hub-...``), a data file
    path or ``hub:<name>`` (default columns; `resolve_task` applies a config's column settings and dev file)."""
    if name in TASKS:
        return TASKS[name]
    if name in FILE_TASKS:
        return FILE_TASKS[name]
    if is_file_task(name):
        return register(name)
    if is_hub_task(name):
        return register_hub(name)
    raise UnknownTask(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")


def source_files(name: str) -> list[Path]:
    """The packaged files an offline task is read from (and its stored split): its cache identity."""
    spec = get_task(name)
    if spec.source != "offline":
        raise ValueError(f"task {name!r} comes from the hub, not from packaged files")
    return packaged_files(name)


def source_hash(name: str) -> str:
    """sha256 over an offline task's source files, split file and reader version (fast: no parsing); a
    data-file (or hub-dataset) task's name already holds the digest of its rows, columns and split seed."""
    if get_task(name).from_table:
        return split_record(get_task(name).name)["sha256"][:16]
    h = hashlib.sha256(f"{name}:reader{READER_VERSION}".encode())
    for path in source_files(name):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _load_hub(spec: TaskSpec, split: str):
    path, config = spec.hub_id
    if split in ("dev", "dev_mismatched"):
        ds = hub_load(path, config, split=spec.dev_splits[0 if split == "dev" else 1],
                      alternative=spec.offline_alternative)
    else:
        ds = hub_load(path, config, split="train", alternative=spec.offline_alternative)
    f = spec.text_fields
    keys = [row_key(*texts) for texts in zip(*(ds[c] for c in f))]
    ds = ds.add_column("key", keys)
    ds = ds.rename_column(f[0], "text")
    if spec.is_pair:
        ds = ds.rename_column(f[1], "text_pair")
    keep = ["key", "text"] + (["text_pair"] if spec.is_pair else []) + ["label"]
    ds = ds.remove_columns([c for c in ds.column_names if c not in keep])
    if split in ("search", "train90"):  # same rule as the stored offline splits, computed on the fly
        strata = [0] * len(ds) if spec.is_regression else ds["label"]
        held = hash_holdout(keys, strata, SEARCH_FRACTION, f"{spec.name}:search")
        ds = ds.select(np.flatnonzero(held if split == "search" else ~held))
    return ds


def load_task(name: str, split: str):
    """Rows of a task split as a ``datasets.Dataset`` with columns key, text, [text_pair], label."""
    spec = get_task(name)
    if spec.num_labels == 0:
        raise ValueError(f"task {name!r} is extractive QA: load it with elmlib.extensions.squad.load_squad")
    if split not in spec.splits:
        raise ValueError(f"split={split!r} is not a split of {name!r}; allowed: {', '.join(spec.splits)}")
    if spec.from_table:
        return load_split(spec, split)
    return load_packaged(spec, split) if spec.source == "offline" else _load_hub(spec, split)


def resolve_task(cfg) -> TaskSpec:
    """The TaskSpec of a config: a registered task by name, or its data file (with the config's columns,
    dev file and split seed) or ``hub:<name>`` dataset (columns, split seed), checked against the rows the
    config's scale needs."""
    columns = (cfg.text_column, cfg.text_pair_column, cfg.label_column)
    if is_file_task(cfg.task):
        spec, what = register(cfg.task, cfg.dev_file, *columns, cfg.split_seed), "data file"
    else:
        if cfg.dev_file:
            raise UserError(f"setting dev_file={cfg.dev_file!r} is only for a data-file task; task={cfg.task!r} "
                            "has its own dev split")
        if not is_hub_task(cfg.task):
            return get_task(cfg.task)
        spec, what = register_hub(cfg.task, *columns, cfg.split_seed), "hub dataset"
    if not spec.from_table:  # hub:nyu-mll/glue/<task>: the registered GLUE task
        return spec
    record = split_record(spec.name)
    counts, need = record["counts"], cfg.eval_batch_size
    # Training batches are whole (shuffled TaskBatches drop the rest), and a fine-tuning epoch of N steps
    # (supernet or retraining) needs N of them: check it here, before any stage runs.
    steps = max(cfg.finetune_steps, cfg.retrain_finetune_steps, 1)
    need_train = steps * cfg.finetune_batch_size
    train = min(counts["train90"], cfg.train_limit or counts["train90"])
    short = [f"{s} {counts[s]}" for s in ("search", "dev") if counts[s] < need]
    if short or train < need_train:
        kept = 1 - (0 if record["official_dev"] else DEV_FRACTION)
        rows = int(np.ceil(max(need / (SEARCH_FRACTION * kept), need_train / ((1 - SEARCH_FRACTION) * kept))))
        raise UserError(f"{what} {cfg.task} has too few rows for the {cfg.scale} scale: "
                        f"{', '.join(short + [f'train90 {train}'])} rows; the search and dev splits must each fill "
                        f"one eval batch ({need} rows) and train90 a fine-tuning epoch ({steps} batches of "
                        f"{cfg.finetune_batch_size}: {need_train} rows); give at least {rows} distinct rows, or lower "
                        "--set eval_batch_size, finetune_steps or retrain_finetune_steps")
    return spec


def compute_metrics(task: str | TaskSpec, predictions, labels) -> dict[str, float]:
    """The task's metrics as GLUE reports them (fractions, not percent). Logits are argmax-ed."""
    from scipy.stats import pearsonr, spearmanr  # heavy: scipy.stats, needed only to score
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef  # heavy: scikit-learn, likewise

    spec = task if isinstance(task, TaskSpec) else get_task(task)
    preds, labels = np.asarray(predictions), np.asarray(labels)
    if preds.ndim == 2:
        preds = preds[:, 0] if spec.is_regression else preds.argmax(-1)
    if preds.shape != labels.shape:
        raise ValueError(f"predictions have shape {preds.shape}, labels {labels.shape}; they must match")
    fns = {
        "accuracy": lambda: accuracy_score(labels, preds),
        "f1": lambda: f1_score(labels, preds),  # positive class 1 (paraphrase / duplicate / spam)
        "matthews": lambda: matthews_corrcoef(labels, preds),
        "macro_f1": lambda: f1_score(labels, preds, average="macro"),  # data-file tasks (elmlib.data.filetask)
        "mcc": lambda: matthews_corrcoef(labels, preds),
        "pearson": lambda: pearsonr(preds, labels)[0],
        "spearman": lambda: spearmanr(preds, labels)[0],
    }
    return {m: float(fns[m]()) for m in spec.metrics}
