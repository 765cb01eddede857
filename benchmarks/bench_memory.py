"""Memory of the masked-LM loss under bf16 autocast on the CPU: with and without padding the masked rows.

    python benchmarks/bench_memory.py [--scale small] [--batches 40] [--threads 1]

The masked-LM objective decodes only the masked positions, whose number differs from batch to batch.
Under CPU bf16 autocast every new matmul shape keeps memory (oneDNN), so `elmlib.nas.objective` pads the
masked rows to a multiple of 64. This runs the supernet's own masked-LM head (dense, LayerNorm, tied
30522-word decoder) at the scale's widths, forward and backward, on the masked positions of real
pretraining batches (the offline corpus), once per variant in a fresh process: ``padded`` (the
project's code), ``unpadded`` (multiple 1) and ``fp32`` (no autocast). It reports the resident memory
growth from the fifth batch to the last and the number of distinct row counts the head saw.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

VARIANTS = ("padded", "unpadded", "fp32")


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2 ** 20


def measure(variant: str, scale: str, batches: int, threads: int) -> dict:
    """One variant in this process; returns its memory figures."""
    import torch
    import torch.nn.functional as F

    from elmlib.data.corpus import mlm_batches
    from elmlib.model.modeling_elm import ElmMLMHead
    from elmlib.nas.objective import MASKED_ROWS_MULTIPLE, pad_rows_under_cpu_autocast
    from elmlib.nas.space import SearchSpace

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = SearchSpace.preset(scale).widths_config()
    head = ElmMLMHead(config)
    multiple = 1 if variant == "unpadded" else MASKED_ROWS_MULTIPLE
    rows, memory = set(), []
    for i, batch in zip(range(batches), mlm_batches("teacher", 128, 32, "train", 0)):
        labels = batch["labels"]
        masked = labels != -100
        hidden = torch.randn(int(masked.sum()), config.hidden_size, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant != "fp32"):
            x, targets = pad_rows_under_cpu_autocast(hidden, labels[masked], multiple)
            loss = F.cross_entropy(head(x).float(), targets, reduction="sum")
        loss.backward()
        head.zero_grad(set_to_none=True)
        rows.add(x.shape[0])
        memory.append(rss_mib())
    return dict(variant=variant, batches=batches, distinct_row_counts=len(rows),
                rss_start_mib=memory[4], rss_end_mib=memory[-1], growth_mib=memory[-1] - memory[4],
                growth_mib_per_batch=(memory[-1] - memory[4]) / (len(memory) - 5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one child process
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.batches < 10:
        parser.error(f"--batches={args.batches} is not allowed; expected >= 10 (the first 5 are warm-up)")
    if args.variant:
        print(json.dumps(measure(args.variant, args.scale, args.batches, args.threads)))
        return
    from bench_precision import cpu_bf16_support, save_and_show  # this folder is on sys.path as a script
    from elmlib.io.files import results_dir

    start = time.time()
    rows = []
    for variant in VARIANTS:  # a fresh process each: memory kept by one variant must not count for the next
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--scale", args.scale,
                              "--batches", str(args.batches), "--threads", str(args.threads)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    df = pd.DataFrame(rows)
    df.insert(0, "scale", args.scale)
    df["threads"], df["cpu_bf16"] = args.threads, cpu_bf16_support()
    save_and_show(df, args.out or results_dir() / f"bench_memory_{args.scale}.csv", vars(args), start)


if __name__ == "__main__":
    main()
