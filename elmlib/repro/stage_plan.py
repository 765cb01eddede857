"""What building a scale's run folders costs before anything runs: every (run folder, stage) the plan of
`elmlib.repro.schedule` computes, copies from the main run or skips, priced in stage-hours from the
stage times recorded in the committed run records (``results/<scale>/run_records/seed<k>/<folder>/
<stage>.done.json``).

    python -m elmlib runs --scale small --seeds 3 --dry-run
    rows = stage_rows(plan("small", seeds=3), "small", records="results/small/run_records", runs="runs")

A stage is priced by the mean of its recorded times in that folder over the recorded seeds, else by the
main run's (a folder without records of its own, e.g. a baseline's retraining); with no record at all
its hours are unknown (NaN) and the total says how many stages that leaves out.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from elmlib.pipeline.preflight import STAGES
from elmlib.repro import experiments as ex
from elmlib.repro.stage_sharing import shares_weights

SEARCH_AND_RETRAIN = STAGES[:5]  # the suite is the table1_2_glue notebook's, not a run folder's
# Stages a job's folder copies from the main run of its seed (stage_sharing.share_stages), or never runs.
COPIED = {"ablation-head_search": STAGES[:3], "search-proxy_assisted": STAGES[:2],
          "importance-elastic-widths": STAGES[:2]}
NOT_RUN = {"search-proxy_only": STAGES[:2]}  # the proxy ranks untrained architectures


def _folders(job, scale: str) -> list[tuple[str, tuple[str, ...]]]:
    """(run folder relative to the seed's folder, its stages) that ``job`` (a `schedule.Job`) builds."""
    if job.name == "baselines":
        cfg = ex.config(scale, job.seed)
        other = "found-scratch" if cfg.inherit_weights else "found-inherited"
        return [(f"main/baselines/{name}", ("retrain",)) for name in [other, *ex.baseline_archs(cfg)]]
    return [(job.name, SEARCH_AND_RETRAIN)]


def recorded_seconds(records: str | Path) -> dict[tuple[str, str], list[float]]:
    """(folder, stage) -> the seconds recorded for it, one per seed that has a record."""
    out: dict[tuple[str, str], list[float]] = {}
    for done in sorted(Path(records).glob("seed*/**/*.done.json")):
        folder = "/".join(done.parent.relative_to(records).parts[1:])  # seed<k>/<folder>/... -> <folder>/...
        stage = done.name.removesuffix(".done.json")
        out.setdefault((folder, stage), []).append(float(json.loads(done.read_text())["seconds"]))
    return out


def _price(costs: dict, folder: str, stage: str) -> tuple[float, str]:
    for key, source in (((folder, stage), "recorded"), (("main", stage), "main run's")):
        if key in costs:
            return sum(costs[key]) / len(costs[key]) / 3600, f"{source} (n={len(costs[key])})"
    return math.nan, "no record"


def _can_copy(main: Path) -> bool:
    """A main run still to be built will hold its weights; a finished one must hold them (a main run
    restored from records does not, and its dependents compute their stages: `stage_sharing.shares_weights`)."""
    return not (main / "finetune.done.json").exists() or shares_weights(main)


def stage_rows(jobs: list, scale: str, records: str | Path | None, runs: str | Path | None = None) -> pd.DataFrame:
    """One row per (job, seed, folder, stage): ``action`` compute, copied (from the main run), not run or
    done (a finished stage under ``runs``), and ``hours`` of computing it (0 unless ``compute``)
    beside ``hours_unshared``, what it would cost if nothing were copied."""
    costs = recorded_seconds(records) if records and Path(records).is_dir() else {}
    rows = []
    for job in jobs:
        for folder, stages in _folders(job, scale):
            for stage in stages:
                hours, source = _price(costs, folder, stage)
                seed_dir = Path(runs or ex.runs_root()) / f"{scale}-seed{job.seed}"
                action = ("not run" if stage in NOT_RUN.get(job.name, ()) else
                          "copied" if stage in COPIED.get(job.name, ()) and _can_copy(seed_dir / "main") else
                          "compute")
                path = seed_dir / folder
                if action == "compute" and (path / f"{stage}.done.json" if stage != "retrain" or
                                            job.name != "baselines" else path / "final_metrics.csv").exists():
                    action = "done"
                rows.append(dict(job=job.name, seed=job.seed, folder=folder, stage=stage, action=action,
                                 hours=hours if action == "compute" else 0.0,
                                 hours_unshared=0.0 if action == "not run" else hours, estimate=source))
    return pd.DataFrame(rows)


def summary(rows: pd.DataFrame, scale: str) -> str:
    """The dry run's closing lines: stage-hours to compute, and what copying stages saves."""
    todo, unshared = rows.hours.sum(), rows.hours_unshared.sum()
    unknown = int((rows.action.eq("compute") & rows.hours.isna()).sum())
    saved = 100 * (1 - todo / unshared) if unshared else math.nan
    lines = [f"{scale}: {len(rows)} stages in {rows[['seed', 'folder']].drop_duplicates().shape[0]} run folders; "
             f"{int(rows.action.eq('compute').sum())} to compute, {int(rows.action.eq('copied').sum())} copied from "
             f"the main run, {int(rows.action.eq('done').sum())} already done",
             f"stage-hours to compute: {todo:.1f} h (one core each, from the recorded stage times); "
             f"{unshared:.1f} h if no stage were copied: copying saves {saved:.0f}%"]
    if unknown:
        lines.append(f"{unknown} stages to compute have no recorded time at this scale and are left out of the sum")
    return "\n".join(lines)


def print_dry_run(jobs: list, scale: str, runs=None) -> None:
    """The ``runs --dry-run`` output: the plan by job, then the stage-hours."""
    rows = stage_rows(jobs, scale, ex.output_dirs(None, scale)[0] / "run_records", runs)
    by_job = rows.groupby(["seed", "job"], sort=False).agg(hours=("hours", "sum"), stages=("stage", "size"),
                                                          copied=("action", lambda a: int((a == "copied").sum())))
    after = {job.key: job.after for job in jobs}
    for (seed, name), r in by_job.iterrows():
        wait = f" after {', '.join(after[(name, seed)])}" if after[(name, seed)] else ""
        print(f"{name} seed {seed}{wait}: {int(r.stages)} stages ({int(r.copied)} copied), {r.hours:.2f} h")
    print(summary(rows, scale))
