"""The ``data`` command: list, inspect and prepare the registered tasks and the pretraining corpus.

    python -m elmlib data list                      # every task: source, pair or single, labels, metrics
    python -m elmlib data show boolq                # rows and label balance per split
    python -m elmlib data prepare --tasks trec      # tokenize and cache (and pack the corpus)
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from elmlib.data.corpus import packed_corpus
from elmlib.data.packaged import make_split_file
from elmlib.data.registry import TASKS
from elmlib.data.tasks import get_task, load_task
from elmlib.data.tokenization import load_tokenizer, tokenize_task


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


def _list() -> None:
    for t in TASKS.values():
        kind = "regression" if t.is_regression else ("extractive QA" if t.num_labels == 0 else f"{t.num_labels} classes")
        print(f"{t.name:22s} {t.source:7s} {'pair' if t.is_pair else 'single':6s} {kind:13s} "
              f"{'+'.join(t.metrics):17s} {t.description}")


def _show(task: str) -> None:
    spec = get_task(task)
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


def _make_splits(force: bool) -> None:
    for name, spec in TASKS.items():
        if spec.source == "offline" and name != "rotten_tomatoes":
            print(make_split_file(name, force=force))


def _prepare(args: argparse.Namespace) -> None:
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
        for split in ("train", "heldout"):
            t0 = time.perf_counter()
            blocks = packed_corpus(tok, args.max_length, split=split)
            print(f"corpus/{split}: {blocks.shape[0]} sequences of {blocks.shape[1]} in {time.perf_counter() - t0:.2f}s")


def main(args: argparse.Namespace) -> int:
    """Run a ``data`` action. Expected errors (unknown task, unreachable hub, missing data package,
    corrupt split file, bad --max-length) raise ValueError or FileNotFoundError with a one-line
    message; ``python -m elmlib`` prints it as ``error: ...`` and exits 2 (--debug: the traceback)."""
    actions = {"list": _list, "show": lambda: _show(args.task), "make-splits": lambda: _make_splits(args.force),
               "prepare": lambda: _prepare(args)}
    if args.action not in actions:
        raise ValueError(f"unknown action {args.action!r}")
    actions[args.action]()
    return 0
