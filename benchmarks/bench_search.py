"""Cost of the ELM search: wall time per stage, supernet training throughput against a standalone
model of the mean sampled size (same run, same batch, same KD objective), and the share of the
PCA and CKA measurements in training time (goal: under 5%).

    python benchmarks/bench_search.py --scale smoke            # runs (or reuses) runs/bench-smoke
    python benchmarks/bench_search.py --scale small --run-dir runs/boolq-small

Throughput is tokens/s of a full training step (teacher forward, student forward/backward, AdamW),
median of torch.utils.benchmark timings, supernet path and standalone measured alternately.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils import benchmark

from elmlib.pipeline.config import parse_sets, resolve_config
from elmlib.data.corpus import mlm_batches
from elmlib.io.files import project_root, results_dir, write_result
from elmlib.model.modeling_elm import ElmForMaskedLM
from elmlib.nas.objective import Objective
from elmlib.pipeline.preflight import STAGES
from elmlib.pipeline.run import SearchRun, run_search
from elmlib.data.teachers import load_teacher
from elmlib.train.training import adamw


def step_timer(objective, teacher, batch, arch) -> benchmark.Timer:
    opt = adamw([objective], 1e-4, 0.01)

    def step():
        with torch.no_grad():
            t = teacher(batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch["token_type_ids"])
        parts = objective(batch, t, arch=arch) if arch is not None else objective(batch, t)
        parts["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    step()  # warm-up
    return benchmark.Timer(stmt="step()", globals={"step": step})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="smoke")
    parser.add_argument("--task", default="boolq")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. a shortened schedule at the real widths")
    args = parser.parse_args()
    cfg = resolve_config(args.scale, task=args.task, overrides=parse_sets(args.set))
    run_dir = Path(args.run_dir or project_root() / "runs" / f"bench-{args.scale}")
    start = time.time()
    run_search(cfg, run_dir, progress=False)
    rows = [dict(measure="stage_seconds", variant=s, value=json.loads((run_dir / f"{s}.done.json").read_text())["seconds"])
            for s in STAGES]

    # Throughput: the pretrained supernet on sampled paths vs a standalone model of the mean sampled size.
    run = SearchRun(cfg, run_dir, progress=False)
    net, _ = run.load_supernet("supernet_pretrain.pt")
    paths = [net.sample(random.Random(i)) for i in range(200)]
    mean = sum(run.space.num_params(a) for a in paths) / len(paths)
    typical = min(paths, key=lambda a: abs(run.space.num_params(a) - mean))
    teacher = load_teacher(cfg.teacher)
    kd = run.kd_loss(len(net.layers), teacher, with_logits=False)
    batch = next(iter(mlm_batches(run.tokenizer(), cfg.max_length, cfg.pretrain_batch_size, "train", cfg.seed)))
    model = net.extract(typical, ElmForMaskedLM)
    timers = {
        "supernet_path": step_timer(Objective(net, net.predictions, kd, "mlm", 1.0), teacher, batch, typical),
        "standalone": step_timer(Objective(model.elm, model.predictions, kd, "mlm", 1.0), teacher, batch, None),
    }
    times = {k: [] for k in timers}
    for _ in range(args.rounds):
        for k, timer in timers.items():
            times[k].append(timer.blocked_autorange(min_run_time=2.0).median)
    tokens = batch["input_ids"].numel()
    for k, t in times.items():
        rows.append(dict(measure="train_tokens_per_s", variant=k, value=tokens / float(torch.tensor(t).median())))
    rows.append(dict(measure="train_tokens_per_s", variant="supernet_over_standalone",
                     value=rows[-2]["value"] / rows[-1]["value"]))
    rows.append(dict(measure="params", variant="mean_sampled_path", value=mean))

    timings = json.loads((run_dir / "pretrain_timings.json").read_text())
    pretrain, finetune = (json.loads((run_dir / f"{s}.done.json").read_text())["seconds"] for s in ("pretrain", "finetune"))
    heads = json.loads((run_dir / "heads.done.json").read_text())["seconds"]
    rows += [dict(measure="share_of_supernet_training", variant="pca", value=timings["pca_seconds"] / pretrain),
             dict(measure="share_of_supernet_training", variant="cka", value=heads / (pretrain + finetune)),
             dict(measure="share_of_supernet_training", variant="block_similarity",
                  value=timings["block_similarity_seconds"] / pretrain)]
    df = pd.DataFrame(rows)
    df.insert(0, "scale", args.scale)
    df.insert(1, "overrides", " ".join(args.set))
    out = args.out or results_dir() / f"bench_search_{args.scale}.csv"
    write_result(df, out, config=cfg.to_dict(), seed=cfg.seed, wall_time_s=time.time() - start)
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 120):
        print(df.to_string(index=False))


if __name__ == "__main__":
    main()
