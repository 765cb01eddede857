"""A search in the causal setting for Table IV's ELM row (beyond the paper, which searches on GLUE with a
bidirectional supernet and then trains the found architecture as a causal LM).

Where no GLUE search run folder is given, ``causal_search`` finds the ELM student in the students' own
space (``clm_space``: the teacher's vocabulary), in three steps:

1. a ``Supernet`` of the space with every candidate block's FFN allocated at ``ffn_max`` and used
   elastically (a path takes a block's first ``ffn_dim`` units, as in once-for-all), instead of ELM's
   PCA-guided FFN growth;
2. trained with left-to-right attention on packed corpus rows, one uniformly sampled path (block,
   sharing, FFN per layer; seeded by (seed, step)) per step, with the loss next-token cross-entropy
   plus KL(teacher || path) on the teacher's next-token distributions (students share its tokenizer);
3. ``EvolutionarySearch`` over (candidate block, FFN) per layer, within the parameter count of the
   documented architecture (the fallback it replaces), scoring a path by minus its next-token
   cross-entropy with the supernet's weights on held-out rows that Table IV's perplexity does not use.

Heads stay at the space's number (ELM's CKA head merging is not run). The folder gets ``arch.json``
(read by ``found_architecture``), the search history and the supernet's training log.

    folder = causal_search(cfg, teacher, tokenizer, train_rows, heldout_rows, "runs/table4_clm-smoke/search")
    arch, source = found_architecture(clm_space(cfg, len(tokenizer)), folder)
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from elmlib.errors import UserError
from elmlib.extensions.causal_lm.config import ClmConfig
from elmlib.extensions.causal_lm.data import row_batches
from elmlib.extensions.causal_lm.students import clm_space, documented_architecture
from elmlib.io.files import write_csv, write_json
from elmlib.model.modeling_elm import run_layers
from elmlib.nas.evolution import EvolutionarySearch, EvolutionSettings
from elmlib.nas.space import CANDIDATES, Architecture, LayerChoice, SearchSpace
from elmlib.nas.supernet import Supernet, candidate_key
from elmlib.train.runtime import derived_seed
from elmlib.train.training import TrainLoop, adamw, cosine_warmup_decay

SOURCE = "causal supernet search"  # how arch.json names where the architecture came from


def causal_logits(net: Supernet, ids: torch.Tensor, arch: Architecture) -> torch.Tensor:
    """Next-token logits (B, T, V) of the path ``arch`` with left-to-right attention (unpadded rows)."""
    x = net.embeddings(ids)
    blocks = [net.block(i, layer.block, layer.sharing) for i, layer in enumerate(arch.layers)]
    settings = [(layer.heads, layer.ffn_dim) for layer in arch.layers]
    return net.mlm_logits(run_layers(x, blocks, settings, None, is_causal=True).last_hidden_state)


def causal_supernet(space: SearchSpace, seed: int) -> Supernet:
    """The space's supernet with every candidate's FFN allocated at ``ffn_max`` (elastic FFNs)."""
    net = Supernet(space, seed=seed)
    net.grow_to({f"{i}/{candidate_key(b, s)}": space.ffn_max for i in range(space.num_layers) for b, s in CANDIDATES})
    return net


def decode(space: SearchSpace, genome) -> Architecture:
    """Genome entry g of a layer -> candidate ``g % 6`` at FFN choice ``g // 6``, all heads."""
    return Architecture(tuple(LayerChoice(*CANDIDATES[g % len(CANDIDATES)],
                                          space.ffn_choices[g // len(CANDIDATES)], space.num_heads) for g in genome))


def train_supernet(net: Supernet, teacher, rows: torch.Tensor, cfg: ClmConfig, folder: Path) -> None:
    """Single-path training, one uniformly sampled (block, sharing, FFN) path per step (see the module
    docstring); resumable ``TrainLoop`` ``search-supernet`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    steps = cfg.search_steps
    if steps * cfg.pretrain_batch_size > len(rows):
        raise UserError(f"search_steps={steps} x batch {cfg.pretrain_batch_size} needs more than the {len(rows)} "
                        f"corpus rows; lower search_steps or use more corpus_documents")
    loop = TrainLoop("search-supernet", folder, modules={"supernet": net},
                     optimizer=adamw([net], cfg.search_lr, cfg.weight_decay), epochs=1, steps_per_epoch=steps,
                     warmup_ratio=cfg.warmup_ratio, checkpoint_every=cfg.checkpoint_every, config_digest=cfg.digest(),
                     progress=False, seed=cfg.seed, schedule=cosine_warmup_decay)
    loop.resume()
    net.train()
    choices = len(CANDIDATES) * len(net.space.ffn_choices)

    def step(batch, index):
        rng = random.Random(derived_seed(cfg.seed, index))  # per step: resumes sample the same paths
        arch = decode(net.space, [rng.randrange(choices) for _ in range(net.space.num_layers)])
        logits = causal_logits(net, batch, arch)[:, :-1].float()
        with torch.no_grad():
            teacher_logp = teacher(batch).logits[:, :-1].float().log_softmax(-1)
        ce = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        kd = F.kl_div(logits.log_softmax(-1).flatten(0, 1), teacher_logp.flatten(0, 1), log_target=True,
                      reduction="batchmean")
        (ce + kd).backward()
        return {"loss": ce + kd, "ce": ce, "kd": kd}
    loop.run(lambda epoch: row_batches(rows, cfg.pretrain_batch_size, cfg.seed + 2, epoch), step)


@torch.no_grad()
def path_loss(net: Supernet, rows: torch.Tensor, arch: Architecture, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy of the path ``arch`` on ``rows`` (lower is better)."""
    net.eval()
    total, count = 0.0, 0
    for b in range(0, len(rows), batch_size):
        x = rows[b:b + batch_size]
        logits = causal_logits(net, x, arch)[:, :-1].float()
        total += float(F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="sum"))
        count += x[:, 1:].numel()
    return total / count


def causal_search(cfg: ClmConfig, teacher, tokenizer, train_rows: torch.Tensor, heldout_rows: torch.Tensor,
                  folder: str | Path) -> Path:
    """Train the causal supernet, run the evolution and write ``arch.json`` into ``folder``; returns
    ``folder``. Done once per settings: an ``arch.json`` of the same ``cfg.digest()`` is kept."""
    folder = Path(folder)
    done = folder / "arch.json"
    if done.exists() and json.loads(done.read_text()).get("digest") == cfg.digest():
        return folder
    score_rows = heldout_rows[cfg.eval_text_rows:cfg.eval_text_rows + cfg.search_eval_rows]
    if len(score_rows) < cfg.search_eval_rows:
        raise UserError(f"search_eval_rows={cfg.search_eval_rows} needs {cfg.eval_text_rows + cfg.search_eval_rows} "
                        f"held-out rows, there are {len(heldout_rows)}; lower it or eval_text_rows")
    space = clm_space(cfg, len(tokenizer))
    net = causal_supernet(space, cfg.seed)
    train_supernet(net, teacher, train_rows, cfg, folder)
    budget = space.num_params(documented_architecture(space))
    evolution = EvolutionarySearch(
        num_layers=space.num_layers, num_choices=len(CANDIDATES) * len(space.ffn_choices),
        decode=lambda g: decode(space, g), params=space.num_params, budget=budget,
        score=lambda arch: -path_loss(net, score_rows, arch, cfg.eval_batch_size), seed=cfg.seed,
        settings=EvolutionSettings(population=cfg.search_population, generations=cfg.search_generations,
                                   parents=max(2, cfg.search_population // 4)))
    history = evolution.run()
    best = evolution.best()
    write_csv(pd.DataFrame([dict(generation=e.generation, params=e.params, held_out_ce=-e.score,
                                 arch=e.arch.to_json()) for e in history]), folder / "search.csv")
    write_json({**best.arch.to_dict(), "params": best.params, "held_out_ce": -best.score, "budget": budget,
                "evaluated": len(evolution.evaluated), "digest": cfg.digest(),
                "source": f"{SOURCE} ({cfg.scale}: {cfg.search_steps} supernet steps, population "
                          f"{cfg.search_population} x {cfg.search_generations} generations)"}, done)
    return folder
