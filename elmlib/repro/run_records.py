"""Run records: the text files of a scale's run folders (no weights), committed beside its results, and
run folders restored from them, so a fresh clone re-renders the scale's notebooks without retraining.

    python -m elmlib runs --scale micro --record results/micro/run_records    # runs/micro-seed*/ -> records
    python -m elmlib runs --scale micro --restore results/micro/run_records   # records -> runs/micro-seed*/

A record keeps every ``.json``, ``.jsonl``, ``.csv``, ``.md`` and ``.txt`` file of a run folder, nested
folders included (baselines, suite results), and leaves out weights, checkpoints, exported models and
the marker and lock files. Restoring claims each top-level run folder as a search would (marker and
lock, `pipeline.runfolder`), then copies the record's files in: every finished stage keeps its
``<stage>.done.json``, so the notebooks read the recorded outputs and compute nothing. A record made
with other settings than today's is restored, but the notebooks will not read it (their config
differs); restoring names, for each folder, the settings in which it differs from today's preset of its
scale (an ablation's own setting among them).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from elmlib.errors import UserError
from elmlib.pipeline.config import SearchConfig, resolve_config
from elmlib.pipeline.runfolder import claim_run_folder

TEXT_SUFFIXES = (".json", ".jsonl", ".csv", ".md", ".txt")
NO_RECORD = ("model", "retrain_pretrained")  # exported and pretrained models: weights and their tokenizers


def _text_files(folder: Path):
    """The record-worthy files under ``folder``, relative to it."""
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if (path.is_file() and path.suffix in TEXT_SUFFIXES and not any(p.startswith(".") for p in rel.parts)
                and not any(p in NO_RECORD or p.startswith(".tmp") for p in rel.parts[:-1])):
            yield rel


def _seed_folders(root: Path, prefix: str):
    """(seed folder name, path) of ``root``'s ``<prefix><k>`` folders."""
    return [(p.name, p) for p in sorted(root.glob(f"{prefix}*")) if p.is_dir() and p.name[len(prefix):].isdigit()]


def record_runs(runs: str | Path, scale: str, records: str | Path) -> int:
    """Copy the text files of every run folder under ``runs/<scale>-seed<k>/`` to ``records/seed<k>/``;
    returns the number of files written."""
    runs, records, count = Path(runs), Path(records), 0
    seeds = _seed_folders(runs, f"{scale}-seed")
    if not seeds:
        raise UserError(f"--record: {runs} holds no {scale}-seed<k> run folders; expected the --run-dir the runs used")
    for name, seed_dir in seeds:
        for rel in _text_files(seed_dir):
            target = records / name.removeprefix(f"{scale}-") / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(seed_dir / rel, target)
            count += 1
    return count


def _restore_folder(record: Path, folder: Path) -> str | None:
    """Claim ``folder`` for the record's config and copy the record in; a note naming the settings in
    which the record differs from today's preset of its scale, else None."""
    try:
        saved = json.loads((record / "config.json").read_text())
        cfg = SearchConfig.from_dict(saved)
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"--restore: {record} is not a run record ({err}); expected a folder with config.json") from None
    held = claim_run_folder(folder, cfg.to_dict(), cfg.digest())
    try:
        for rel in _text_files(record):
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(record / rel, folder / rel)
    finally:
        held.release()
    preset = resolve_config(cfg.scale, cfg.task, overrides={"seed": cfg.seed}).to_dict()
    differ = sorted(k for k in set(preset) | set(cfg.to_dict()) if preset.get(k) != cfg.to_dict().get(k))
    return f"differs from today's {cfg.scale} preset in {', '.join(differ)}" if differ else None


def restore_runs(records: str | Path, runs: str | Path, scale: str) -> list[str]:
    """Rebuild ``runs/<scale>-seed<k>/<folder>`` from every ``records/seed<k>/<folder>`` holding a
    config.json; returns the restored folders, with a note for each made under older defaults."""
    records, runs, done = Path(records), Path(runs), []
    seeds = _seed_folders(records, "seed")
    if not seeds:
        raise UserError(f"--restore: {records} holds no seed<k> folders; expected results/<scale>/run_records")
    for name, seed_dir in seeds:
        for record in sorted(p for p in seed_dir.iterdir() if (p / "config.json").is_file()):
            folder = runs / f"{scale}-{name}" / record.name
            note = _restore_folder(record, folder)
            done.append(f"{folder}" + (f" ({note})" if note else ""))
    return done
