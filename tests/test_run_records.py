"""Run records (elmlib.repro.run_records): a scale's run folders to text files and back, so notebooks
re-render from committed records without retraining."""
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from elmlib.errors import UserError
from elmlib.pipeline.config import resolve_config
from elmlib.repro import experiments as ex
from elmlib.repro.run_records import record_runs, restore_runs
from test_search import TINY


def test_record_delete_restore_gives_the_same_tables_without_retraining(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path / "results"))

    def tiny(scale, seed=0, task="boolq", budget=None, precision=None, **overrides):
        return resolve_config(scale, task, budget, {"seed": seed, **TINY, **overrides})

    monkeypatch.setattr(ex, "config", tiny)
    runs, records = tmp_path / "runs", tmp_path / "records"
    want = ex.baselines("smoke", root=runs)
    written = record_runs(runs, "smoke", records)
    assert written > 10 and (records / "seed0" / "main" / "pretrain.done.json").is_file()
    recorded = [p for p in records.rglob("*") if p.is_file()]
    assert not [p for p in recorded if p.suffix in (".pt", ".safetensors", ".ckpt") or p.name.startswith(".")]
    assert (records / "seed0" / "main" / "baselines" / "all-MobileBERT" / "final_metrics.csv").is_file()
    shutil.rmtree(runs)
    (restored,) = restore_runs(records, runs, "smoke")
    assert restored.startswith(f"{runs / 'smoke-seed0' / 'main'} (differs from today's smoke preset in ")
    assert "pretrain_steps" in restored  # the tests' tiny schedules, named
    got = ex.baselines("smoke", root=runs)  # every stage done: read, not recomputed
    pd.testing.assert_frame_equal(got, want)
    assert not (runs / "smoke-seed0" / "main" / "model").exists()  # the retrain stage did not run again
    assert (runs / "smoke-seed0" / "main" / ".elmlib-run").is_file()  # claimed as a search would


def test_restore_names_settings_that_differ_and_refuses_what_is_not_a_record(tmp_path):
    record = tmp_path / "records" / "seed0" / "main"
    record.mkdir(parents=True)
    cfg = resolve_config("smoke", overrides={"pca_score": "count"})
    (record / "config.json").write_text(json.dumps(cfg.to_dict()))
    (note,) = restore_runs(tmp_path / "records", tmp_path / "runs", "smoke")
    assert "differs from today's smoke preset in pca_score" in note
    with pytest.raises(UserError, match="holds no seed<k> folders"):
        restore_runs(tmp_path / "runs", tmp_path / "elsewhere", "smoke")
    with pytest.raises(UserError, match="holds no micro-seed<k> run folders"):
        record_runs(tmp_path / "runs", "micro", tmp_path / "out")
    bad = tmp_path / "bad" / "seed0" / "main"
    bad.mkdir(parents=True)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="is not a run record"):
        restore_runs(tmp_path / "bad", tmp_path / "runs2", "smoke")


def test_the_runs_command_records_and_restores(tmp_path):
    record = tmp_path / "records" / "seed0" / "main"
    record.mkdir(parents=True)
    (record / "config.json").write_text(json.dumps(resolve_config("smoke").to_dict()))
    (record / "pretrain.done.json").write_text(json.dumps({"stage": "pretrain", "seconds": 1.0}))
    run = [sys.executable, "-m", "elmlib", "runs", "--scale", "smoke", "--run-dir", str(tmp_path / "runs")]
    out = subprocess.run(run + ["--restore", str(tmp_path / "records")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "runs" / "smoke-seed0" / "main" / "pretrain.done.json").is_file()
    out = subprocess.run(run + ["--record", str(tmp_path / "again")], capture_output=True, text=True)
    assert out.returncode == 0 and "2 files recorded" in out.stdout, out.stdout + out.stderr
