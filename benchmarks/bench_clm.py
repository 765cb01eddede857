"""Generation throughput of the exported causal ELM model vs transformers' GPT-2.

Both models have the `small` preset's width and depth (hidden 528, 12 layers, 12 heads) and GPT-2's
50,257-token vocabulary; both run ``generate()`` greedily with the KV cache, a 32-token prompt and
exactly ``--new-tokens`` new tokens, at batch 1 and batch 8. The ELM models are exported with
``save_pretrained`` and reloaded through ``AutoModelForCausalLM`` (what a user gets). Measured in one
run, the pairs alternately (round-robin), median of ``--repeats`` timings each.

ELM rows: the documented mixed architecture of the space (``elmlib.extensions.causal_lm.documented_architecture``)
and an all-BERT path with GPT-2's FFN size (4 x 528): the same shapes as GPT-2, so that row compares
implementations, not architectures. Weights are random (speed does not depend on them).

    python benchmarks/bench_clm.py                # -> results/bench_clm.csv (+ provenance)
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import pandas as pd
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

import elmlib
from elmlib.extensions.causal_lm import documented_architecture
from elmlib.io.files import results_dir, write_result
from elmlib.nas.space import Architecture, SearchSpace

VOCAB = 50257


def models(space: SearchSpace, folder: str) -> dict[str, torch.nn.Module]:
    h, layers = space.hidden_size, space.num_layers
    archs = {"elm_documented_arch": documented_architecture(space),
             "elm_all_bert_ffn4h": Architecture.uniform(layers, "bert", "none", 4 * h, space.num_heads)}
    out = {}
    wide = SearchSpace(**{**space.to_dict(), "ffn_max": 4 * h})
    for name, arch in archs.items():
        torch.manual_seed(0)
        model = elmlib.ElmForCausalLM(wide.config(arch, pad_token_id=VOCAB - 1, eos_token_id=VOCAB - 1))
        model.save_pretrained(f"{folder}/{name}")
        out[name] = AutoModelForCausalLM.from_pretrained(f"{folder}/{name}").eval()
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=space.max_position_embeddings, n_embd=h,
                                      n_layer=layers, n_head=space.num_heads, n_inner=4 * h))
    out["gpt2_transformers"] = gpt2.eval()
    return out


@torch.no_grad()
def time_generate(model, ids: torch.Tensor, new_tokens: int) -> float:
    start = time.perf_counter()
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, do_sample=False, use_cache=True, pad_token_id=VOCAB - 1)
    elapsed = time.perf_counter() - start
    assert out.shape[1] == ids.shape[1] + new_tokens
    return elapsed


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--out", default=None, help="CSV path (default results/bench_clm.csv)")
    args = parser.parse_args(argv)
    space = SearchSpace.preset(args.preset, vocab_size=VOCAB, max_position_embeddings=1024, type_vocab_size=1)
    rows, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        nets = models(space, folder)
        params = {k: sum(p.numel() for p in {id(p): p for p in m.parameters()}.values()) for k, m in nets.items()}
        for batch in map(int, args.batches.split(",")):
            ids = torch.randint(0, VOCAB - 1, (batch, args.prompt), generator=torch.Generator().manual_seed(batch))
            times = {k: [] for k in nets}
            for name, net in nets.items():  # warm-up
                time_generate(net, ids, 4)
            for _ in range(args.repeats):  # round-robin, so load changes hit every model alike
                for name, net in nets.items():
                    times[name].append(time_generate(net, ids, args.new_tokens))
            for name, ts in times.items():
                median = statistics.median(ts)
                rows.append(dict(model=name, params=params[name], batch=batch, prompt=args.prompt,
                                 new_tokens=args.new_tokens, median_s=median,
                                 tokens_per_s=batch * args.new_tokens / median, repeats=args.repeats))
    table = pd.DataFrame(rows)
    gpt2 = table[table.model == "gpt2_transformers"].set_index("batch").tokens_per_s
    table["speed_vs_gpt2"] = table.tokens_per_s / table.batch.map(gpt2)
    path = args.out or results_dir() / "bench_clm.csv"
    write_result(table, path, config=vars(args) | {"hidden": space.hidden_size, "layers": space.num_layers},
                 wall_time_s=time.perf_counter() - start, threads=torch.get_num_threads())
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main()
