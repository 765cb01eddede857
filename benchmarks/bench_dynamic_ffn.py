"""Cost of a supernet pretraining step with dynamic FFN dims (PCA-guided growth) against fixed dims
(every FFN at the hidden size), measured alternately in one process (ELM appendix: 7.1 vs 8.5 GPU-days
for the whole ELM-Small search, a ratio of 1.20).

    python benchmarks/bench_dynamic_ffn.py --scale smoke                       # runs (or reuses) runs/bench-smoke
    python benchmarks/bench_dynamic_ffn.py --run-dir results/small/run_records/seed2/main

The dynamic supernet follows the growth a finished run recorded (its ``growth.csv``; a run record
without weights is enough): in epoch ``e`` every block has the FFN size the growth of epochs ``< e``
gave it. For every epoch both supernets train on the same batches and the same sampled block choices,
one step each in turn, under the run's precision, so machine load shifts both alike. Why this and not
the two run folders' stage times: on a shared 2-core machine those differ by load as much as by width.
The pretraining-time ratio weights each epoch's step ratio by its (equal) number of steps; PCA scoring,
fine-tuning and evolution are not in it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from elmlib.pipeline.config import SearchConfig, resolve_config
from elmlib.data.corpus import mlm_batches
from elmlib.io.files import project_root, results_dir, write_result
from elmlib.nas.objective import Objective
from elmlib.pipeline.context import build_supernet, kd_loss
from elmlib.pipeline.run import run_search
from elmlib.nas.supernet import candidate_key
from elmlib.data.teachers import load_teacher
from elmlib.data.tokenization import load_tokenizer
from elmlib.train.training import adamw, autocast, path_rng


def sizes_per_epoch(growth: pd.DataFrame, initial: dict[str, int], epochs: int) -> list[dict[str, int]]:
    """The FFN size of every block while epoch 0, 1, ... trains: growth happens at the end of an epoch."""
    states, sizes = [], dict(initial)
    for epoch in range(epochs):
        states.append(dict(sizes))
        for r in growth[growth.epoch == epoch].itertuples():
            sizes[f"{r.layer}/{candidate_key(r.block_type, r.sharing)}"] = int(r.new_ffn_dim)
    return states


class Trainer:
    """One supernet with its KD projections and AdamW, stepping as stage 1 (`pretrain_supernet`) does."""

    def __init__(self, cfg: SearchConfig, teacher):
        self.cfg = cfg
        self.net = build_supernet(cfg, cfg.search_space())
        kd = kd_loss(cfg, cfg.search_space(), len(self.net.layers), teacher, with_logits=False)
        self.objective = Objective(self.net, self.net.predictions, kd, "mlm", cfg.mlm_weight)
        self.optimizer = adamw([self.net, kd], cfg.pretrain_lr, cfg.weight_decay)
        self.teacher = teacher

    def grow_to(self, sizes: dict[str, int]) -> None:
        # Growth resizes parameters; a fresh AdamW holds the new shapes (the search resizes its state
        # in place instead: the same step cost once the untimed warm-up step has allocated it).
        self.net.grow_to(sizes)
        self.optimizer = adamw([self.net, self.objective.kd], self.cfg.pretrain_lr, self.cfg.weight_decay)

    def step(self, batch, index: int) -> float:
        start = time.perf_counter()
        with autocast(self.cfg.precision):
            with torch.no_grad():
                t = self.teacher(batch["input_ids"], attention_mask=batch["attention_mask"],
                                 token_type_ids=batch["token_type_ids"])
            parts = self.objective(batch, t, arch=self.net.sample(path_rng(self.cfg.seed, index)))
            parts["loss"].backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="smoke", help="used only without --run-dir (then a search runs)")
    parser.add_argument("--task", default="boolq")
    parser.add_argument("--run-dir", default=None, help="a finished run (or run record) with config.json, growth.csv")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant and epoch")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps={args.steps} is not allowed; expected an integer >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.run_dir:
        run_dir = Path(args.run_dir)
        missing = [n for n in ("config.json", "growth.csv") if not (run_dir / n).exists()]
        if missing:
            parser.error(f"--run-dir={str(run_dir)!r} has no {', '.join(missing)}; expected a finished run folder")
        cfg = SearchConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    else:
        cfg = resolve_config(args.scale, task=args.task)
        run_dir = project_root() / "runs" / f"bench-{args.scale}"
        run_search(cfg, run_dir, progress=False, stages=("pretrain",))
    if not cfg.dynamic_ffn:
        parser.error(f"run {str(run_dir)!r} has dynamic_ffn=False; expected a run with growth (the main run)")
    start = time.time()
    torch.manual_seed(cfg.seed)
    teacher = load_teacher(cfg.teacher).eval()
    dynamic, fixed = Trainer(cfg, teacher), Trainer(dataclasses.replace(cfg, dynamic_ffn=False), teacher)
    growth = pd.read_csv(run_dir / "growth.csv")
    states = sizes_per_epoch(growth, dynamic.net.ffn_sizes(), cfg.pretrain_epochs)
    batches = mlm_batches(load_tokenizer(cfg.teacher), cfg.max_length, cfg.pretrain_batch_size, "train", cfg.seed,
                          source=cfg.corpus)
    steps_per_epoch = cfg.pretrain_steps or len(batches)
    rows = []
    for epoch, sizes in enumerate(states):
        dynamic.grow_to(sizes)
        batch_iter = iter(batches)
        times = {"dynamic": [], "fixed": []}
        for i in range(args.steps + 1):  # the first step of each epoch warms up and is not timed
            batch, index = next(batch_iter), epoch * steps_per_epoch + i
            for name, trainer in (("dynamic", dynamic), ("fixed", fixed)):
                seconds = trainer.step(batch, index)
                if i:
                    times[name].append(seconds)
        for name, trainer in (("dynamic", dynamic), ("fixed", fixed)):
            ffn = list(trainer.net.ffn_sizes().values())
            rows.append(dict(epoch=epoch, variant=name, step_seconds=statistics.median(times[name]),
                             steps=len(times[name]), mean_ffn_dim=sum(ffn) / len(ffn),
                             supernet_params=sum(p.numel() for p in trainer.net.parameters())))
        print(f"epoch {epoch}: dynamic {rows[-2]['step_seconds']:.3f} s/step (mean FFN {rows[-2]['mean_ffn_dim']:.0f}), "
              f"fixed {rows[-1]['step_seconds']:.3f} s/step", flush=True)
    df = pd.DataFrame(rows)
    per_epoch = df.pivot(index="epoch", columns="variant", values="step_seconds")
    df = pd.concat([df, pd.DataFrame([dict(epoch=-1, variant="fixed_over_dynamic_pretraining",
                                           step_seconds=per_epoch.fixed.sum() / per_epoch.dynamic.sum())])],
                   ignore_index=True)
    df.insert(0, "scale", cfg.scale)
    df.insert(1, "threads", torch.get_num_threads())
    out = args.out or results_dir() / f"bench_dynamic_ffn_{cfg.scale}.csv"
    write_result(df, out, config=cfg.to_dict(), seed=cfg.seed, wall_time_s=time.time() - start,
                 run_dir=str(run_dir), paper_ratio_whole_search=round(8.5 / 7.1, 3))
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 120):
        print(df.to_string(index=False))


if __name__ == "__main__":
    main()
