"""The run-folder scheduler: its plan matches experiments' folders and dependencies, failures skip
only what depends on them, and a real job runs in a spawned worker process."""
import argparse
import concurrent.futures as cf
import threading

import pytest

from elmlib.repro import experiments as ex
from elmlib.repro import schedule


def test_plan_waits_for_the_main_run_where_stages_are_copied():
    jobs = {j.name: j for j in schedule.plan("micro")}
    assert all(j.after in ((), ("main",)) for j in jobs.values())
    waits_for_main = {n for n, j in jobs.items() if "main" in j.after}
    assert waits_for_main == {"ablation-head_search", "baselines", "search-proxy_assisted", "importance-elastic-widths"}
    assert not any(n.startswith("budget-") for n in jobs)  # micro has one model: the main run
    small = {j.name for j in schedule.plan("small")}
    assert {"budget-ELM-Tiny", "budget-ELM-Micro"} <= small and "budget-ELM-Small" not in small  # Small = main
    three = schedule.plan("smoke", seeds=3, first_seed=2)
    assert sorted({j.seed for j in three}) == [2, 3, 4] and len(three) == 3 * len(jobs)


def test_plan_only_keeps_what_the_named_jobs_wait_for():
    assert [j.name for j in schedule.plan("smoke", only=["search-proxy_assisted"])] == \
        ["main", "search-proxy_assisted"]
    assert [j.name for j in schedule.plan("smoke", only=["ablation-kd"])] == ["ablation-kd"]
    with pytest.raises(ValueError, match=r"jobs \['nope'\] are not allowed at scale='smoke'"):
        schedule.plan("smoke", only=["nope"])
    with pytest.raises(ValueError, match="scale='huge' is not allowed"):
        schedule.plan("huge")
    with pytest.raises(ValueError, match="seeds=0 is not allowed"):
        schedule.plan("smoke", seeds=0)


def test_every_job_builds_the_folder_its_name_says(monkeypatch, tmp_path):
    calls = []
    for fn in ("main_run", "baselines", "ablation_run", "search_mode_run", "importance_run", "model_run"):
        monkeypatch.setattr(ex, fn, lambda *a, _fn=fn, **k: calls.append((_fn, a)))
    for job in schedule.plan("small", first_seed=1):
        schedule.work(job, "small", "rotten_tomatoes", tmp_path)
    assert ("main_run", ("small", 1, "rotten_tomatoes", tmp_path)) in calls
    assert ("ablation_run", ("kd", "small", 1, "rotten_tomatoes", tmp_path)) in calls
    assert ("search_mode_run", ("proxy_only", "small", 1, "rotten_tomatoes", tmp_path)) in calls
    assert ("importance_run", ("elastic widths + importance", "small", 1, "rotten_tomatoes", tmp_path)) in calls
    assert ("model_run", ("ELM-Tiny", "small", 1, "rotten_tomatoes", tmp_path)) in calls
    assert len(calls) == len(schedule.plan("small"))
    with pytest.raises(ValueError, match="job 'nope' is unknown"):
        schedule.work(schedule.Job("nope", 0), "small", "boolq")


def test_execute_runs_independent_jobs_at_once_and_skips_only_dependents_of_a_failure():
    jobs = schedule.plan("smoke", only=["main", "ablation-kd", "baselines", "search-proxy_only"])
    both = threading.Barrier(2, timeout=10)  # passes only if two jobs run at the same time
    ran, running, most = [], [], []

    def run(job):
        ran.append(job.name)
        running.append(job.name)
        most.append(len(running))
        if job.name in ("ablation-kd", "search-proxy_only"):
            both.wait()
        running.remove(job.name)
        if job.name == "main":
            raise OSError("disk full")
        return 1.0

    lines = []
    with cf.ThreadPoolExecutor(4) as pool, pytest.raises(RuntimeError, match="2 of 4 jobs did not finish") as err:
        schedule.execute(jobs, run, pool, 2, log=lines.append)
    assert "main seed 0: disk full" in str(err.value) and "baselines seed 0: skipped" in str(err.value)
    assert max(most) == 2  # never more than the 2 slots, though the pool has 4 threads
    assert "baselines" not in ran
    assert {"ablation-kd", "search-proxy_only"} <= set(ran)
    assert any(line.startswith("skip  baselines") for line in lines)


def test_a_real_job_runs_in_a_spawned_worker(tmp_path):
    """Pickling, spawn and the dispatch as the CLI uses them: the proxy-only search at smoke, end to end."""
    out = schedule.run_jobs(schedule.plan("smoke", only=["search-proxy_only"]), "smoke", "boolq", 1, 1, tmp_path,
                            log=lambda line: None)
    assert set(out) == {("search-proxy_only", 0)}
    assert (tmp_path / "smoke-seed0" / "search-proxy_only" / "final_metrics.csv").exists()
    args = argparse.Namespace(scale="smoke", seeds=1, first_seed=0, only="x", dry_run=True)
    with pytest.raises(ValueError, match=r"jobs \['x'\] are not allowed"):  # the CLI prints it as one line, exit 2
        schedule.main(args)


def test_more_threads_than_cores_is_warned(monkeypatch):
    """Two jobs of two threads on two cores ran at ~8 s/step each against ~5 at one thread each (README)."""
    monkeypatch.setattr(schedule.os, "cpu_count", lambda: 2)
    lines = []
    assert schedule.run_jobs([], "smoke", "boolq", 2, 2, log=lines.append) == {}
    assert len(lines) == 1 and "jobs=2 x threads=2 exceeds the 2 CPU cores" in lines[0] and "--threads 1" in lines[0]
    lines.clear()
    schedule.run_jobs([], "smoke", "boolq", 2, None, log=lines.append)  # the default shares the cores out
    schedule.run_jobs([], "smoke", "boolq", 1, 2, log=lines.append)
    assert lines == []
    schedule.run_jobs([], "smoke", "boolq", 3, None, log=lines.append)  # more jobs than cores: fewer jobs
    assert len(lines) == 1 and "pass --jobs 2 --threads 1" in lines[0]
