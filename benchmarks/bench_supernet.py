"""Speed of the supernet and its blocks, as ratios against references measured in the same run.

    python benchmarks/bench_supernet.py [--preset small] [--batch 8] [--seq 128] [--out results/bench_supernet.csv]

1. A training step (forward, backward, AdamW step) of the supernet on a sampled path vs the same
   architecture extracted as a standalone model (goal: supernet overhead <= 10%).
2. Our BERT block vs transformers' BertLayer (SDPA and eager attention), forward + backward at
   equal sizes (goal: ratio <= 1.0).
3. Achieved training FLOP/s of the standalone step vs this machine's measured matmul FLOP/s.

Timings are medians of torch.utils.benchmark's blocked_autorange, with the compared pairs
measured alternately so that machine load affects both alike.
"""
from __future__ import annotations

import argparse
import random
import time

import pandas as pd
import torch
from torch.utils import benchmark
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLayer

import elmlib
from elmlib.io.files import results_dir, write_result
from elmlib.model.blocks import build_block


def median_time(fn, min_run_time: float) -> float:
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time).median


def alternate(fns: dict, rounds: int, min_run_time: float) -> dict[str, float]:
    """Median over ``rounds`` alternating measurements of each function (seconds per call)."""
    times = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(median_time(fn, min_run_time))
    return {name: float(torch.tensor(t).median()) for name, t in times.items()}


def train_step(module, run, params):
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        run(module).square().mean().backward()
        opt.step()
    return step


def matmul_flops(n: int = 1024) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / median_time(lambda: a @ b, 1.0)


def step_flops(space: elmlib.SearchSpace, arch: elmlib.Architecture, batch: int, seq: int) -> float:
    """Training FLOPs: 6 x (non-embedding parameters) per token for the dense layers, plus attention
    scores and context (2 matmuls of N x N x width, x3 for forward + backward)."""
    tokens = batch * seq
    dense = 6 * (space.num_non_embedding_params(arch) + space.embedding_size * space.hidden_size) * tokens
    attn = sum(3 * 2 * 2 * batch * seq * seq * space.attention_width(layer.block) for layer in arch.layers)
    return dense + attn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--ffn", type=int, default=None, help="FFN dim of every block (default: hidden size)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-run-time", type=float, default=1.0)
    parser.add_argument("--out", default=str(results_dir() / "bench_supernet.csv"))
    args = parser.parse_args()
    start = time.time()
    torch.manual_seed(0)
    space = elmlib.SearchSpace.preset(args.preset)
    ffn = args.ffn or space.hidden_size
    space = elmlib.SearchSpace.preset(args.preset, ffn_init=ffn)
    rows = []

    # 1. supernet path vs extracted standalone model
    net = elmlib.Supernet(space, seed=0)
    arch = net.sample(random.Random(0))
    model = net.extract(arch)
    ids = torch.randint(1, space.vocab_size, (args.batch, args.seq))
    mask = torch.ones_like(ids)
    times = alternate({
        "supernet_path": train_step(net, lambda m: m(ids, attention_mask=mask, arch=arch).last_hidden_state,
                                    net.parameters()),
        "standalone": train_step(model, lambda m: m(ids, attention_mask=mask).last_hidden_state,
                                 model.parameters()),
    }, args.rounds, args.min_run_time)
    rows += [dict(benchmark="train_step", variant=k, seconds=v) for k, v in times.items()]
    rows.append(dict(benchmark="train_step", variant="supernet_overhead_ratio",
                     seconds=times["supernet_path"] / times["standalone"]))
    flops = step_flops(space, arch, args.batch, args.seq)
    peak = matmul_flops()
    rows += [dict(benchmark="flops", variant="achieved_train_flops_per_s", seconds=flops / times["standalone"]),
             dict(benchmark="flops", variant="matmul_flops_per_s", seconds=peak),
             dict(benchmark="flops", variant="utilisation", seconds=flops / times["standalone"] / peak)]

    # 2. our BERT block vs transformers' BertLayer, same sizes and weights
    hidden, heads = space.hidden_size, space.num_heads
    x = torch.randn(args.batch, args.seq, hidden, requires_grad=True)
    ours = build_block(space.config(arch), "bert", "none", ffn, heads)
    pair = {"elm_bert_block": lambda: ours(x).hidden.sum().backward()}
    for impl in ("sdpa", "eager"):
        ref = BertLayer(BertConfig(hidden_size=hidden, num_attention_heads=heads, intermediate_size=ffn,
                                   attn_implementation=impl))
        ref.load_state_dict(ours.state_dict())
        pair[f"transformers_bertlayer_{impl}"] = (lambda r: lambda: r(x).sum().backward())(ref)
    times = alternate(pair, args.rounds, args.min_run_time)
    rows += [dict(benchmark="bert_block_fwd_bwd", variant=k, seconds=v) for k, v in times.items()]
    for impl in ("sdpa", "eager"):
        rows.append(dict(benchmark="bert_block_fwd_bwd", variant=f"ratio_vs_{impl}",
                         seconds=times["elm_bert_block"] / times[f"transformers_bertlayer_{impl}"]))

    df = pd.DataFrame(rows).rename(columns={"seconds": "value"})
    df.insert(0, "preset", args.preset)
    df["batch"], df["seq"], df["ffn"] = args.batch, args.seq, ffn
    write_result(df, args.out, config=vars(args), seed=0, wall_time_s=time.time() - start)
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 120):
        print(df.to_string(index=False))


if __name__ == "__main__":
    main()
