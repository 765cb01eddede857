"""The paper's experiments as run folders: the main search per scale and seed, the four ablations
(Tables V-VIII), the same-budget baselines of Tables I/II and the found models of Fig. 5.

Every notebook calls these; each call is cached by its run folder (``run_search`` skips finished
stages), so the first notebook that needs a run pays for it and the others only read it. Layout:
``<root>/<scale>-seed<k>/{main, ablation-<name>, budget-<model>}`` with ``root`` (a notebook's
``run_dir`` parameter) ``runs/`` of the workspace by default; ``precision="bf16"`` (a notebook's
``precision`` parameter) trains every run under bf16 autocast. Both are arguments of every driver:
nothing here reads the environment (``make`` and the ``runs`` command turn ``$ELMLIB_RUNS`` and
``$ELMLIB_PRECISION`` into these arguments).

    run = main_run("smoke", seed=0)                     # Algorithm 2 end to end -> run folder
    ablation_run("kd", "smoke", seed=0)                 # same, with classical KD (Table VII)
    baselines("smoke", seed=0)                          # found vs all-BERT / all-MobileBERT at equal budget
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import torch

from elmlib.data.sources import hub_offline, hub_reachable
from elmlib.data.tasks import get_task
from elmlib.data.tokenization import load_tokenizer, tokenize_task
from elmlib.extensions.squad import finetune_squad, squad_settings
from elmlib.io.files import figures_dir, results_dir, workspace, write_csv
from elmlib.nas.analysis import centroid_cosine
from elmlib.nas.objective import TaskBatches, subset
from elmlib.nas.space import Architecture, SearchSpace
from elmlib.pipeline.config import SearchConfig, resolve_config
from elmlib.pipeline.context import load_supernet, saved_head, student_space
from elmlib.pipeline.preflight import STAGES, active_stages
from elmlib.pipeline.retrain import retrain_architecture
from elmlib.pipeline.run import SearchRun, run_search
from elmlib.repro.records import stage_seconds
from elmlib.repro.stage_sharing import first_stage_files, share_stages, share_supernet

# Tables V-VIII: the setting each ablation switches off.
ABLATIONS = {
    "dynamic_ffn": {"dynamic_ffn": False},      # V: every FFN fixed at the hidden size
    "head_search": {"head_search": False},      # VI: no CKA head merging
    "kd": {"kd": "classical"},                  # VII: KL + MSE instead of relational KD
    "sharing": {"candidates": "no_sharing"},    # VIII: 2 blocks per layer, growth K/3
}
# The stages whose cost the appendix compares: the search itself, retraining the found model excluded.
SEARCH_STAGES = STAGES[:4]
# Ablations that change nothing before the heads stage reuse the main run's first three stages.
_SHARES_FIRST_STAGES = {"head_search"}
# Fig. 5 / Table I models per scale: name -> budget (None = the scale's own budget).
MODELS = {
    "smoke": {"ELM-Smoke": None},
    "micro": {"ELM-Micro": None},
    "small": {"ELM-Small": 15.7e6, "ELM-Tiny": 10e6, "ELM-Micro": 5e6},
    "paper": {"ELM-Small": 15.7e6, "ELM-Tiny": 10e6, "ELM-Micro": 5e6},
}


def runs_root(root: str | os.PathLike | None = None) -> Path:
    """Where run folders live: ``root``, else ``runs/`` of the repository (of the working directory when
    run outside it)."""
    return Path(root or workspace() / "runs")


def run_path(scale: str, seed: int, name: str = "main", root: str | os.PathLike | None = None) -> Path:
    return runs_root(root) / f"{scale}-seed{seed}" / name


def seeds_of(seed: int, n_seeds: int) -> list[int]:
    """The seeds a multi-seed notebook runs: seed, seed+1, ..., seed+n_seeds-1."""
    if int(n_seeds) < 1:
        raise ValueError(f"n_seeds={n_seeds!r} is not allowed; expected an integer >= 1")
    return list(range(int(seed), int(seed) + int(n_seeds)))


def config(scale: str, seed: int = 0, task: str = "boolq", budget: float | None = None,
           precision: str | None = None, **overrides) -> SearchConfig:
    """The settings of one experiment. ``precision`` ("fp32" or "bf16"; None or "" keeps the scale's)
    is the training precision of the run folder, which its config.json and provenance record."""
    return resolve_config(scale, task, budget, {"seed": seed, **({"precision": precision} if precision else {}),
                                                **overrides})


def _finished(cfg: SearchConfig, run_dir: Path, stages) -> bool:
    """Whether ``run_dir`` is ``cfg``'s run with every stage in ``stages`` done: then it is only read, and
    takes no lock (jobs that read the main run go on while its baselines retrain under its lock)."""
    path = Path(run_dir) / "config.json"
    try:
        same = json.loads(path.read_text()) == cfg.to_dict()
    except (OSError, ValueError):
        return False
    return same and all((Path(run_dir) / f"{stage}.done.json").exists() for stage in active_stages(cfg, stages))


def _run(cfg: SearchConfig, run_dir: Path, stages=STAGES) -> Path:
    if _finished(cfg, run_dir, stages):
        return Path(run_dir)
    # Fine-tune (or load from cache) the task teacher first, so no stage's recorded time includes it.
    run = SearchRun(cfg, run_dir, progress=False)
    try:
        run.task_teacher()
    finally:
        run.close()
    return run_search(cfg, run_dir, progress=False, stages=stages)


def main_run(scale: str, seed: int = 0, task: str = "boolq", root=None, stages=STAGES, precision=None) -> Path:
    """Algorithm 2 end to end at the scale's budget; returns the run folder. ``stages=SEARCH_STAGES``
    stops before retraining (the search-cost notebook needs no retrained model)."""
    return _run(config(scale, seed, task, precision=precision), run_path(scale, seed, "main", root), stages)


def model_run(model: str, scale: str, seed: int = 0, task: str = "boolq", root=None, precision=None) -> Path:
    """The search for one of the scale's named budgets (Fig. 5); the scale's own budget is the main run."""
    if model not in MODELS[scale]:
        raise ValueError(f"model={model!r} is not allowed at scale={scale!r}; expected one of {tuple(MODELS[scale])}")
    budget = MODELS[scale][model]
    if budget is None or budget == config(scale).budget:
        return main_run(scale, seed, task, root, precision=precision)
    return _run(config(scale, seed, task, budget, precision=precision), run_path(scale, seed, f"budget-{model}", root))


def ablation_run(name: str, scale: str, seed: int = 0, task: str = "boolq", root=None, stages=STAGES,
                 precision=None) -> Path:
    """The search with one component switched off (Tables V-VIII). The head-search ablation differs
    from the main run only from the heads stage on, so it copies the main run's first three stages
    (recorded in ``shared_from.json``) instead of recomputing identical results. ``stages`` as in
    `main_run`."""
    if name not in ABLATIONS:
        raise ValueError(f"ablation={name!r} is not allowed; expected one of {tuple(ABLATIONS)}")
    cfg = config(scale, seed, task, precision=precision, **ABLATIONS[name])
    folder = run_path(scale, seed, f"ablation-{name}", root)
    if name in _SHARES_FIRST_STAGES and not (folder / "search.done.json").exists():
        main = main_run(scale, seed, task, root, precision=precision)
        share_stages(cfg, main, folder, first_stage_files(main), STAGES[:3])
    return _run(cfg, folder, stages)


SEARCH_MODES = ("supernet", "proxy_assisted", "proxy_only")


def search_mode_run(mode: str, scale: str, seed: int = 0, task: str = "boolq", root=None, precision=None) -> Path:
    """The search-mode comparison (beyond the paper): supernet-only search (the main run),
    proxy-assisted search (the proxy ranks proposals, the supernet evaluates the best quarter; reuses
    the main run's trained supernet, recorded in ``shared_from.json``) and proxy-only search (no
    supernet training at all)."""
    if mode not in SEARCH_MODES:
        raise ValueError(f"mode={mode!r} is not allowed; expected one of {SEARCH_MODES}")
    if mode == "supernet":
        return main_run(scale, seed, task, root, precision=precision)
    folder = run_path(scale, seed, f"search-{mode}", root)
    cfg = config(scale, seed, task, precision=precision, search_mode=mode)
    if mode == "proxy_assisted" and not (folder / "finetune.done.json").exists():
        share_supernet(cfg, main_run(scale, seed, task, root, precision=precision), folder)
    return _run(cfg, folder)


def search_modes(scale: str, seed: int = 0, task: str = "boolq", root=None, precision=None) -> pd.DataFrame:
    """Wall time of the search (supernet training it needs + evolution) and the found model's dev
    metric, per search mode; one row per (mode, metric)."""
    rows = []
    for mode in SEARCH_MODES:
        run = search_mode_run(mode, scale, seed, task, root, precision)
        seconds = stage_seconds(run)
        if mode == "proxy_assisted" and (run / "shared_from.json").exists():  # paid by the main run
            paid = stage_seconds(main_run(scale, seed, task, root, precision=precision))
            seconds.update({k: v for k, v in paid.items() if k in STAGES[:2]})
        searched = json.loads((run / "arch_searched.json").read_text())
        for _, m in pd.read_csv(run / "final_metrics.csv").iterrows():
            rows.append(dict(mode=mode, search_seconds=sum(seconds.get(k, 0.0) for k in STAGES[:3]),
                             supernet_seconds=sum(seconds.get(k, 0.0) for k in STAGES[:2]),
                             evolution_seconds=seconds.get("search", 0.0),
                             evaluations=searched.get("evaluated"), proxy_ranked=searched.get("proxy_ranked"),
                             params=m.params, metric=m.metric, value=m.value, n_dev=m.get("n_dev"), task=task,
                             scale=scale, seed=seed))
    return pd.DataFrame(rows)


# Importance reordering where ELM extracts narrower FFNs (beyond the paper). The search may pick each
# block's FFN up to two steps below its grown size; with importance the units are sorted so the prefix
# is the best.
IMPORTANCE_VARIANTS = {
    "grown widths": {},                                             # the main run: ELM as published
    "elastic widths": {"elastic_widths": 3},                         # prefixes of unsorted units
    "elastic widths + importance": {"elastic_widths": 3, "importance": True},
}


def importance_run(variant: str, scale: str, seed: int = 0, task: str = "boolq", root=None, precision=None) -> Path:
    """One of ``IMPORTANCE_VARIANTS``. Elastic widths without importance change nothing before the
    search, so that run copies the main run's trained supernet (recorded in ``shared_from.json``)."""
    if variant not in IMPORTANCE_VARIANTS:
        raise ValueError(f"variant={variant!r} is not allowed; expected one of {tuple(IMPORTANCE_VARIANTS)}")
    overrides = IMPORTANCE_VARIANTS[variant]
    if not overrides:
        return main_run(scale, seed, task, root, precision=precision)
    folder = run_path(scale, seed, "importance-" + variant.replace(" + ", "-").replace(" ", "-"), root)
    cfg = config(scale, seed, task, precision=precision, **overrides)
    if not overrides.get("importance") and not (folder / "finetune.done.json").exists():
        share_supernet(cfg, main_run(scale, seed, task, root, precision=precision), folder)
    return _run(cfg, folder)


def importance_variants(scale: str, seed: int = 0, task: str = "boolq", root=None, precision=None) -> pd.DataFrame:
    """Final dev metric, parameters and the searched FFN widths per importance variant."""
    frames = []
    for variant in IMPORTANCE_VARIANTS:
        run = importance_run(variant, scale, seed, task, root, precision)
        searched = json.loads((run / "arch_searched.json").read_text())
        frames.append(pd.read_csv(run / "final_metrics.csv").assign(
            variant=variant, search_score=searched["score"],
            mean_ffn_dim=sum(l["ffn_dim"] for l in searched["layers"]) / len(searched["layers"])))
    return pd.concat(frames, ignore_index=True)


def largest_uniform(space: SearchSpace, budget: float, block: str, sharing: str = "none") -> Architecture:
    """The hand-designed baseline: every layer the same block with the largest FFN dim within budget."""
    fits = [f for f in space.ffn_choices
            if space.num_params(Architecture.uniform(space.num_layers, block, sharing, f, space.num_heads)) <= budget]
    if not fits:
        raise ValueError(f"no uniform {block}/{sharing} architecture of the {space.name!r} space fits "
                         f"budget={budget:,.0f}")
    return Architecture.uniform(space.num_layers, block, sharing, max(fits), space.num_heads)


def baseline_archs(cfg: SearchConfig) -> dict[str, Architecture]:
    """All-BERT and all-MobileBERT uniform paths of the budget. A uniform path without sharing may not
    fit (12 BERT layers of width 528 exceed 15.7M; 4 of width 64 exceed the smoke budget): then the
    Q=V variant (fewer weights), and a block type none of whose uniform paths fits is left out."""
    space, out = cfg.search_space(), {}
    for block, name in (("bert", "all-BERT"), ("mobilebert", "all-MobileBERT")):
        for sharing in ("none", "qv"):
            try:
                out[name + ("" if sharing == "none" else " (Q=V)")] = largest_uniform(space, cfg.budget, block, sharing)
                break
            except ValueError:
                continue
    return out


SCRATCH = "ELM (found, from scratch)"
INHERITED = "ELM (found, supernet weights inherited; not in the paper)"


def baselines(scale: str, seed: int = 0, task: str = "boolq", root=None, precision=None) -> pd.DataFrame:
    """Tables I/II at our scale: the found model (inheriting supernet weights, which the paper does not
    describe, and from scratch, as the paper retrains and like the baselines) beside the uniform
    baselines of the same budget, all with the same retraining recipe. One row per (model, metric)."""
    run = main_run(scale, seed, task, root, precision=precision)
    cfg = config(scale, seed, task, precision=precision)
    found = Architecture.from_dict({"layers": json.loads((run / "arch.json").read_text())["layers"]})
    # The main run retrains as its config says (from scratch, as the paper, unless inherit_weights=true);
    # the other way is retrained beside it, so the table always has both.
    mine, other, name = ((INHERITED, SCRATCH, "found-scratch") if cfg.inherit_weights
                         else (SCRATCH, INHERITED, "found-inherited"))
    tables = {mine: pd.read_csv(run / "final_metrics.csv"),
              other: retrain_architecture(cfg, found, run, name, inherit=not cfg.inherit_weights, progress=False)}
    for name, arch in baseline_archs(cfg).items():
        tables[name] = retrain_architecture(cfg, arch, run, name, progress=False)
    return pd.concat([t.assign(model=name) for name, t in tables.items()], ignore_index=True)


@torch.no_grad()
def feature_collapse(run_dir: str | os.PathLike, limit: int = 256) -> pd.DataFrame:
    """How much the supernet's sentence features depend on the input, after pretraining and after
    fine-tuning: along the searched architecture, the mean-pooled last-layer features of ``limit`` dev
    rows; ``centroid_cosine`` (analysis.centroid_cosine; near 1 = every input gets the same features)
    and, after fine-tuning, the spread of the task head's logits across inputs (``logit_sd``, the mean
    over outputs of their standard deviation; near 0 = one prediction for every input). Cached in the
    run folder as ``feature_collapse-<limit>.csv``, so a notebook re-renders it
    without the supernet checkpoints (which run records do not keep)."""
    run_dir = Path(run_dir)
    cached = run_dir / f"feature_collapse-{int(limit)}.csv"
    if cached.exists():
        return pd.read_csv(cached)
    searched = run_dir / "arch_searched.json"
    if not searched.exists():
        raise FileNotFoundError(f"run_dir={str(run_dir)!r} has no arch_searched.json; expected a run folder "
                                "whose search stage finished")
    if not any((run_dir / name).exists() for name in ("supernet_pretrain.pt", "supernet_finetune.pt")):
        raise FileNotFoundError(f"run_dir={str(run_dir)!r} has neither supernet_pretrain.pt nor "
                                f"supernet_finetune.pt nor {cached.name}; expected a run folder with its supernets")
    cfg = SearchConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    arch = Architecture.from_dict({"layers": json.loads(searched.read_text())["layers"]})
    tokenizer = load_tokenizer(cfg.tokenizer_source())
    space = student_space(cfg, tokenizer)
    rows = subset(tokenize_task(cfg.task, "dev", tokenizer, cfg.max_length), limit, cfg.seed)
    batches = list(TaskBatches(rows, tokenizer, cfg.eval_batch_size, shuffle=False).epoch())
    out = []
    for stage, name in (("pretrain", "supernet_pretrain.pt"), ("finetune", "supernet_finetune.pt")):
        if not (run_dir / name).exists():
            continue
        net, state = load_supernet(cfg, space, run_dir / name)
        net.eval()
        head = None if state.get("head") is None else saved_head(cfg, space, net, state, get_task(cfg.task).num_labels)
        pooled, logits = [], []
        for b in batches:
            hidden = net(b["input_ids"], arch=arch, attention_mask=b["attention_mask"],
                         token_type_ids=b["token_type_ids"]).last_hidden_state
            mask = b["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled.append((hidden * mask).sum(1) / mask.sum(1))
            if head is not None:
                logits.append(head(hidden, b["attention_mask"]).float())
        out.append(dict(stage=stage, kd=cfg.kd, centroid_cosine=centroid_cosine(torch.cat(pooled)),
                        logit_sd=float(torch.cat(logits).std(0).mean()) if logits else float("nan"),
                        rows=sum(len(b["input_ids"]) for b in batches), task=cfg.task, scale=cfg.scale,
                        seed=cfg.seed))
    table = pd.DataFrame(out)
    write_csv(table, cached)
    return table


def ablations(scale: str, seed: int = 0, task: str = "boolq", root=None, precision=None) -> pd.DataFrame:
    """Tables V-VIII: final metrics with each component (the main run) and without it (one run each)."""
    main = pd.read_csv(main_run(scale, seed, task, root, precision=precision) / "final_metrics.csv")
    frames = []
    for name in ABLATIONS:
        without = pd.read_csv(ablation_run(name, scale, seed, task, root, precision=precision) / "final_metrics.csv")
        frames += [main.assign(ablation=name, variant="with"), without.assign(ablation=name, variant="without")]
    return pd.concat(frames, ignore_index=True)


def squad_status() -> str:
    """"" when SQuAD can be had, else why Table III has no numbers of ours (SQuAD is on the hub only)."""
    if hub_offline() or not hub_reachable():
        return "not run: requires hub data (rajpurkar/squad, rajpurkar/squad_v2), unreachable here"
    return ""


def squad_run(version: str, scale: str, seed: int = 0, task: str = "boolq", root=None, precision=None,
              **overrides) -> dict:
    """Table III: the main run's found encoder (its retrained, pretrained ``retrain_pretrained/``)
    fine-tuned on SQuAD ``version`` at the scale's SQuAD schedule, in ``<main run>/squad-v<version>``."""
    main = main_run(scale, seed, task, root, precision=precision)
    settings = squad_settings(scale, version=version, seed=seed, **overrides)
    return finetune_squad(main / "retrain_pretrained", main / f"squad-v{version}", settings)


def squad_scores(scale: str, seed: int = 0, task: str = "boolq", root=None, precision=None) -> tuple[dict, str]:
    """({(task, metric): value} for SQuAD v1.1 and v2.0, status) for `figures.squad.table3_table`; offline the
    dict is empty and the status says why."""
    status = squad_status()
    if status:
        return {}, status
    ours = {}
    for version, name in (("1.1", "squad"), ("2.0", "squad_v2")):
        metrics = squad_run(version, scale, seed, task, root, precision)
        ours.update({(name, m): metrics[m] for m in ("exact_match", "f1")})
    return ours, f"measured: {scale} found encoder fine-tuned on SQuAD without KD (elmlib.extensions.squad)"


def output_dirs(out_dir: str | os.PathLike | None = None, scale: str = "smoke",
                results: str | os.PathLike | None = None,
                figures: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(results, figures) folders: ``results`` and ``figures`` where given; else ``<out_dir>/results`` and
    ``<out_dir>/figures``; else ``results/`` and ``figures/`` of the workspace with a ``<scale>/`` subfolder
    for every scale but smoke, so the scales' tables live side by side."""
    if out_dir:
        default = Path(out_dir) / "results", Path(out_dir) / "figures"
    elif scale == "smoke":
        default = results_dir(), figures_dir()
    else:
        default = results_dir() / scale, figures_dir() / scale
    return Path(results) if results else default[0], Path(figures) if figures else default[1]
