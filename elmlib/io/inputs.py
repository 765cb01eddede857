"""Reading the files a user hands to the command line, with one-line errors that name the file.

Every function here raises ``FileNotFoundError`` or ``ValueError`` whose message is one line: the
file, what is wrong with it, and how to fix it. The CLI prints that line (``error: ...``, exit 2).

    from elmlib.io.inputs import read_json, read_results_csv
    records = read_json("scores.json", "benchmark file")
    df = read_results_csv("results/fig2_pca_curves.csv")        # refuses empty or truncated CSVs
"""
from __future__ import annotations

import json
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
