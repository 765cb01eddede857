"""Stages 3 and 4 of the ELM search (paper Algorithm 2, Sec. III-C): the evolutionary search over
paths of the fine-tuned supernet, scored on the task's 10% search split under the parameter budget,
then the CKA head search (Algorithm 1) on the found architecture.

    search_architecture(ctx)   # -> search_history.csv, pareto_front.csv, arch_searched.json
    search_heads(ctx)          # -> cka.csv, arch.json

``search_mode``: ``supernet`` scores every proposal on the supernet; ``proxy_assisted`` lets a
zero-cost proxy rank proposals and the supernet score the best share; ``proxy_only`` ranks untrained
architectures by the proxy alone (no supernet stages, no head search). ``elastic_widths=n`` lets a
gene take an FFN prefix up to n-1 steps below the block's grown size (docs/importance.md).
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from elmlib.data.tasks import compute_metrics
from elmlib.extensions.proxies import score_architecture
from elmlib.io.files import write_csv, write_json
from elmlib.nas.analysis import MinibatchCKA, head_number
from elmlib.nas.evolution import EvolutionarySearch, EvolutionSettings
from elmlib.nas.objective import TaskBatches, predict, to_device
from elmlib.nas.space import Architecture, LayerChoice, SearchSpace
from elmlib.nas.supernet import Supernet
from elmlib.pipeline.context import RunContext, build_supernet, saved_head
from elmlib.train.training import Interrupted


def genome_decoder(net: Supernet, space: SearchSpace, widths: int) -> Callable[[tuple[int, ...]], Architecture]:
    """Genome -> architecture: gene ``g`` of layer i is candidate block ``g // widths`` at its grown FFN
    size minus ``g % widths`` steps (never below ``ffn_min``), with every head."""
    def decode(genome):
        layers = []
        for i, g in enumerate(genome):
            block, sharing = net.candidates[g // widths]
            ffn = max(space.ffn_min, net.ffn_dim(i, block, sharing) - (g % widths) * space.ffn_step)
            layers.append(LayerChoice(block, sharing, ffn, space.num_heads))
        return Architecture(tuple(layers))
    return decode


def search_inputs(ctx: RunContext, proxy_only: bool) -> tuple[Supernet, torch.nn.Module | None, list]:
    """The fine-tuned supernet (eval mode), its task head and the search split's batches; for
    ``proxy_only``, an untrained supernet (blocks at their starting FFN sizes) and nothing to score on."""
    c = ctx.cfg
    if proxy_only:
        return build_supernet(c, ctx.space), None, []
    net, state = ctx.load_supernet("supernet_finetune.pt")
    net.to(ctx.device).eval()
    head = saved_head(c, ctx.space, net, state, ctx.spec.num_labels).to(ctx.device)
    batches = list(TaskBatches(ctx.task_split("search", c.search_limit), ctx.tokenizer(),
                               c.eval_batch_size, shuffle=False).epoch())
    return net, head, batches


def scorers(ctx: RunContext, net: Supernet, head, batches: list, metric: str) -> tuple[Callable, Callable]:
    """(score, proxy) of an architecture: the task ``metric`` on the search split (or the proxy, when
    ``metric == "proxy"``), and the cached zero-cost proxy. ``ctx.stop_at["search"]`` = n: a simulated
    kill before evaluation n + 1."""
    cache: dict[str, float] = {}
    stop_after, calls = ctx.stop_at.get("search"), [0]

    def proxy(arch):
        key = arch.to_json()
        if key not in cache:
            cache[key] = score_architecture(ctx.space, arch, seed=ctx.cfg.seed)
        return cache[key]

    def score(arch):
        calls[0] += 1
        if stop_after is not None and calls[0] > stop_after:
            raise Interrupted(f"search: simulated kill before evaluation {calls[0]}")
        if metric == "proxy":
            return proxy(arch)
        logits, labels = predict(net, head, batches, ctx.device, arch)
        return compute_metrics(ctx.spec, logits.numpy(), labels.numpy())[metric]

    return score, proxy


def search_table(space: SearchSpace, rows, metric: str) -> pd.DataFrame:
    """search_history.csv / pareto_front.csv: one row per evaluated architecture."""
    return pd.DataFrame([dict(generation=e.generation, arch=e.arch.to_json(), params=e.params,
                              non_embedding_params=space.num_non_embedding_params(e.arch),
                              score=e.score, metric=metric) for e in rows])


def search_architecture(ctx: RunContext) -> None:
    """Stage 3: the evolutionary search (resumable from evolution_state.json, one generation at a time)."""
    c = ctx.cfg
    proxy_only, assisted = c.search_mode == "proxy_only", c.search_mode == "proxy_assisted"
    net, head, batches = search_inputs(ctx, proxy_only)
    metric = "proxy" if proxy_only else ctx.spec.metrics[0]
    score, proxy = scorers(ctx, net, head, batches, metric)
    widths = c.elastic_widths  # a gene = (candidate block, how many FFN steps below its grown size)
    search = EvolutionarySearch(
        len(net.layers), len(net.candidates) * widths, genome_decoder(net, ctx.space, widths), ctx.space.num_params,
        c.budget, score, seed=c.seed,
        settings=EvolutionSettings(population=c.population, generations=c.generations,
                                   crossover_prob=c.crossover_prob, mutation_prob=c.mutation_prob,
                                   parents=c.parents, proxy_fraction=c.proxy_fraction if assisted else 1.0),
        state_path=ctx.dir / "evolution_state.json", proxy=proxy if assisted else None)

    def write_history(s):  # after each generation, whose state the search has just saved
        write_csv(search_table(ctx.space, s.history(), metric), ctx.dir / "search_history.csv")
        ctx.record_elapsed()

    run_generations(search, write_history, c.generations if ctx.progress else None)
    write_history(search)
    write_csv(search_table(ctx.space, search.pareto_front(), metric), ctx.dir / "pareto_front.csv")
    best = search.best()
    write_json({**best.arch.to_dict(), "params": best.params, "score": best.score, "metric": metric,
                "search_mode": c.search_mode, "evaluated": len(search.evaluated),
                "proxy_ranked": search.proxy_ranked, "rejected_over_budget": search.rejected_over_budget},
               ctx.dir / "arch_searched.json")


def run_generations(search: EvolutionarySearch, on_generation: Callable, bar_total: int | None) -> None:
    """``search.run(on_generation)``, with a progress bar of ``bar_total`` generations unless None."""
    if bar_total is None:
        search.run(on_generation)
        return
    bar = tqdm(total=bar_total, initial=search.generation, desc="search", leave=False)
    try:
        search.run(lambda s: (on_generation(s), bar.update(1), bar.set_postfix(best=f"{s.best().score:.4f}")))
    finally:
        bar.close()


# --------------------------------------------------------------------------- stage 4

@torch.no_grad()
def search_heads(ctx: RunContext) -> None:
    """Stage 4: linear CKA between the heads of every layer of the found architecture on the search
    split, and Algorithm 1's head number per layer -> cka.csv and the final arch.json."""
    c = ctx.cfg
    arch = ctx.read_arch("arch_searched.json")
    if c.search_mode == "proxy_only":  # no trained weights to measure head redundancy on
        write_json({**arch.to_dict(), "params": ctx.space.num_params(arch), "head_search": False},
                   ctx.dir / "arch.json")
        return
    net, _ = ctx.load_supernet("supernet_finetune.pt")
    model = net.extract(arch).to(ctx.device).eval()
    batches = TaskBatches(ctx.task_split("search", c.search_limit), ctx.tokenizer(), c.eval_batch_size,
                          shuffle=False)
    accs = [MinibatchCKA() for _ in arch.layers]
    for _, batch in zip(range(c.cka_batches), batches.epoch()):
        batch = to_device(batch, ctx.device)
        out = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"], output_head_outputs=True)
        for acc, heads in zip(accs, out.head_outputs):
            acc.update(heads, batch["attention_mask"])
    rows, layers = [], []
    for i, (layer, acc) in enumerate(zip(arch.layers, accs)):
        q = acc.matrix()
        rows += [dict(layer=i, head_i=a, head_j=b, cka=float(q[a, b]))
                 for a in range(q.shape[0]) for b in range(q.shape[0])]
        heads = head_number(q, c.cka_eta, ctx.space.attention_width(layer.block)) if c.head_search else layer.heads
        layers.append(LayerChoice(layer.block, layer.sharing, layer.ffn_dim, heads))
    write_csv(pd.DataFrame(rows), ctx.dir / "cka.csv")
    final = Architecture(tuple(layers))
    write_json({**final.to_dict(), "params": ctx.space.num_params(final), "head_search": c.head_search},
               ctx.dir / "arch.json")
