"""Stage 6 of a search run with a task suite (paper, Tables I/II's protocol): the search ran once on one
task's search split; the retrained found model (pretrained with KD, `elmlib.pipeline.retrain`) is now
fine-tuned with KD from each suite task's own teacher on that task's train90 and scored on its dev
split. The same-budget baselines go through the same recipe (`suite_architecture`), so the suite
average compares architectures, not training.

    python -m elmlib search --scale micro --task boolq --set suite=offline     # stages 1-6
    finetune_suite(run, arch, run.dir, inherit=False, suite="offline")        # -> suite-offline/metrics.csv

Each task's result is kept in ``<folder>/suite-<suite>/<task>/final_metrics.csv`` with its recipe's digest,
so an interrupted suite resumes at the first task without a result. The fine-tuned task models are not
kept (only their metrics): a suite of 5 tasks and 4 models would otherwise hold 20 models per seed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from elmlib.data.registry import SUITES
from elmlib.errors import UserError
from elmlib.io.files import write_result
from elmlib.nas.space import Architecture
from elmlib.pipeline.config import SearchConfig
from elmlib.pipeline.context import RunContext
from elmlib.pipeline.retrain import finetune_and_score, pretrained_model, recipe_digest

SUITE_COLUMNS = ("suite", "search_task")


def suite_folder(folder: str | Path, suite: str) -> Path:
    return Path(folder) / f"suite-{suite}"


def _kept(task_folder: Path, digest: str) -> pd.DataFrame | None:
    """A task's result from an earlier (interrupted) attempt of the same recipe, or None."""
    table, record = task_folder / "final_metrics.csv", task_folder / "final_metrics.provenance.json"
    if not (table.is_file() and record.is_file()):
        return None
    try:
        same = json.loads(record.read_text()).get("recipe_digest") == digest
    except ValueError:
        return None  # a torn record: the task is fine-tuned again
    return pd.read_csv(table) if same else None


def _pretrained(run: RunContext, arch: Architecture, folder: Path, inherit: bool):
    mlm = pretrained_model(run, arch, folder, inherit)
    if mlm is None:
        raise UserError(f"{folder} has no retrained model of this architecture and recipe "
                        "(retrain_pretrained/); run the retrain stage first")
    return mlm


def finetune_suite(run: RunContext, arch: Architecture, folder: str | Path, inherit: bool,
                   suite: str) -> pd.DataFrame:
    """Fine-tune the model retrained into ``folder`` (``folder/retrain_pretrained``) on every task of
    ``suite`` and score each on its dev split; writes and returns ``folder/suite-<suite>/metrics.csv``,
    one row per (task, metric). Every task's head starts fresh (seeded), the search task's too."""
    if suite not in SUITES:
        raise UserError(f"suite={suite!r} is not allowed; expected one of {', '.join(SUITES)}")
    folder = Path(folder)
    frames, mlm, pretrained_state = [], None, None
    for task in SUITES[suite]:
        view = run.for_task(task)
        digest = recipe_digest(view, arch, inherit)
        task_folder = suite_folder(folder, suite) / task
        table = _kept(task_folder, digest)
        if table is None:
            if mlm is None:  # loaded once, and only when some task has no result yet (a run record has none)
                mlm = _pretrained(run, arch, folder, inherit)
                pretrained_state = {k: v.detach().clone() for k, v in mlm.state_dict().items()}
            mlm.load_state_dict(pretrained_state)  # every task starts from the same pretrained weights
            task_folder.mkdir(parents=True, exist_ok=True)
            table = finetune_and_score(view, arch, task_folder, mlm.train(), None, inherit, digest,
                                       keep_model=False)
        frames.append(table.assign(suite=suite, search_task=run.cfg.task))
    out = pd.concat(frames, ignore_index=True)
    write_result(out, suite_folder(folder, suite) / "metrics.csv", config=run.cfg.to_dict(), seed=run.cfg.seed,
                 wall_time_s=sum(run.times.values()))
    return out


def suite_found(ctx: RunContext) -> pd.DataFrame:
    """Stage 6: the found architecture (arch.json), retrained by stage 5, through ``cfg.suite``."""
    inherit = ctx.cfg.inherit_weights and ctx.cfg.search_mode != "proxy_only"
    return finetune_suite(ctx, ctx.read_arch("arch.json"), ctx.dir, inherit, ctx.cfg.suite)


def suite_architecture(cfg: SearchConfig, arch: Architecture, run_dir: str | Path, name: str | None, suite: str,
                       inherit: bool = False, progress: bool = True) -> pd.DataFrame:
    """An architecture retrained by `retrain.retrain_architecture` into ``run_dir/baselines/<name>`` (or,
    with ``name=None``, the run's own found model in ``run_dir``), through ``suite``; tasks whose result
    is there for this recipe are read, not recomputed."""
    run = RunContext(cfg, run_dir, progress=progress)
    try:
        return finetune_suite(run, arch, run.dir if name is None else run.dir / "baselines" / name, inherit, suite)
    finally:
        run.close()
