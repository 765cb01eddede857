"""Row identity and deterministic hold-outs: how every task's splits are drawn (paper, "Training settings").

A row is known by a hash of its text, and a hold-out takes, per stratum, the rows whose salted hash
sorts first: no RNG and no library version enters, so a split is the same on every machine.

    keys = [row_key(text) for text in texts]
    held = hash_holdout(keys, labels, 0.10, "boolq:search")     # boolean mask, 10% per label
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import numpy as np

from elmlib.data.registry import TaskSpec

KEY_CHARS = 12  # hex digits of sha256 kept per row key (48 bits: no collisions at these sizes)


def row_key(text: str, text_pair: str | None = None) -> str:
    """A row's identity: a hash of its text, so splits survive reordering, versions and machines."""
    raw = text if text_pair is None else text + "\x1f" + text_pair
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:KEY_CHARS]


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


def dedupe(rows: list[dict], label_identity: Callable[[Any], Any] = lambda label: label) -> list[dict]:
    """One row per key (text or text pair), the first; keys whose copies disagree on the label are
    dropped (no honest label exists). ``label_identity`` says when labels agree: data files compare
    ``repr`` (so ``1`` and ``True`` differ), packaged tasks the values."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["key"], []).append(r)
    return [g[0] for g in groups.values() if len({label_identity(r["label"]) for r in g}) == 1]


def rows_dataset(spec: TaskSpec, rows: list[dict]):
    """Rows (key, text, [text_pair], label) as a ``datasets.Dataset`` with the task's label feature."""
    import datasets  # heavy: datasets (pyarrow), loaded when rows are first materialised

    columns: dict[str, list] = {"key": [r["key"] for r in rows], "text": [r["text"] for r in rows]}
    if spec.is_pair:
        columns["text_pair"] = [r["text_pair"] for r in rows]
    columns["label"] = [r["label"] for r in rows]
    features = datasets.Features({
        **{c: datasets.Value("string") for c in columns if c != "label"},
        "label": datasets.Value("float32") if spec.is_regression else datasets.ClassLabel(names=list(spec.label_names)),
    })
    return datasets.Dataset.from_dict(columns, features=features)
