"""Tables I/II's protocol: one search, then the found model and the baselines fine-tuned on every task of a
suite (stage ``suite``), with the per-task and average table beside the paper's Table II."""
import dataclasses
import json
import subprocess
import sys

import pandas as pd
import pytest

from elmlib.data.registry import SUITES
from elmlib.errors import UserError
from elmlib.nas.space import Architecture
from elmlib.pipeline.config import resolve_config, task_config
from elmlib.pipeline.preflight import STAGES, active_stages, check_hub, check_task
from elmlib.pipeline.run import run_search
from elmlib.pipeline.suite import suite_architecture
from elmlib.repro import report
from elmlib.repro.figures.glue import plot_suite, suite_table
from test_search import TINY


@pytest.fixture(autouse=True)
def _results_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path / "results"))


def test_the_paper_preset_searches_mnli_and_reports_the_glue_suite(monkeypatch):
    cfg = resolve_config("paper")
    assert (cfg.task, cfg.suite, cfg.teacher, cfg.corpus) == ("mnli", "glue", "bert-base-uncased",
                                                             "wikipedia+bookcorpus")
    assert SUITES["glue"] == ("qnli", "mrpc", "sst2", "cola", "stsb", "mnli", "rte", "qqp")  # Table II's columns
    assert task_config(cfg, "cola").retrain_finetune_epochs == 50  # Appendix A: CoLA 50 epochs
    assert task_config(task_config(cfg, "cola"), "rte").retrain_finetune_epochs == 10
    assert resolve_config("smoke").suite == "" and active_stages(resolve_config("smoke")) == STAGES[:5]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        check_hub(cfg)
    line = str(err.value)
    assert "\n" not in line and "task='mnli' (nyu-mll/glue)" in line and "suite='glue' (tasks qnli, mrpc" in line
    assert "--set suite=offline" in line and "teacher='bert-base-uncased'" in line


def test_the_search_task_must_be_a_suite_member():
    with pytest.raises(UserError, match=r"task='boolq' is not allowed with suite='glue'; expected .* qnli, mrpc"):
        check_task(resolve_config("smoke", "boolq", overrides={"suite": "glue"}))
    with pytest.raises(UserError, match="suite='squad' is not allowed"):
        resolve_config("smoke", overrides={"suite": "squad"})


def test_the_offline_cli_error_is_one_line_and_writes_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "elmlib", "search", "--scale", "paper", "--run-dir",
                          str(tmp_path / "run")], capture_output=True, text=True,
                         env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--set suite=offline" in out.stderr
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("ELMLIB_RESULTS", str(tmp_path_factory.mktemp("results")))
    run_dir = tmp_path_factory.mktemp("suite")
    cfg = resolve_config("smoke", "rotten_tomatoes", overrides={**TINY, "suite": "offline"})
    run_search(cfg, run_dir, progress=False)
    mp.undo()
    return cfg, run_dir


def test_the_suite_stage_scores_every_task_with_its_own_metrics(suite_run):
    cfg, run_dir = suite_run
    table = pd.read_csv(run_dir / "suite-offline" / "metrics.csv")
    assert list(dict.fromkeys(table.task)) == list(SUITES["offline"])
    assert set(table[table.task == "sms_spam"].metric) == {"f1", "accuracy"}
    assert (table.search_task == "rotten_tomatoes").all() and (table.suite == "offline").all()
    assert table.value.between(0, 1).all() and (table.n_dev == 32).all()
    assert (run_dir / "suite.done.json").exists()
    # The search task's own retraining (stage 5) is a separate, kept model; the suite keeps metrics only.
    assert (run_dir / "model" / "model.safetensors").exists()
    assert not list((run_dir / "suite-offline").rglob("*.safetensors"))


def test_an_interrupted_suite_resumes_at_the_first_missing_task(suite_run, tmp_path):
    cfg, run_dir = suite_run
    want = pd.read_csv(run_dir / "suite-offline" / "metrics.csv")
    (run_dir / "suite.done.json").unlink()
    (run_dir / "suite-offline" / "metrics.csv").unlink()
    trec = run_dir / "suite-offline" / "trec" / "final_metrics.csv"
    kept = {t: (run_dir / "suite-offline" / t / "final_metrics.csv").stat().st_mtime_ns
            for t in SUITES["offline"] if t != "trec"}
    trec.unlink()
    run_search(cfg, run_dir, progress=False)
    got = pd.read_csv(run_dir / "suite-offline" / "metrics.csv")
    cols = [c for c in want.columns if c != "latency_ms"]
    pd.testing.assert_frame_equal(got[cols], want[cols])  # same seeds, same recipe: the same scores
    assert trec.exists() and all((run_dir / "suite-offline" / t / "final_metrics.csv").stat().st_mtime_ns == m
                                 for t, m in kept.items())


def test_baselines_go_through_the_same_suite_and_the_table_averages_headline_metrics(suite_run):
    from elmlib.pipeline.retrain import retrain_architecture

    cfg, run_dir = suite_run
    plain = resolve_config("smoke", "rotten_tomatoes", overrides=TINY)
    assert dataclasses.replace(cfg, suite="").digest() == plain.digest()  # one retrained model serves both
    arch = Architecture.uniform(4, "mobilebert", "none", 32, 4)
    retrain_architecture(cfg, arch, run_dir, "all-MobileBERT", progress=False)
    with pytest.raises(UserError, match="no retrained model"):
        suite_architecture(cfg, Architecture.uniform(4, "bert", "qv", 16, 4), run_dir, "all-MobileBERT", "offline")
    found = Architecture.from_dict({"layers": json.loads((run_dir / "arch.json").read_text())["layers"]})
    rows = pd.concat([suite_architecture(cfg, found, run_dir, None, "offline", progress=False).assign(model="ELM (found, from scratch)"),
                      suite_architecture(cfg, arch, run_dir, "all-MobileBERT", "offline", progress=False).assign(model="all-MobileBERT")])
    rows = rows.assign(scale="smoke")
    pd.testing.assert_frame_equal(rows[rows.model.str.startswith("ELM")].drop(columns=["model", "latency_ms"]),
                                  pd.read_csv(run_dir / "suite-offline" / "metrics.csv").assign(scale="smoke").drop(columns="latency_ms"),
                                  check_dtype=False)
    df = suite_table(rows, "smoke")
    assert list(dict.fromkeys(df.task)) == list(SUITES["offline"]) + ["AVG"]  # Table II's order: tasks, then AVG
    avg = df[df.task == "AVG"].set_index("model")
    heads = {"boolq": "accuracy", "rotten_tomatoes": "accuracy", "trec": "accuracy", "sms_spam": "f1",
             "crowdflower": "accuracy"}
    for model, g in rows.groupby("model"):
        want = 100 * sum(g[(g.task == t) & (g.metric == m)].value.iloc[0] for t, m in heads.items()) / 5
        assert avg.loc[model, "value"] == pytest.approx(want) and avg.loc[model, "n_tasks"] == 5
    assert avg.loc["ELM (found, from scratch)", "paper_value"] == 75.0  # ELM-Micro's GLUE dev average
    assert "other tasks" in avg.loc["ELM (found, from scratch)", "paper_metric"]
    assert df[df.model == "all-MobileBERT"].paper_value.isna().all()
    assert len(plot_suite(df).axes) == 1
    df.to_csv(run_dir / "table1_2_suite.csv", index=False)
    text = report.report(run_dir)  # the report's suite table: every task in Table II's order, then the average
    header = next(line for line in text.splitlines() if line.startswith("| model | boolq"))
    assert header.endswith("| crowdflower (accuracy) | average |") and "sms_spam (f1)" in header
    mean = df[(df.task == "AVG") & (df.model == "all-MobileBERT")].value.iloc[0]
    assert "| all-MobileBERT | " in text and f"{mean:.1f} (n=1) |" in text


def test_the_ledger_judges_tables_1_2_by_the_suite_average_when_there_is_one(tmp_path):
    from elmlib.repro import ledger as L

    rows = []
    for seed, gap in zip(range(3), (2.0, 3.0, 4.0)):  # the found model 2-4 points above the baseline
        for model, value in ((L.FOUND, 70 + gap), ("all-BERT", 70.0)):
            rows.append(dict(scale="micro", seed=seed, model=model, suite="offline", search_task="boolq", task="AVG",
                             metric="mean", value=value, n_tasks=5))
    pd.DataFrame(rows).to_csv(tmp_path / "table1_2_suite.csv", index=False)
    (row,) = L.claim_table1_2(tmp_path, "micro")
    assert row.claim == "Tables I/II: found beats same-size hand-designed (suite average; vs all-BERT)"
    assert row.n == 3 and row.effect == pytest.approx(3.0) and row.verdict == "reproduced"
    assert "suite offline (average of 5 tasks dev, points; search on boolq)" in row.ours
