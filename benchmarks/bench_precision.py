"""Training precision: supernet pretraining steps under bf16 autocast vs float32, measured in one run.

    python benchmarks/bench_precision.py [--scale small] [--steps 6] [--rounds 2] [--threads 1]

Runs the search's own pretraining stage (teacher forward, a sampled supernet path forward/backward
with KD and masked LM, AdamW) for a few steps at the scale's widths, once per precision and round,
alternating, each in a fresh run folder. The step time is the median of the step log's seconds
without each run's first step (warm-up); the ratio is float32 over bf16 (above 1: bf16 is faster).
The mean loss over the steps shows that both train alike. Whether the CPU has native bf16 matmuls
(AMX or AVX-512 BF16) decides the outcome on CPU, so it is recorded beside the times.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from elmlib.pipeline.config import resolve_config
from elmlib.io.files import results_dir, write_result
from elmlib.pipeline.run import run_search


def cpu_bf16_support() -> str:
    """The CPU flags that give native bf16 matmuls ("none" when neither is there)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    found = [f for f in ("amx_bf16", "avx512_bf16") if f in flags.split()]
    return "+".join(found) or "none"


def pretrain_steps(scale: str, task: str, precision: str, steps: int, folder: Path) -> list[dict]:
    cfg = resolve_config(scale, task, overrides={"precision": precision, "pretrain_epochs": 1,
                                                 "pretrain_steps": steps, "pca_batches": 1,
                                                 "checkpoint_every": steps})
    run_search(cfg, folder, progress=False, stages=("pretrain",))
    return [json.loads(line) for line in (folder / "pretrain.log.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--task", default="rotten_tomatoes")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps < 2:
        parser.error(f"--steps={args.steps} is not allowed; expected >= 2 (the first step is warm-up)")
    start = time.time()
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    losses: dict[str, list[float]] = {"fp32": [], "bf16": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for precision in seconds:
                log = pretrain_steps(args.scale, args.task, precision, args.steps, Path(tmp) / f"{precision}-{r}")
                seconds[precision] += [row["seconds"] for row in log[1:]]
                losses[precision] += [row["loss"] for row in log]
    step = {p: statistics.median(s) for p, s in seconds.items()}
    rows = [dict(measure="pretrain_step_seconds", variant=p, value=v) for p, v in step.items()]
    rows.append(dict(measure="pretrain_step_seconds", variant="fp32_over_bf16", value=step["fp32"] / step["bf16"]))
    rows += [dict(measure="mean_loss", variant=p, value=statistics.mean(v)) for p, v in losses.items()]
    df = pd.DataFrame(rows)
    df.insert(0, "scale", args.scale)
    df["steps"], df["rounds"], df["threads"] = args.steps, args.rounds, torch.get_num_threads()
    df["cpu_bf16"] = cpu_bf16_support() if not torch.cuda.is_available() else "cuda"
    save_and_show(df, args.out or results_dir() / f"bench_precision_{args.scale}_{torch.get_num_threads()}threads.csv",
                  vars(args), start)


def save_and_show(df: pd.DataFrame, out, config: dict, start: float) -> None:
    """Write a benchmark's table with its provenance and print it."""
    write_result(df, out, config=config, seed=0, wall_time_s=time.time() - start)
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 120):
        print(df.to_string(index=False))


if __name__ == "__main__":
    main()
