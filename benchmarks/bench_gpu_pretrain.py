"""Supernet pretraining speed on a GPU, measured on the real pipeline (``python -m elmlib search``).

    python benchmarks/bench_gpu_pretrain.py run --label fp32_a --json /tmp/x.json -- \\
        search --scale paper --stages pretrain --run-dir /tmp/runs/fp32_a --no-progress \\
        --set pretrain_epochs=1 --set pretrain_steps=100 --set precision=fp32
    python benchmarks/bench_gpu_pretrain.py summarize --out OUT_DIR /tmp/x.json /tmp/y.json ...

``run`` calls elmlib's own command line in this process (same code path as ``python -m elmlib``) and
only observes it: it wraps the step function that ``TrainLoop.run`` receives to record the wall-clock
time at which each step starts, and ``torch.cuda.max_memory_allocated()`` after each step. It writes
(also every 10 steps and on SIGTERM, so a run stopped by ``timeout`` still leaves its numbers):

- steps/s and tokens/s from the mean period between step starts after ``--warmup`` steps (this period
  covers everything the loop does per step: batch masking on the CPU, teacher forward, supernet path
  forward/backward with relational KD + MLM, AdamW; the optimizer's kernels finish in the next step,
  whose loss read synchronises); tokens = pretrain_batch_size x max_length per step (packed rows, no
  padding);
- the step log's ``seconds`` (pretrain.log.jsonl: step function + optimizer launch, no data) median/mean;
- peak GPU memory: max_memory_allocated after the training steps and at the end of the stage (PCA,
  growth, block similarity), and max_memory_reserved;
- each step's logged losses (for the determinism comparison), stage wall time (pretrain.done.json).

``summarize`` writes OUT/pretrain.json (all runs, steps included) and OUT/summary.md (a table, the
determinism verdict between runs with equal settings: whether their logged losses are bit-identical).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path


def _arg(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def run(label: str, out: Path, warmup: int, argv: list[str]) -> int:
    t_start = time.time()
    import torch

    from elmlib.train import training
    from elmlib.__main__ import main as elmlib_main

    cuda = torch.cuda.is_available()
    starts: list[float] = []
    peak_after_step: list[int] = []
    state = {"rc": None, "error": None}
    run_dir = Path(_arg(argv, "--run-dir") or ".")

    def stats() -> dict:
        from elmlib.pipeline.config import parse_sets, resolve_config

        sets = parse_sets([argv[i + 1] for i, a in enumerate(argv) if a == "--set"])
        cfg = resolve_config(_arg(argv, "--scale") or "smoke", _arg(argv, "--task"), _arg(argv, "--budget"), sets)
        tokens = cfg.pretrain_batch_size * cfg.max_length
        log = run_dir / "pretrain.log.jsonl"
        rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.exists() else []
        periods = [b - a for a, b in zip(starts, starts[1:])][warmup:]
        secs = [r["seconds"] for r in rows[warmup:]]
        done = run_dir / "pretrain.done.json"
        result = {
            "label": label, "argv": argv, "rc": state["rc"], "error": state["error"],
            "precision": cfg.precision, "space": cfg.space, "batch_size": cfg.pretrain_batch_size,
            "max_length": cfg.max_length, "kd": cfg.kd, "tokens_per_step": tokens, "warmup_steps": warmup,
            "steps_started": len(starts), "steps_logged": len(rows),
            "period_mean_s": statistics.fmean(periods) if periods else None,
            "period_median_s": statistics.median(periods) if periods else None,
            "period_min_s": min(periods) if periods else None, "period_max_s": max(periods) if periods else None,
            "log_seconds_median": statistics.median(secs) if secs else None,
            "log_seconds_mean": statistics.fmean(secs) if secs else None,
            "first_step_seconds": rows[0]["seconds"] if rows else None,
            "steps_per_s": 1 / statistics.fmean(periods) if periods else None,
            "tokens_per_s": tokens / statistics.fmean(periods) if periods else None,
            "peak_mem_train_steps_GiB": peak_after_step[-1] / 2**30 if peak_after_step else None,
            "peak_mem_allocated_GiB": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "peak_mem_reserved_GiB": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
            "stage_seconds": json.loads(done.read_text())["seconds"] if done.exists() else None,
            "process_wall_s": time.time() - t_start,
            "datasets_imported": "datasets" in sys.modules,
            "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "step_log": rows,
        }
        return result

    def dump() -> None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(stats(), indent=1))
        except Exception as err:  # never let the observer break the run
            print(f"[probe] could not write {out}: {err!r}", flush=True)

    original = training.TrainLoop.run

    def observed_run(self, batches_for_epoch, step_fn, end_of_epoch=None):
        def timed(batch, index):
            starts.append(time.perf_counter())
            parts = step_fn(batch, index)
            if cuda:
                peak_after_step.append(torch.cuda.max_memory_allocated())
            if len(starts) % 10 == 0:
                dump()
            return parts
        return original(self, batches_for_epoch, timed, end_of_epoch)

    training.TrainLoop.run = observed_run

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    try:
        state["rc"] = elmlib_main(argv)
    except BaseException as err:  # noqa: BLE001 (record and report everything, KeyboardInterrupt too)
        import traceback

        state["error"] = f"{type(err).__name__}: {err}\n{traceback.format_exc()[-3000:]}"
        state["rc"] = -1
    dump()
    r = json.loads(out.read_text()) if out.exists() else {}
    print(f"[probe] {label}: rc={state['rc']} steps={r.get('steps_logged')} "
          f"period_mean={r.get('period_mean_s')} s tokens/s={r.get('tokens_per_s')} "
          f"peak_train={r.get('peak_mem_train_steps_GiB')} GiB datasets_imported={r.get('datasets_imported')}",
          flush=True)
    if state["error"]:
        print(state["error"], flush=True)
    return 0 if state["rc"] == 0 else 1


def _compare(a: list[dict], b: list[dict]) -> dict:
    n = min(len(a), len(b))
    keys = [k for k in (a[0] if a else {}) if k not in ("seconds",)]
    first_diff, max_rel = None, 0.0
    for i in range(n):
        for k in keys:
            x, y = a[i].get(k), b[i].get(k)
            if x != y:
                if first_diff is None:
                    first_diff = {"step": a[i]["step"], "key": k, "a": x, "b": y}
                if isinstance(x, (int, float)) and isinstance(y, (int, float)):
                    max_rel = max(max_rel, abs(x - y) / max(abs(x), abs(y), 1e-30))
    return {"steps_compared": n, "fields": keys, "bit_identical": first_diff is None and n > 0,
            "first_difference": first_diff, "max_relative_difference": max_rel}


def summarize(out: Path, files: list[Path]) -> None:
    runs = []
    for f in files:
        try:
            runs.append(json.loads(f.read_text()))
        except Exception as err:  # a part that never wrote
            runs.append({"label": f.stem, "error": f"no result file ({err!r})"})
    det = []
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            same = a.get("argv") and b.get("argv") and \
                [x for x in a["argv"] if not x.startswith("/")] == [x for x in b["argv"] if not x.startswith("/")]
            if same:
                det.append({"a": a["label"], "b": b["label"], **_compare(a.get("step_log", []), b.get("step_log", []))})
    (out / "pretrain.json").write_text(json.dumps({"runs": runs, "determinism": det}, indent=1))
    scale = next((r["argv"][r["argv"].index("--scale") + 1] for r in runs if "--scale" in r.get("argv", [])), "?")
    lines = [f"## Supernet pretraining (elmlib search --scale {scale} --stages pretrain)", "",
             "| run | precision | steps | steps/s | tokens/s | period mean (s) | log seconds median | peak GiB (steps / stage) | stage s | rc |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    f = lambda v, d=3: "-" if v is None else (f"{v:,.{d}f}" if isinstance(v, float) else str(v))  # noqa: E731
    for r in runs:
        lines.append(f"| {r.get('label')} | {r.get('precision')} | {r.get('steps_logged')} | {f(r.get('steps_per_s'), 2)} "
                     f"| {f(r.get('tokens_per_s'), 0)} | {f(r.get('period_mean_s'), 4)} | {f(r.get('log_seconds_median'), 4)} "
                     f"| {f(r.get('peak_mem_train_steps_GiB'), 2)} / {f(r.get('peak_mem_allocated_GiB'), 2)} "
                     f"| {f(r.get('stage_seconds'), 1)} | {r.get('rc')} |")
    lines.append("")
    for r in runs:
        if r.get("error"):
            lines.append(f"- {r.get('label')} error: `{r['error'].splitlines()[0][:300]}`")
    for d in det:
        lines.append(f"- determinism {d['a']} vs {d['b']}: bit-identical={d['bit_identical']} over {d['steps_compared']} "
                     f"steps; first difference {d['first_difference']}; max relative difference {d['max_relative_difference']:.3g}")
    if runs and runs[0].get("warmup_steps") is not None:
        lines.append(f"- rates exclude the first {runs[0]['warmup_steps']} steps (warm-up); "
                     f"TF32 matmul={runs[0].get('tf32_matmul')}, datasets imported={runs[0].get('datasets_imported')}")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("cmd")
        parser.add_argument("--label", required=True)
        parser.add_argument("--json", required=True)
        parser.add_argument("--warmup", type=int, default=10)
        if "--" not in sys.argv:
            parser.error("give elmlib's arguments after --")
        cut = sys.argv.index("--")
        args = parser.parse_args(sys.argv[1:cut])
        return run(args.label, Path(args.json), args.warmup, sys.argv[cut + 1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cmd", choices=["summarize"])
    parser.add_argument("--out", required=True)
    parser.add_argument("files", nargs="*")
    args = parser.parse_intermixed_args()
    summarize(Path(args.out), [Path(f) for f in args.files])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
