"""notebooks/search_your_data.ipynb and its helpers (elmlib.repro.own_data): a user's data file searched,
exported and classified through ``transformers.pipeline``."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from elmlib.repro import own_data

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "search_your_data.ipynb"


def test_demo_file_holds_real_packaged_reviews_with_word_labels(tmp_path):
    path = own_data.demo_file(tmp_path / "reviews.csv", every=50)
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["text", "label"] and set(frame.label) == {"negative", "positive"}
    assert len(frame) > 150 and frame.text.str.len().min() > 5 and frame.text.is_unique


def test_stored_notebook_is_clean_with_one_parameters_cell():
    nb = json.loads(NOTEBOOK.read_text())
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and nb["metadata"]["kernelspec"]["name"] == "elmlib"
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in nb["cells"] if c["cell_type"] == "code")


@pytest.mark.notebooks
def test_notebook_searches_exports_and_classifies_at_smoke(tmp_path):
    pm = pytest.importorskip("papermill")
    kernel = "elmlib" if "elmlib" in subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list"],
                                                    capture_output=True, text=True).stdout else "python3"
    work = tmp_path / "work"
    work.mkdir()
    env = {"ELMLIB_RESULTS": str(tmp_path / "stray-results"), "ELMLIB_RUNS": str(tmp_path / "stray-runs")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "executed.ipynb"), kernel_name=kernel, cwd=str(work),
                            parameters=dict(scale="smoke", run_dir=str(work / "run"), out_dir=str(tmp_path / "out")),
                            progress_bar=False)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    run = work / "run"
    assert sorted(p.name for p in work.iterdir()) == ["own-data-demo-smoke.csv", "run"]  # nothing else written
    assert (run / "final_metrics.csv").exists() and len(pd.read_csv(run / "pareto_front.csv")) >= 1
    config = json.loads((run / "export" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    card = (run / "export" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers") and "blocks.py" in card  # the model card
    for ext in ("png", "pdf"):
        assert (tmp_path / "out" / "figures" / f"search_your_data.{ext}").stat().st_size > 1000
    executed = json.loads((tmp_path / "executed.ipynb").read_text())
    shown = ["".join(o["data"]["text/plain"]) for o in executed["cells"][-1]["outputs"] if "data" in o]
    assert shown and "predicted" in shown[-1] and "probability" in shown[-1]
