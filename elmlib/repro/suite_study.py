"""Tables I/II under the paper's protocol (Section IV, "Training settings"): one search per seed on one
task's search split, then the found model and every same-budget baseline, retrained with one recipe,
fine-tuned on each task of a suite and scored on its dev split (`elmlib.pipeline.suite`).

    rows = suite_baselines("micro", seed=0, task="boolq", suite="offline")   # one row per (model, task, metric)

The run folders are the main runs of `experiments` (their config has no suite: the suite is read only
after retraining, so the same retrained models serve both protocols); each model's suite results live
beside it in ``suite-<suite>/``.
"""
from __future__ import annotations

import dataclasses
import json

import pandas as pd

from elmlib.nas.space import Architecture
from elmlib.pipeline.preflight import check_hub, check_task
from elmlib.pipeline.suite import suite_architecture
from elmlib.repro import experiments as ex


def suite_baselines(scale: str, seed: int = 0, task: str = "boolq", suite: str = "offline", root=None,
                    precision=None) -> pd.DataFrame:
    """The found model (from scratch and with inherited supernet weights, as in `experiments.baselines`)
    and the uniform baselines of the same budget, each fine-tuned on every task of ``suite``. One row per
    (model, task, metric), with the search task in ``search_task``."""
    cfg = ex.config(scale, seed, task, precision=precision)
    suite_cfg = dataclasses.replace(cfg, suite=suite)
    check_task(suite_cfg)  # one line, before any training: the task is a member, each member can be had
    check_hub(suite_cfg)
    ex.baselines(scale, seed, task, root, precision)  # retrains (or reads) every model of Tables I/II
    run = ex.main_run(scale, seed, task, root, precision=precision)
    found = Architecture.from_dict({"layers": json.loads((run / "arch.json").read_text())["layers"]})
    mine, other, other_name = ((ex.INHERITED, ex.SCRATCH, "found-scratch") if cfg.inherit_weights
                               else (ex.SCRATCH, ex.INHERITED, "found-inherited"))
    models = {mine: (found, None, cfg.inherit_weights), other: (found, other_name, not cfg.inherit_weights)}
    models.update({name: (arch, name, False) for name, arch in ex.baseline_archs(cfg).items()})
    frames = [suite_architecture(cfg, arch, run, folder, suite, inherit=inherit, progress=False).assign(model=name)
              for name, (arch, folder, inherit) in models.items()]
    return pd.concat(frames, ignore_index=True)
