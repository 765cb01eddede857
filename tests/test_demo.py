"""The `python -m elmlib demo` job: SPOS training on real text, path scoring, export and exact reload."""
import pandas as pd

from elmlib.repro.demo import run


def test_demo_trains_scores_exports_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path / "results"))
    table = run("smoke", seed=0, steps=4, run_dir=str(tmp_path / "demo"))
    assert len(table) == 8 and table.heldout_mlm_loss.between(0, 20).all()
    assert (tmp_path / "demo" / "model" / "model.safetensors").exists()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "demo" / "paths.csv"), table, check_dtype=False)
