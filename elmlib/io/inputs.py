"""Reading the files a user hands to the command line, with one-line errors that name the file.

Every function here raises ``FileNotFoundError`` or ``ValueError`` whose message is one line: the
file, what is wrong with it, and how to fix it. The CLI prints that line (``error: ...``, exit 2).

    from elmlib.io.inputs import read_json, read_results_csv, benchmark_entries
    records = read_json("scores.json", "benchmark file")
    df = read_results_csv("results/fig2_pca_curves.csv")        # refuses empty or truncated CSVs
    entries = benchmark_entries("subset.json", scores=True)      # every record checked
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def one_line(text: Any) -> str:
    """``text`` with its line breaks folded into `` | `` (error messages stay on one line)."""
    return " | ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def read_json(path: str | os.PathLike, what: str = "JSON file", fix: str = "check the path") -> Any:
    """Parse the JSON file ``path``; a missing, non-UTF-8 or malformed file raises an error naming it
    (and, for malformed JSON, the line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist{' (it is a folder)' if path.is_dir() else ''}; {fix}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}); is it the right {what}?") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON at line {err.lineno}: {err.msg}") from err


def provenance_path(csv: str | os.PathLike) -> Path:
    """``<stem>.provenance.json`` beside a results CSV (elmlib.io.files.write_result writes it)."""
    csv = Path(csv)
    return csv.with_name(csv.stem + ".provenance.json")


def read_results_csv(path: str | os.PathLike, fix: str = "re-run the notebook or command that writes it"
                     ) -> "pd.DataFrame":
    """A results CSV as a DataFrame, refusing a file that is empty, unparsable, has no rows, does not end
    in a newline (cut off mid-write), or whose row count differs from ``rows`` in its provenance;
    ``fix`` ends every message."""
    import pandas as pd  # heavy: pandas, only when a results CSV is read

    path = Path(path)
    raw = path.read_bytes() if path.is_file() else None
    if raw is None:
        raise FileNotFoundError(f"results CSV {path} does not exist; {fix}")
    if not raw.strip():
        raise ValueError(f"{path} is empty; {fix}")
    if not raw.endswith(b"\n"):
        raise ValueError(f"{path} does not end with a newline, so it was cut off while being written; {fix}")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable CSV ({one_line(err)}); {fix}") from err
    if not len(df):
        raise ValueError(f"{path} has a header but no rows; {fix}")
    prov = provenance_path(path)
    if prov.exists():
        record = read_json(prov, "provenance file")
        rows = record.get("rows") if isinstance(record, dict) else None
        if rows is not None and rows != len(df):
            raise ValueError(f"{path} has {len(df)} rows but {prov.name} records {rows}: the CSV is truncated "
                             f"or was edited; {fix}")
    return df


#: What a corrupt or malformed results CSV raises while it is read or drawn (pandas' parser errors are
#: ValueErrors; a missing column is a KeyError or AttributeError; a wrong type a TypeError).
CSV_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError, ArithmeticError)


def failure_line(path: Path, err: Exception) -> str:
    """One line naming the CSV that failed and why (messages of elmlib.io.inputs already name it)."""
    message = one_line(err)
    if str(path) in message:
        return message
    return (f"{path} cannot be used ({type(err).__name__}: {message}); check its columns or re-run the "
            "notebook that writes it")


def raise_failures(failed: list[tuple[str, Exception]], what: str) -> None:
    """Raise one ValueError naming every failed CSV (chained to the first error for --debug)."""
    if failed:
        raise ValueError(f"{len(failed)} results CSV(s) could not be {what}: "
                         + "; ".join(m for m, _ in failed)) from failed[0][1]


def _glue_score(record: dict, path: Path, where: str) -> float:
    """The record's ``scores.glue`` as a finite float; anything else is an error naming the record."""
    scores = record.get("scores")
    hint = "add its scores or pass --no-scores to score the architectures only"
    if scores is None:
        raise ValueError(f"{path}: {where} has no 'scores'; {hint}")
    if not isinstance(scores, dict) or "glue" not in scores:
        raise ValueError(f"{path}: {where} has scores without a 'glue' value; {hint}")
    glue = scores["glue"]
    if isinstance(glue, bool) or not isinstance(glue, (int, float)) or not math.isfinite(glue):
        raise ValueError(f"{path}: {where} has scores.glue = {glue!r}; it must be a finite number")
    return float(glue)


def benchmark_entries(path: str | os.PathLike | None, *, scores: bool = True) -> list:
    """The FlexiBERT records of ``path`` (None: the packaged dev file) as ``BenchmarkEntry``s.

    Every record is checked before anything is scored: the file must hold a non-empty JSON list of
    records with unique ids; with ``scores`` each needs a finite ``scores.glue`` (no silent NaN
    correlations), without it any scores are dropped."""
    from dataclasses import replace

    from elmlib.extensions.flexibert import load_benchmark, parse_record

    if path is None:
        entries = load_benchmark(None)
        return entries if scores else [replace(e, scores=None) for e in entries]
    path = Path(path)
    records = read_json(path, "benchmark file", "pass --data an existing JSON file, or omit it for the packaged one")
    if not isinstance(records, list):
        raise ValueError(f"{path}: must hold a JSON list of FlexiBERT records, found a {type(records).__name__}")
    if not records:
        raise ValueError(f"{path}: holds an empty list; give at least one FlexiBERT record")
    entries, seen = [], set()
    for i, record in enumerate(records):
        rid = record.get("id") if isinstance(record, dict) else None
        where = f"record {i}" if rid is None else f"record id={rid!r}"
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (int, str))):
            raise ValueError(f"{path}: {where} (index {i}): id must be an integer or a string")
        if rid in seen:
            raise ValueError(f"{path}: {where} appears twice; ids must be unique")
        seen.add(rid)
        body = {k: v for k, v in record.items() if k != "scores"} if isinstance(record, dict) else record
        try:
            entry = parse_record(body, i)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            message = one_line(err)
            if not isinstance(err, ValueError):  # a wrong type deep in the record: say what shape is expected
                message = (f"malformed architecture ({type(err).__name__}: {message}); records follow "
                           "elmlib/benchmarks/flexibert_dev.json (hparams.model_hparam_overrides)")
            raise ValueError(f"{path}: {message if where in message else f'{where}: {message}'}") from err
        glue = _glue_score(record, path, where) if scores else None
        entries.append(replace(entry, scores={**record["scores"], "glue": glue} if scores else None))
    return entries
