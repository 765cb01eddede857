"""`runs --dry-run`: the plan's stages priced in stage-hours from recorded stage times (elmlib.repro.stage_plan)."""
import json
import subprocess
import sys

import pytest

from elmlib.repro.schedule import plan
from elmlib.repro.stage_plan import stage_rows, summary


def _record(root, folder, stage, seconds):
    path = root / "seed0" / folder / f"{stage}.done.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"stage": stage, "seconds": seconds}))


def test_stages_are_priced_from_records_and_copied_stages_cost_nothing(tmp_path):
    records = tmp_path / "records"
    for stage, hours in (("pretrain", 2), ("finetune", 1), ("search", 1), ("heads", 0), ("retrain", 1)):
        _record(records, "main", stage, hours * 3600)
    _record(records, "ablation-kd", "pretrain", 4 * 3600)
    rows = stage_rows(plan("smoke", only=["main", "ablation-kd", "ablation-head_search", "baselines",
                                          "search-proxy_only"]), "smoke", records, tmp_path / "runs")
    hours = rows.groupby("job").hours.sum()
    assert hours["main"] == 5 and hours["ablation-kd"] == 7  # its own pretraining record, the main run's for the rest
    assert hours["ablation-head_search"] == 1  # pretrain, finetune, search copied from the main run; heads 0
    assert hours["search-proxy_only"] == 2  # no supernet training at all
    assert hours["baselines"] == len(rows[rows.job == "baselines"])  # each retraining priced by the main run's
    text = summary(rows, "smoke")
    unshared = rows.hours_unshared.sum()
    assert f"{rows.hours.sum():.1f} h" in text and f"copying saves {100 * (1 - rows.hours.sum() / unshared):.0f}%" in text


def test_a_main_run_restored_without_weights_shares_nothing(tmp_path):
    """A main run restored from its records holds no supernet: the folders that would copy its first stages
    compute them (in the plan and in experiments), and the head-search ablation never copies a file of a
    later stage (retraining logs and checkpoints, heads, the final architecture)."""
    from elmlib.repro import experiments as ex
    from elmlib.repro import stage_sharing as sharing

    main = tmp_path / "runs" / "smoke-seed0" / "main"
    main.mkdir(parents=True)
    for name in ("pretrain.done.json", "finetune.done.json", "search.done.json", "arch_searched.json",
                 "retrain_finetune.ckpt", "retrain_pretrain.log.jsonl", "heads.done.json", "arch.json", "cka.csv",
                 "config.json", "final_metrics.csv", "suite.done.json", "shared_from.json", "growth.csv"):
        (main / name).write_text("{}")
    assert sharing.first_stage_files(main) == ["arch_searched.json", "finetune.done.json", "growth.csv",
                                          "pretrain.done.json", "search.done.json"]
    jobs = plan("smoke", only=["main", "ablation-head_search", "search-proxy_assisted"])
    restored = stage_rows(jobs, "smoke", None, tmp_path / "runs")
    assert "copied" not in set(restored.action)
    folder = tmp_path / "runs" / "smoke-seed0" / "ablation-head_search"
    sharing.share_stages(ex.config("smoke"), main, folder, sharing.first_stage_files(main), ("pretrain",))
    assert not folder.exists()  # nothing claimed, nothing copied: the ablation computes its own stages
    (main / "supernet_finetune.pt").write_bytes(b"weights")
    assert set(stage_rows(jobs, "smoke", None, tmp_path / "runs").action) >= {"copied"}


def test_finished_stages_are_not_counted_and_unrecorded_ones_are_named(tmp_path):
    done = tmp_path / "runs" / "smoke-seed0" / "main"
    done.mkdir(parents=True)
    (done / "pretrain.done.json").write_text(json.dumps({"stage": "pretrain", "seconds": 1.0}))
    rows = stage_rows(plan("smoke", only=["main"]), "smoke", tmp_path / "no-records", tmp_path / "runs")
    assert rows.set_index("stage").action["pretrain"] == "done"
    assert "4 stages to compute have no recorded time" in summary(rows, "smoke")


def test_the_dry_run_command_prints_the_small_reproduction_in_stage_hours(tmp_path):
    out = subprocess.run([sys.executable, "-m", "elmlib", "runs", "--scale", "small", "--seeds", "3", "--dry-run",
                          "--run-dir", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "main seed 2: 5 stages (0 copied)" in out.stdout
    assert "stage-hours to compute:" in out.stdout and "copying saves" in out.stdout
    assert not list(tmp_path.iterdir())  # a dry run writes nothing
