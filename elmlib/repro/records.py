"""Reading a finished run folder's records (text files only, no weights): the seconds each stage took,
the supernet's mean FFN after growth, the found architecture.

    stage_seconds("runs/smoke-seed0/main")       # {"pretrain": 41.2, ...}
    supernet_mean_ffn("runs/smoke-seed0/main")   # 21.3
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from elmlib.pipeline.preflight import STAGES


def stage_seconds(run_dir: str | os.PathLike) -> dict[str, float]:
    """Seconds each finished stage took (from ``<stage>.done.json``)."""
    out = {}
    for stage in STAGES:
        path = Path(run_dir) / f"{stage}.done.json"
        if path.exists():
            out[stage] = float(json.loads(path.read_text())["seconds"])
    return out


def supernet_mean_ffn(run_dir: str | os.PathLike) -> float:
    """The supernet's mean FFN dimension over all its blocks after pretraining: each block's starting
    size (``pca_scores.csv``, first epoch) plus the steps it grew (``growth.csv``)."""
    scores = pd.read_csv(Path(run_dir) / "pca_scores.csv")
    start = scores[scores.epoch == scores.epoch.min()].set_index(["layer", "block"]).ffn_dim
    try:
        growth = pd.read_csv(Path(run_dir) / "growth.csv")
    except pd.errors.EmptyDataError:  # no growth (dynamic_ffn=false)
        return float(start.mean())
    added = (growth.new_ffn_dim - growth.old_ffn_dim).groupby([growth.layer, growth.block]).sum()
    return float(start.add(added, fill_value=0).mean())


def found_arch(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Fig. 5: the final architecture of a run, one row per layer."""
    data = json.loads((Path(run_dir) / "arch.json").read_text())
    return pd.DataFrame([dict(layer=i, **layer) for i, layer in enumerate(data["layers"])]).assign(params=data["params"])
