"""Executed notebooks fit to commit: what changes on every run is dropped, so a re-execution on unchanged
results leaves git with nothing to commit.

    python -m elmlib executed notebooks/executed/micro/*.ipynb     # rewrite in place (make reproduce does)

Dropped: papermill's and the kernel's timestamps and durations (notebook and cell metadata), the
output path, the random id papermill gives its injected-parameters cell, stderr streams (progress bars
and warnings with their timings); absolute paths inside the
repository become relative in sources, outputs and parameters (``/home/me/elmlib/runs`` -> ``runs``).
Errors, results, tables and figures are kept as they are.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from elmlib.io.files import atomic_write, workspace

_RUN_METADATA = ("start_time", "end_time", "duration", "output_path", "environment_variables")


def _relative(value, root: str):
    """``value`` with every occurrence of ``root/`` (and ``root`` itself) made relative."""
    if isinstance(value, str):
        return value.replace(root + "/", "").replace(root, ".")
    if isinstance(value, list):
        return [_relative(v, root) for v in value]
    if isinstance(value, dict):
        return {k: _relative(v, root) for k, v in value.items()}
    return value


def scrub(notebook: dict, root: str | Path) -> dict:
    """The executed ``notebook`` (nbformat JSON) without per-run timings, stderr streams and machine paths."""
    root = str(Path(root).resolve())
    meta = notebook.get("metadata", {})
    for key in _RUN_METADATA:
        meta.get("papermill", {}).pop(key, None)
    for cell in notebook.get("cells", []):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell["id"] = "injected-parameters"  # papermill draws a new random id on every run
        cell.get("metadata", {}).pop("execution", None)
        cell.get("metadata", {}).pop("papermill", None)
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"] if not (o.get("output_type") == "stream"
                                                                 and o.get("name") == "stderr")]
    return _relative(notebook, root)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="+", help="executed .ipynb files, rewritten in place")
    parser.add_argument("--root", default=None, help="paths under this folder become relative (default: the "
                        "repository, else the working directory)")


def main(args: argparse.Namespace) -> int:
    root = args.root or workspace()
    for name in args.notebooks:
        path = Path(name)
        notebook = scrub(json.loads(path.read_text()), root)
        with atomic_write(path) as f:
            f.write(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return 0
