"""Tests that pin the method's choices (paper Sec. III, Algorithms 1-2, Appendix A): each fails on a
plausible bug that still lets the rest of the suite pass.

Growth (Sec. III-B): the K highest scores among eligible blocks grow, in the chosen score form, K // 3
without sharing blocks, never over the cap. Evolution (Alg. 2 step 3): the mutation and crossover
probabilities act as set. KD (Eq. 1) at a temperature. Algorithm 1 at CKA = eta. The presets against
Appendix A. The scores a pipeline run writes against the accumulator.
"""
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import elmlib
from elmlib.pipeline.stages import search as search_stage
from elmlib.nas.analysis import PCAAccumulator, head_number
from elmlib.pipeline.config import SCALES, SearchConfig, resolve_config
from elmlib.nas.evolution import EvolutionarySearch, EvolutionSettings
from elmlib.nas.growth import blocks_per_epoch, grow_ffn, growth_score, select_growth
from elmlib.nas.growth_policy import growth_cap
from elmlib.nas.losses import DistillationLoss, kl_logits
from elmlib.pipeline.context import candidates_of
from elmlib.pipeline.run import SearchRun, run_search
from elmlib.nas.space import CANDIDATES, LayerChoice
from elmlib.train.training import adamw
from helpers import tiny_space

ROOT = Path(__file__).resolve().parents[1]


def _g(seed):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- A. growth score and choice

def test_normalized_score_ranks_a_saturated_narrow_block_above_a_wide_unsaturated_one():
    """Synthetic FFN activations: a 16-wide block using all its units (isotropic) and a 64-wide block
    whose activations span 24 directions. The count favours the wide block (24 > ~16); normalized by
    width the narrow, saturated one comes first (~1 > 0.375)."""
    narrow, wide = PCAAccumulator(), PCAAccumulator()
    narrow.update(torch.randn(4, 64, 16, generator=_g(0)))
    basis = torch.linalg.qr(torch.randn(64, 24, generator=_g(2)))[0]  # 24 orthonormal directions in 64 dims
    wide.update(torch.randn(4, 64, 24, generator=_g(1)) @ basis.T)
    counts, sizes = [narrow.score(0.99), wide.score(0.99)], [16, 64]
    assert counts[1] == 24 and 14 <= counts[0] <= 16
    pick = {form: select_growth([growth_score(n, d, form) for n, d in zip(counts, sizes)], sizes, [1, 1], k=1,
                                step=16, ffn_max=128, params=0, cap=10)
            for form in ("count", "normalized")}
    assert pick == {"count": [1], "normalized": [0]}
    assert growth_score(12, 16, "normalized") == 0.75 and growth_score(12, 16) == 12
    with pytest.raises(ValueError, match=r"pca_score='ratio' is not allowed; expected one of \('count', 'norm"):
        growth_score(12, 16, "ratio")


def test_growth_picks_the_k_highest_scores_among_eligible_blocks():
    """Made-up score rows: blocks at ``ffn_max`` or whose step would pass the cap are skipped and the
    next-best eligible ones take their places; ties go to the earlier row; never more than K."""
    scores = [5, 9, 7, 9, 3, 8, 6]
    sizes = [16, 16, 128, 16, 16, 16, 16]   # block 2 is at ffn_max: cannot grow
    costs = [10, 10, 10, 10, 10, 50, 10]     # block 5's step is expensive
    grow = lambda **kw: select_growth(scores, sizes, costs, **{"step": 16, "ffn_max": 128, "params": 1000,  # noqa: E731
                                                               "cap": 1e9, **kw})
    assert grow(k=3) == [1, 3, 5]                          # 9, 9 (tie: earlier first), 8; 7 is at the maximum
    assert grow(k=3, cap=1000 + 20 + 40) == [1, 3, 6]      # 8 would pass the cap: 6 takes its place
    assert grow(k=3, cap=1000 + 15) == [1]                 # only one step fits
    assert grow(k=10) == [1, 3, 5, 6, 0, 4]                # every eligible block, best first
    assert grow(k=0) == [] and grow(k=2, ffn_max=16) == []


def test_growth_never_passes_the_cap_and_fills_k_when_it_can():
    """Random score rows and caps: the chosen steps fit under the cap, no chosen block passes
    ``ffn_max``, and an eligible block is left out only when K are chosen or its step does not fit."""
    gen = _g(0)
    for _ in range(200):
        n = int(torch.randint(1, 30, (), generator=gen))
        scores = torch.randint(0, 20, (n,), generator=gen).tolist()
        sizes = (16 * torch.randint(1, 9, (n,), generator=gen)).tolist()
        costs = torch.randint(1, 50, (n,), generator=gen).tolist()
        k, cap = int(torch.randint(0, 10, (), generator=gen)), 500 + int(torch.randint(0, 300, (), generator=gen))
        chosen = select_growth(scores, sizes, costs, k=k, step=16, ffn_max=128, params=500, cap=cap)
        total = 500 + sum(costs[i] for i in chosen)
        assert total <= cap and len(chosen) <= k and all(sizes[i] + 16 <= 128 for i in chosen)
        ranked = [scores[i] for i in chosen]
        assert ranked == sorted(ranked, reverse=True)
        if len(chosen) < k:  # every eligible block left out would pass the cap
            left = [i for i in range(n) if i not in chosen and sizes[i] + 16 <= 128]
            assert all(total + costs[i] > cap for i in left)


@pytest.mark.parametrize("candidate", CANDIDATES)
def test_a_growth_step_costs_what_the_space_says(candidate):
    """`select_growth` checks the cap with the space's parameter formula; growing a block must add
    exactly that many parameters to the supernet (MobileBERT's stacked FFNs included)."""
    space = tiny_space(mobilebert_num_ffn=2)
    net = elmlib.Supernet(space, seed=0)
    before = net.num_params()
    grow_ffn(net.block(1, *candidate), 16, generator=_g(0))
    cost = space.layer_params(LayerChoice(*candidate, 16, 4)) - space.layer_params(LayerChoice(*candidate, 8, 4))
    assert net.num_params() - before == cost > 0


def test_growth_k_over_3_without_sharing_blocks():
    """Table VIII ablation: 2 blocks per layer instead of 6, growth K/3 (at least one block)."""
    assert [blocks_per_epoch(k, sharing_blocks=False) for k in (21, 10, 4, 2)] == [7, 3, 1, 1]
    assert blocks_per_epoch(21, sharing_blocks=True) == 21


def test_pca_score_setting_keeps_earlier_run_folders():
    """``pca_score=count`` (the value of every run made before the setting) is not in the config or its
    digest: every committed run record's config.json still resolves to itself; ``normalized``, the
    default now, is another config."""
    records = sorted((ROOT / "results").glob("*/run_records/**/config.json"))
    assert records
    for path in records:
        saved = json.loads(path.read_text())
        assert SearchConfig.from_dict(saved).to_dict() == saved, path
    normalized, count = resolve_config("smoke"), resolve_config("smoke", overrides={"pca_score": "count"})
    assert "pca_score" not in count.to_dict() and normalized.to_dict()["pca_score"] == "normalized"
    assert normalized.digest() != count.digest()
    with pytest.raises(ValueError, match=r"setting pca_score='ratio' is not allowed"):
        resolve_config("smoke", overrides={"pca_score": "ratio"})


# --------------------------------------------------------------------------- pipeline: scores and growth

PIPELINE = dict(max_length=32, pretrain_epochs=2, pretrain_steps=1, pretrain_batch_size=8, eval_batch_size=16,
                pca_batches=1, checkpoint_every=100, candidates="no_sharing", growth_k=6, pca_score="normalized",
                pca_threshold=0.9)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Stage 1 of a tiny run without sharing blocks, ranking by the normalized score at threshold 0.9."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ELMLIB_RESULTS", str(tmp_path_factory.mktemp("results")))
    run_dir = tmp_path_factory.mktemp("pretrain")
    cfg = resolve_config("smoke", overrides=PIPELINE)
    run_search(cfg, run_dir, progress=False, stages=("pretrain",))
    mp.undo()
    return cfg, run_dir


@torch.no_grad()
def test_written_pca_scores_are_the_accumulators_count_at_the_configured_threshold(pretrained):
    """Recompute the last epoch's scores: the saved supernet's FFN prefixes at the scored widths are the
    weights that were scored (growth appends units), run as uniform paths on the same held-out batches."""
    from elmlib.data.corpus import mlm_batches

    cfg, run_dir = pretrained
    run = SearchRun(cfg, run_dir, progress=False)
    net, _ = run.load_supernet("supernet_pretrain.pt")
    net.eval()
    batches = list(zip(range(cfg.pca_batches), mlm_batches(run.tokenizer(), cfg.max_length, cfg.eval_batch_size,
                                                            "heldout", cfg.seed, source=cfg.corpus)))
    pca = pd.read_csv(run_dir / "pca_scores.csv")
    last = pca[pca.epoch == cfg.pretrain_epochs - 1]
    assert len(last) == cfg.search_space().num_layers * 2 and last.ffn_dim.nunique() > 1  # growth happened
    counts = {}
    for (b, s), rows in last.groupby(["block_type", "sharing"]):
        rows = rows.sort_values("layer")
        arch = elmlib.Architecture(tuple(LayerChoice(b, s, int(d), net.space.num_heads) for d in rows.ffn_dim))
        accs = [PCAAccumulator() for _ in rows.ffn_dim]
        for _, batch in batches:
            out = net(batch["input_ids"], attention_mask=batch["attention_mask"], arch=arch, output_ffn_hidden=True)
            for acc, act in zip(accs, out.ffn_hidden_states):
                acc.update(act, batch["attention_mask"])
        for layer, acc in zip(rows.layer, accs):
            counts[(b, s, layer)] = (acc.score(0.9), acc.score(0.99))
    written = {(r.block_type, r.sharing, r.layer): r.score for r in last.itertuples()}
    assert written == {key: at_09 for key, (at_09, _) in counts.items()}
    assert any(a != b for a, b in counts.values())  # the threshold matters here, so the check can fail
    assert (pca.normalized == pca.score / pca.ffn_dim).all()


def test_grown_blocks_are_the_top_k_eligible_by_the_chosen_score(pretrained):
    """growth.csv against pca_scores.csv, independently of `select_growth`: per epoch, K // 3 = 2 blocks
    (no sharing blocks), the two highest by the normalized score (ties: lower layer, then block), all
    below ffn_max, and the supernet stays under the default cap (every FFN at the hidden size)."""
    cfg, run_dir = pretrained
    space = cfg.search_space()
    pca, growth = pd.read_csv(run_dir / "pca_scores.csv"), pd.read_csv(run_dir / "growth.csv")
    assert (growth.ranked_by == "normalized").all()
    differs = False
    for epoch, rows in pca.groupby("epoch"):
        eligible = rows[rows.ffn_dim + space.ffn_step <= space.ffn_max]
        want = eligible.sort_values(["normalized", "layer", "block"], ascending=[False, True, True]).head(2)
        got = growth[growth.epoch == epoch]
        assert set(zip(got.layer, got.block)) == set(zip(want.layer, want.block)) and len(got) == 2
        by_count = eligible.sort_values(["score", "layer", "block"], ascending=[False, True, True]).head(2)
        differs |= set(zip(by_count.layer, by_count.block)) != set(zip(want.layer, want.block))
    assert differs  # the two forms chose differently at least once, so the check can fail
    cap = growth_cap(space, candidates_of(cfg))
    assert (growth.supernet_params <= cap).all()


# --------------------------------------------------------------------------- B. evolution probabilities

def _evolution(mutation_prob=0.1, crossover_prob=1.0):
    return EvolutionarySearch(20, 1000, decode=lambda g: g, params=lambda a: 0, budget=1, score=lambda a: 0.0, seed=0,
                              settings=EvolutionSettings(mutation_prob=mutation_prob, crossover_prob=crossover_prob))


@pytest.mark.parametrize("p, low, high", [(0.0, 0.0, 0.0), (0.1, 0.09, 0.11), (1.0, 0.99, 1.0)])
def test_mutation_redraws_each_gene_with_mutation_prob(p, low, high):
    """Per-gene mutation probability (Alg. 2 step 3: 0.1): over 1,000 genomes of 20 genes with 1,000
    choices each, the share of changed genes is p (a redraw repeats the old value 1 time in 1,000)."""
    search, parent = _evolution(mutation_prob=p), tuple(range(20))
    changed = sum(a != b for _ in range(1000) for a, b in zip(search.mutate(parent), parent)) / 20_000
    assert low <= changed <= high


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_crossover_happens_with_crossover_prob_and_mixes_both_parents(p):
    """Crossover probability (Alg. 2 step 3: 1.0): a share p of children mix the parents, gene by gene
    about half from each; the others are the first parent unchanged."""
    search, a, b = _evolution(crossover_prob=p), (0,) * 20, (1,) * 20
    children = [search.crossover(a, b) for _ in range(2000)]
    mixed = [c for c in children if c != a]
    assert abs(len(mixed) / 2000 - p) < 0.04
    if mixed:
        assert abs(sum(map(sum, mixed)) / (20 * len(mixed)) - 0.5) < 0.03


def test_the_search_stage_passes_the_configured_probabilities(tmp_path, monkeypatch):
    """Stage 3 builds its evolution from the config's ``mutation_prob`` and ``crossover_prob`` (not
    swapped, not the defaults); the proxy-only mode reaches that point without any training."""
    seen = []

    def capture(*args, settings, **kwargs):
        seen.append(settings)
        raise InterruptedError

    monkeypatch.setattr(search_stage, "EvolutionarySearch", capture)
    cfg = resolve_config("smoke", overrides={"search_mode": "proxy_only", "mutation_prob": 0.3, "crossover_prob": 0.6,
                                             "population": 5, "generations": 2})
    with pytest.raises(InterruptedError):
        run_search(cfg, tmp_path, progress=False, stages=("search",))
    s = seen[0]
    assert (s.mutation_prob, s.crossover_prob, s.population, s.generations) == (0.3, 0.6, 5, 2)


# --------------------------------------------------------------------------- KD and Algorithm 1

def test_classical_kd_at_a_temperature_is_t2_times_kl_of_the_softened_distributions():
    """Eq. 1 with Hinton's temperature: T^2 * mean over samples of KL(softmax(t/T) || softmax(s/T)),
    written out by hand; the direction (teacher first) and the division by T both matter here."""
    s, t, temp = torch.randn(6, 5, generator=_g(0)), 3 * torch.randn(6, 5, generator=_g(1)), 4.0
    p_t, log_p_s = (t / temp).softmax(-1), (s / temp).log_softmax(-1)
    want = temp ** 2 * (p_t * (p_t.log() - log_p_s)).sum(-1).mean()
    assert torch.allclose(kl_logits(s, t, temperature=temp), want, atol=1e-6)
    kd = DistillationLoss(1, 1, 4, 4, kind="classical", temperature=temp, weights=(1.0, 0.0, 0.0))
    assert torch.allclose(kd(student_logits=s, teacher_logits=t)["logits"], want, atol=1e-6)
    assert not torch.allclose(kl_logits(t, s, temperature=temp), want, atol=1e-3)  # KL is not symmetric here


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_algorithm_1_keeps_a_head_whose_cka_equals_eta(dtype):
    """Strict, as the paper writes Algorithm 1 (ELM.md): "for j in i+1..H: if Q[i,j] > eta:
    removed.add(j)". A CKA exactly at eta keeps the head; the next representable value removes it.
    A removed head removes no others ("if i in removed: continue")."""
    eta = 0.9
    q = torch.eye(12, dtype=dtype)
    q[0, 1] = eta
    assert head_number(q, eta) == 12
    q[0, 1] = torch.nextafter(torch.tensor(eta, dtype=dtype), torch.tensor(1.0, dtype=dtype))
    assert head_number(q, eta) == 11
    q[1, 2] = 0.95  # head 1 is removed, so its likeness to head 2 removes nothing
    assert head_number(q, eta) == 11


# --------------------------------------------------------------------------- presets against Appendix A

# What ELM.md restates from the paper, with where. pca_threshold is W-PCA's (same author): ELM does
# not define its PCA score. Pretraining epochs, parents, dropout, sequence length and the MobileBERT
# inner size of ELM-Micro are not stated and are not here.
PAPER = {
    "cka_eta": (0.9, "Algorithm 1 input: threshold eta = 0.9"),
    "growth_k": (21, "Sec. III-B: K = 21 of the 72 blocks per epoch (ELM-Small space)"),
    "population": (50, "Algorithm 2 step 3: population 50"),
    "generations": (40, "Algorithm 2 step 3: 40 generations"),
    "crossover_prob": (1.0, "Algorithm 2 step 3: crossover probability 1.0"),
    "mutation_prob": (0.1, "Algorithm 2 step 3: mutation probability 0.1"),
    "finetune_epochs": (10, "Appendix A: epochs 10 for all tasks (CoLA 50)"),
    "retrain_finetune_epochs": (10, "Appendix A: epochs 10 for all tasks (CoLA 50)"),
    "pretrain_batch_size": (256, "Appendix A: batch 32 for downstream fine-tuning, 256 otherwise"),
    "finetune_batch_size": (32, "Appendix A: batch 32 for downstream fine-tuning"),
    "pretrain_lr": (1e-4, "Appendix A: 1e-4 both pretraining stages (supernet and retraining share it)"),
    "finetune_lr": (4e-4, "Appendix A: 4e-4 first (supernet) fine-tuning"),
    "retrain_lr": (5e-5, "Appendix A: 5e-5 GLUE"),
    "adam_betas": ((0.9, 0.999), "Appendix A: Adam(0.9, 0.999)"),
    "weight_decay": (0.01, "Appendix A: weight decay 0.01"),
    "warmup_ratio": (0.1, "Appendix A: linear decay with 10% warm-up"),
    "budget": (15.7e6, "Appendix A: parameter ceiling 15.7M (ELM-Small)"),
    "num_layers": (12, "Search space: 12 layers"),
    "hidden_size": (528, "Appendix A: hidden size 528"),
    "num_heads": (12, "Appendix A: 12 heads at start"),
    "ffn_min": (132, "Appendix A: FFN starts at 132 (hidden/4)"),
    "ffn_step": (132, "Appendix A: grows in steps of 132"),
    "ffn_max": (1056, "Appendix A: up to 1056 (2 x hidden)"),
    "inner_size": (132, "Appendix A: MobileBERT inner size 132"),
    "pca_threshold": (0.99, "W-PCA, not ELM: components for 99% of the variance"),
}
# ELM-Micro: hidden 192, 6 layers, 5M; 12 heads ("12 heads over 192 dims gives only 16 per head").
# K, the FFN range and the inner size of its space are not stated.
MICRO = {**{k: v for k, v in PAPER.items() if k not in ("growth_k", "ffn_min", "ffn_step", "ffn_max", "inner_size")},
         "budget": (5e6, "Appendix A: 5M (ELM-Micro)"), "hidden_size": (192, "ELM-Micro: hidden 192"),
         "num_layers": (6, "ELM-Micro: 6 layers")}
TINY_BUDGET = {**PAPER, "budget": (10e6, "Appendix A: 10M (ELM-Tiny)")}
SCALED = {"population", "generations", "finetune_epochs", "retrain_finetune_epochs", "pretrain_batch_size",
          "pretrain_lr", "retrain_lr"}  # shorter schedules, smaller searches, learning rates raised to match
# preset (scale, budget) -> (the paper's values it claims, the settings it departs from on purpose)
PRESETS = {
    ("paper", None): (PAPER, set()),
    ("paper", "10M"): (TINY_BUDGET, set()),
    ("paper", "5M"): (MICRO, set()),
    ("small", None): (PAPER, SCALED),
    ("micro", None): (MICRO, SCALED),
    ("smoke", None): (PAPER, SCALED - {"pretrain_lr", "retrain_lr"} | {  # toy widths, paper learning rates
        "finetune_batch_size", "budget", "num_layers", "hidden_size", "num_heads", "ffn_min", "ffn_step", "ffn_max",
        "inner_size", "growth_k"}),
}


@pytest.mark.parametrize("scale, budget", PRESETS)
def test_presets_hold_the_papers_values_except_declared_departures(scale, budget):
    """Every preset equals the paper (ELM.md's restatement of Appendix A, Sec. III and Algorithms 1-2)
    wherever it does not declare a departure; ``paper`` declares none. A new preset must be listed."""
    assert {s for s, _ in PRESETS} == set(SCALES)
    cfg = resolve_config(scale, budget=budget)
    values = {**vars(cfg.search_space()), **cfg.to_dict(),
              "adam_betas": adamw([torch.nn.Linear(2, 2)], 1e-4, 0.01).defaults["betas"]}
    claims, departs = PRESETS[(scale, budget)]
    differ = {key for key, (value, _) in claims.items() if values[key] != value}
    assert differ == departs, {key: (values[key], claims[key]) for key in differ ^ departs}


def test_paper_preset_fine_tunes_cola_for_50_epochs():
    """Appendix A: "Epochs 10 for all tasks (CoLA 50)"; the searched model's GLUE fine-tuning at least."""
    assert resolve_config("paper", task="cola").retrain_finetune_epochs == 50
    assert resolve_config("paper", task="sst2").retrain_finetune_epochs == 10
    assert resolve_config("paper", task="cola", overrides={"retrain_finetune_epochs": 3}).retrain_finetune_epochs == 3
    assert resolve_config("small", task="cola").retrain_finetune_epochs == resolve_config("small").retrain_finetune_epochs
