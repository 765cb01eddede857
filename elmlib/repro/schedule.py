"""Build every run folder a scale's notebooks read, several at a time, before rendering them.

The notebooks build what they need one run folder after another; at the small widths one process
gains little from a second thread, so several single-thread processes use the cores better (timings:
docs/running.md, "Building run folders in parallel"). This module plans the run folders of
`elmlib.repro.experiments` with their dependencies (a folder that copies the main run's trained stages
waits for it; the task teacher that every folder of a seed shares is trained by the first that needs it
while the others wait on its lock) and runs them in worker processes; the notebooks then render from
the cache.

    python -m elmlib runs --scale micro --task rotten_tomatoes --seeds 3 --jobs 2
    run_jobs(plan("micro", seeds=3), "micro", "rotten_tomatoes", jobs=2)
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

from elmlib.repro import experiments as ex
from elmlib.repro.run_records import record_runs, restore_runs
from elmlib.repro.stage_plan import print_dry_run


@dataclass(frozen=True)
class Job:
    name: str                     # main, ablation-kd, baselines, search-proxy_only, ... (run folders)
    seed: int
    after: tuple[str, ...] = ()   # names of the same seed's jobs that must finish first

    @property
    def key(self) -> tuple[str, int]:
        return self.name, self.seed


# importance-<folder name> -> variant; the first variant is the main run itself.
_IMPORTANCE_JOBS = {"importance-" + v.replace(" + ", "-").replace(" ", "-"): v
                    for v, overrides in ex.IMPORTANCE_VARIANTS.items() if overrides}


def _kinds(scale: str) -> dict[str, tuple[str, ...]]:
    """Job name -> the jobs it waits for."""
    kinds: dict[str, tuple[str, ...]] = {"main": ()}
    for name in ex.ABLATIONS:  # head_search copies the main run's first three stages
        kinds[f"ablation-{name}"] = ("main",) if name in ex._SHARES_FIRST_STAGES else ()
    kinds["baselines"] = ("main",)  # the found architecture retrained from scratch
    kinds["search-proxy_assisted"] = ("main",)  # the main run's trained supernet
    kinds["search-proxy_only"] = ()
    for name, variant in _IMPORTANCE_JOBS.items():  # elastic widths alone copy the main run's supernet
        kinds[name] = () if ex.IMPORTANCE_VARIANTS[variant].get("importance") else ("main",)
    for model, budget in ex.MODELS[scale].items():
        if budget is not None and budget != ex.config(scale).budget:
            kinds[f"budget-{model}"] = ()
    return kinds


def plan(scale: str, seeds: int = 1, first_seed: int = 0, only: list[str] | None = None) -> list[Job]:
    """The jobs for seeds ``first_seed .. first_seed + seeds - 1``; ``only`` keeps those names (and
    what they wait for)."""
    if scale not in ex.MODELS:
        raise ValueError(f"scale={scale!r} is not allowed; expected one of {tuple(ex.MODELS)}")
    if seeds < 1:
        raise ValueError(f"seeds={seeds} is not allowed; expected >= 1")
    kinds = _kinds(scale)
    if only:
        unknown = sorted(set(only) - set(kinds))
        if unknown:
            raise ValueError(f"jobs {unknown} are not allowed at scale={scale!r}; expected some of {sorted(kinds)}")
        kinds = {k: v for k, v in kinds.items() if k in only or any(k in kinds[o] for o in only)}
    return [Job(name, seed, after) for seed in range(first_seed, first_seed + seeds) for name, after in kinds.items()]


def work(job: Job, scale: str, task: str, root=None, threads: int = 1, precision: str | None = None) -> float:
    """Build one job's run folder (in a worker process); returns its wall time in seconds."""
    torch.set_num_threads(threads)
    start, seed = time.time(), job.seed
    name = job.name
    if name == "main":
        ex.main_run(scale, seed, task, root, precision=precision)
    elif name == "baselines":
        ex.baselines(scale, seed, task, root, precision=precision)
    elif name.startswith("ablation-"):
        ex.ablation_run(name.removeprefix("ablation-"), scale, seed, task, root, precision=precision)
    elif name.startswith("search-"):
        ex.search_mode_run(name.removeprefix("search-"), scale, seed, task, root, precision=precision)
    elif name in _IMPORTANCE_JOBS:
        ex.importance_run(_IMPORTANCE_JOBS[name], scale, seed, task, root, precision=precision)
    elif name.startswith("budget-"):
        ex.model_run(name.removeprefix("budget-"), scale, seed, task, root, precision=precision)
    else:
        raise ValueError(f"job {name!r} is unknown")
    return time.time() - start


def execute(jobs: list[Job], run: Callable[[Job], float], pool: cf.Executor, slots: int, log=print) -> dict:
    """Run ``jobs`` on ``pool``, at most ``slots`` at a time, in dependency order; a failed job's
    dependents are skipped, the rest go on. Returns {job key: seconds}; raises at the end if any failed."""
    keys = {j.key for j in jobs}
    missing = [(j.key, a) for j in jobs for a in j.after if (a, j.seed) not in keys]
    if missing:
        raise ValueError(f"jobs wait for jobs not planned: {missing}")
    pending, running, outcome = list(jobs), {}, {}
    while pending or running:
        for job in list(pending):
            deps = [outcome.get((a, job.seed)) for a in job.after]
            if any(isinstance(d, BaseException) for d in deps):
                pending.remove(job)
                outcome[job.key] = RuntimeError(f"skipped: {job.after} did not all finish")
                log(f"skip  {job.name} seed {job.seed} (a job it waits for failed)")
            elif all(isinstance(d, float) for d in deps) and len(running) < slots:
                pending.remove(job)
                running[pool.submit(run, job)] = job
                log(f"start {job.name} seed {job.seed}")
        if not running:
            break
        done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
        for future in done:
            job = running.pop(future)
            try:
                outcome[job.key] = float(future.result())
                log(f"done  {job.name} seed {job.seed} ({outcome[job.key]:.0f} s)")
            except Exception as err:  # reported with the others at the end
                outcome[job.key] = err
                log(f"FAIL  {job.name} seed {job.seed}: {type(err).__name__}: {err}")
    for job in pending:  # unreachable with the check above; never leave a job unaccounted for
        outcome[job.key] = RuntimeError("never became ready")
    failed = {k: v for k, v in outcome.items() if isinstance(v, BaseException)}
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(jobs)} jobs did not finish: " +
                           "; ".join(f"{n} seed {s}: {e}" for (n, s), e in failed.items()))
    return outcome


def run_jobs(jobs: list[Job], scale: str, task: str = "boolq", jobs_at_once: int = 1, threads: int | None = None,
             root=None, log=print, precision: str | None = None) -> dict:
    """Run ``jobs`` in ``jobs_at_once`` worker processes of ``threads`` torch threads each (default: the
    CPU cores shared out), the run folders under ``root`` trained at ``precision`` (as
    `elmlib.repro.experiments.config`). Interrupted runs resume from their checkpoints when called again."""
    if jobs_at_once < 1:
        raise ValueError(f"jobs={jobs_at_once} is not allowed; expected >= 1")
    cores = os.cpu_count() or 1
    fair = max(1, cores // jobs_at_once)
    threads = threads or fair
    if jobs_at_once * threads > cores:  # OpenMP threads spinning on shared cores slow every job (README)
        fix = f"--threads {fair}" if jobs_at_once <= cores else f"--jobs {cores} --threads 1"
        log(f"warning: jobs={jobs_at_once} x threads={threads} exceeds the {cores} CPU cores; "
            f"pass {fix} or fewer (also for any other run on this machine)")
    context = multiprocessing.get_context("spawn")  # no forked torch or CUDA state
    with cf.ProcessPoolExecutor(jobs_at_once, mp_context=context) as pool:
        run = functools.partial(work, scale=scale, task=task, root=root, threads=threads, precision=precision)
        return execute(jobs, run, pool, jobs_at_once, log)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", default="smoke", help=f"one of {tuple(ex.MODELS)}")
    parser.add_argument("--task", default="boolq")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds, from --first-seed")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="run folders built at once (worker processes)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per job (default: cores / jobs)")
    parser.add_argument("--only", default="", help="comma-separated job names (and what they wait for)")
    parser.add_argument("--run-dir", default=None, help="root of the run folders (default: $ELMLIB_RUNS, else runs/)")
    parser.add_argument("--precision", default=None, choices=("fp32", "bf16"),
                        help="training precision of every run folder (default: $ELMLIB_PRECISION, else the scale's)")
    parser.add_argument("--record", default=None, metavar="RECORDS",
                        help="copy the text files of the scale's run folders (no weights) to RECORDS, e.g. "
                        "results/<scale>/run_records, and exit")
    parser.add_argument("--restore", default=None, metavar="RECORDS",
                        help="rebuild the scale's run folders from RECORDS (finished stages stay done) and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and its stage-hours (from the recorded stage times) only")


def main(args: argparse.Namespace) -> int:
    jobs = plan(args.scale, args.seeds, args.first_seed, [o for o in args.only.split(",") if o] or None)
    # The environment is read here, at the command line; the drivers take these as arguments.
    root = args.run_dir or os.environ.get("ELMLIB_RUNS") or None
    if args.record or args.restore:  # elmlib.repro.run_records
        if args.restore:
            print("\n".join(restore_runs(args.restore, root or ex.runs_root(), args.scale)))
        else:
            print(f"{record_runs(root or ex.runs_root(), args.scale, args.record)} files recorded in {args.record}")
        return 0
    if args.dry_run:  # the plan and its stage-hours (elmlib.repro.stage_plan)
        print_dry_run(jobs, args.scale, root)
        return 0
    precision = args.precision or os.environ.get("ELMLIB_PRECISION") or None
    try:
        run_jobs(jobs, args.scale, args.task, args.jobs, args.threads, root, precision=precision)
    except RuntimeError as err:  # a job failed: its own error was printed by the job
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
