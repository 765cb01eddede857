"""A short supernet demo on real text: SPOS masked-LM training, path comparison, export, reload.

    python -m elmlib demo --scale smoke            # its time: docs/speed.md

It trains the supernet for a few hundred single-path steps on the offline Wikipedia corpus
(paper Sec. III-A, uniform path sampling), scores a handful of sampled paths by held-out
masked-LM loss, extracts the best one under the scale's budget as a standalone
``ElmForMaskedLM``, saves it with ``save_pretrained``, reloads it through ``AutoModelForMaskedLM``
and checks that the reloaded model reproduces the supernet path exactly.
"""
from __future__ import annotations

import argparse
import itertools
import random
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from transformers import AutoModelForMaskedLM

from elmlib.data.corpus import mlm_batches
from elmlib.io.files import workspace, write_json, write_result
from elmlib.model.modeling_elm import ElmForMaskedLM
from elmlib.nas.space import Architecture, SearchSpace
from elmlib.nas.supernet import Supernet

SCALES = {  # steps, batch size, sequence length, paths scored, held-out batches
    "smoke": dict(preset="smoke", steps=300, batch_size=16, max_length=64, paths=8, eval_batches=8),
    "small": dict(preset="small", steps=2000, batch_size=32, max_length=128, paths=32, eval_batches=32),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", default="smoke", help=f"one of {sorted(SCALES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="override the scale's training steps")
    parser.add_argument("--run-dir", default=None, help="default: runs/demo-<scale>")


def mlm_loss(net: Supernet, batch: dict, arch) -> torch.Tensor:
    hidden = net(batch["input_ids"], attention_mask=batch["attention_mask"], arch=arch).last_hidden_state
    masked = batch["labels"] != -100  # decode only the masked positions: the vocab projection dominates
    return F.cross_entropy(net.mlm_logits(hidden[masked]), batch["labels"][masked])


def run(scale: str = "smoke", seed: int = 0, steps: int | None = None, run_dir: str | None = None) -> pd.DataFrame:
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not allowed; expected one of {sorted(SCALES)}")
    settings = {**SCALES[scale], **({"steps": steps} if steps else {})}
    run_dir = Path(run_dir or workspace() / "runs" / f"demo-{scale}")
    start = time.time()
    space = SearchSpace.preset(settings["preset"])
    net = Supernet(space, seed=seed)
    train = mlm_batches("teacher", settings["max_length"], settings["batch_size"], "train", seed)
    heldout = list(itertools.islice(mlm_batches("teacher", settings["max_length"], settings["batch_size"],
                                                "heldout", seed), settings["eval_batches"]))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    rng = random.Random(seed)  # path sampling; independent of data order and initialisation
    print(f"supernet ({space.name}): {net.num_params() / 1e6:.2f}M parameters, {len(train)} batches/epoch")
    net.train()
    batches = (b for epoch in itertools.count() for b in (train.set_epoch(epoch) or train))
    for step in range(1, settings["steps"] + 1):
        loss = mlm_loss(net, next(batches), net.sample(rng))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == 1:
            print(f"step {step:4d}  mlm loss {loss.item():.3f}  ({time.time() - start:.0f}s)")

    net.eval()
    rows = []
    with torch.no_grad():
        for i in range(settings["paths"]):
            arch = net.sample(random.Random(seed * 1000 + i))
            loss = sum(mlm_loss(net, b, arch).item() for b in heldout) / len(heldout)
            rows.append(dict(scale=scale, seed=seed, path=i, params=space.num_params(arch),
                             heldout_mlm_loss=loss, within_budget=space.num_params(arch) <= space.budget,
                             arch=arch.to_json()))
    table = pd.DataFrame(rows)
    best = table[table.within_budget].sort_values("heldout_mlm_loss").iloc[0]
    arch = Architecture.from_json(best.arch)
    model = net.extract(arch, ElmForMaskedLM).eval()
    model.save_pretrained(run_dir / "model")
    reloaded = AutoModelForMaskedLM.from_pretrained(run_dir / "model").eval()
    b = heldout[0]
    with torch.no_grad():
        path_logits = net.mlm_logits(net(b["input_ids"], attention_mask=b["attention_mask"], arch=arch)
                                     .last_hidden_state)
        same = torch.allclose(reloaded(b["input_ids"], attention_mask=b["attention_mask"]).logits, path_logits,
                              atol=1e-5)
    if not same:
        raise RuntimeError("the reloaded export does not reproduce the supernet path")
    write_json(arch.to_dict(), run_dir / "arch.json")
    write_result(table, run_dir / "paths.csv", config=settings, seed=seed, wall_time_s=time.time() - start)
    print(table.drop(columns="arch").to_string(index=False))
    print(f"best path within the {space.budget / 1e6:.2f}M budget: {best.params / 1e6:.3f}M parameters, "
          f"held-out MLM loss {best.heldout_mlm_loss:.3f}; exported to {run_dir / 'model'} and reloaded "
          f"identically ({time.time() - start:.0f}s)")
    return table


def main(args: argparse.Namespace) -> int:
    run(args.scale, args.seed, args.steps, args.run_dir)
    return 0
