"""The claims ledger: one row per claim of the ELM paper, computed from results/<scale>/*.csv only.

Each row states the paper's effect, ours (mean of per-seed differences, paired by seed) with a 95%
t-interval, the minimum detectable effect (MDE) at our n and spread (paired t, 80% power, two-sided 5%)
and a verdict by the rule of docs/results.md ("Claims ledger"), implemented in `verdict`.

    from elmlib.repro.ledger import ledger, markdown
    print(markdown(ledger("results/small", "small")))      # or: python -m elmlib report --ledger --scale small
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from elmlib.io.inputs import read_results_csv
from elmlib.nas.space import SearchSpace
from elmlib.pipeline.config import SCALES
from elmlib.repro import paper
from elmlib.repro.claim_stats import MAX_SEEDS, mde, seeds_needed, t_interval

NAN = math.nan


# ----------------------------------------------------------------------------- the verdict rule
def verdict(paper_effect: float, n: int, low: float, high: float, mde_: float, needed: int | None,
            unit: str = "seeds") -> str:
    """The verdict rule of docs/results.md. The paper's side is the sign of its effect."""
    if n == 0:
        return "not run: no seed has both arms"
    if n < 2:
        return "not resolvable here: one run (n=1), no spread"
    side = math.copysign(1.0, paper_effect)
    if side * low > 0 and side * high > 0:
        return "reproduced"
    if side * low < 0 and side * high < 0:
        return "contradicted"
    if mde_ >= abs(paper_effect):
        if unit != "seeds":  # n counts layers or blocks of one seed: only more seeds can add evidence
            return f"not resolvable here: one seed, {n} {unit} too spread; more seeds needed"
        more = f"about {needed} seeds" if needed else f"over {MAX_SEEDS} seeds"
        return f"not resolvable here: {more} would resolve it at this spread"
    return "no effect found"


# ----------------------------------------------------------------------------- rows
@dataclass
class Row:
    claim: str
    paper: str                  # the paper's value, in words
    paper_effect: float         # the effect the verdict compares against (the paper's, or declared)
    unit: str
    ours: str                   # scale, task or suite, n
    n: int = 0
    effect: float = NAN
    low: float = NAN
    high: float = NAN
    mde: float = NAN
    verdict: str = ""
    digits: int = 1
    n_unit: str = "seeds"       # what n counts: seeds, or the layers or blocks of one seed


def measured(claim, paper_text, paper_effect, unit, ours, d, scale, digits=1, n_unit="seeds") -> Row:
    """A row from the per-unit differences ``d`` (oriented so the paper's side has the paper's sign)."""
    d = np.asarray(d, dtype=float)
    d = d[np.isfinite(d)]
    mean, low, high = t_interval(d)
    sd = float(d.std(ddof=1)) if len(d) > 1 else NAN
    m = mde(len(d), sd)
    v = verdict(paper_effect, len(d), low, high, m, seeds_needed(sd, paper_effect), n_unit)
    if scale == "smoke":
        v = "pipeline check (smoke), not evidence"
    return Row(claim, paper_text, paper_effect, unit, f"{ours}, {_count(len(d), n_unit)}", len(d), mean, low, high,
               m, v, digits, n_unit)


def _count(n: int, unit: str) -> str:
    return f"n={n} {unit[:-1] if n == 1 else unit}"


def not_run(claim, paper_text, reason, paper_effect=NAN, unit="") -> Row:
    return Row(claim, paper_text, paper_effect, unit, "-", verdict=f"not run: {reason}")


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / f"{name}.csv"
    return read_results_csv(path) if path.is_file() else None


def _missing(name: str) -> str:
    return f"no {name}.csv at this scale"


def _by_seed(df: pd.DataFrame, column: str, a, b, values: str = "value") -> pd.Series:
    """Per seed: (rows where column == a) - (rows where column == b), seeds present in both arms only."""
    wide = df.pivot_table(index="seed", columns=column, values=values)
    if not {a, b} <= set(wide.columns):
        return pd.Series(dtype=float)
    wide = wide.dropna(subset=[a, b])
    return wide[a] - wide[b]


# ----------------------------------------------------------------------------- claims
FOUND = "ELM (found, from scratch)"
#: The paper's same-size hand-designed comparator per paper model (Table I, GLUE test): the closest in size.
HAND_DESIGNED = {"ELM-Small": "MobileBERT-tiny", "ELM-Micro": "BERT-tiny"}


def _table1_effect(model: str, task: str) -> tuple[float, str]:
    i = paper.TABLE1_TASKS.index(task)
    other = HAND_DESIGNED[model]
    ours, theirs = paper.TABLE1[model][2][i], paper.TABLE1[other][2][i]
    size = f"{paper.TABLE1[model][0]}M vs {paper.TABLE1[other][0]}M"
    return ours - theirs, f"{ours - theirs:+.1f}: {model} {ours} vs {other} {theirs} ({size}, Table I test {task})"


def claim_table1_2(folder: Path, scale: str) -> list[Row]:
    """Found vs each same-budget baseline: under the paper's protocol (a suite, table1_2_suite.csv) by the
    suite average and, for GLUE, per task; else on the run's one task (table1_2_glue.csv)."""
    claim = "Tables I/II: found beats same-size hand-designed"
    labels = {"AVG": "average", "SST-2": "SST-2, the nearest task to ours"}
    df, model = _read(folder, "table1_2_glue"), paper.paper_model(scale)
    suite = _read(folder, "table1_2_suite")
    if suite is not None:
        return _claim_suite(claim, suite, model, scale)
    if df is None:
        effect, text = _table1_effect(model, "AVG")
        return [not_run(claim, text, _missing("table1_2_glue"), effect, "points")]
    df = df[df.metric == df.metric.iloc[0]]
    task = df.task.iloc[0]
    rows = []
    for base in [m for m in df.model.unique() if not m.startswith("ELM")]:
        for paper_task, label in labels.items():
            effect, text = _table1_effect(model, paper_task)
            rows.append(measured(f"{claim} ({label}; vs {base})", text, effect, "points",
                                 f"{scale}, {task} dev {df.metric.iloc[0]}",
                                 100 * _by_seed(df, "model", FOUND, base), scale))
    return rows


def _claim_suite(claim: str, df: pd.DataFrame, model: str, scale: str) -> list[Row]:
    name, searched = df.suite.iloc[0], df.search_task.iloc[0]
    tasks = ["AVG"] + ([t for t in df.task.unique() if t != "AVG"] if name == "glue" else [])
    glue_names = {"sst2": "SST-2", "qnli": "QNLI", "mrpc": "MRPC", "cola": "CoLA", "stsb": "STS-B",
                  "mnli": "MNLI-m", "rte": "RTE", "qqp": "QQP", "AVG": "AVG"}
    rows = []
    for base in [m for m in df.model.unique() if not m.startswith("ELM")]:
        for task in tasks:
            effect, text = _table1_effect(model, glue_names[task])
            d = df[df.task == task]
            where = f"{scale}, suite {name} ({'average of ' + str(d.n_tasks.max()) + ' tasks' if task == 'AVG' else task}" \
                    f" dev, points; search on {searched})"
            rows.append(measured(f"{claim} ({'suite average' if task == 'AVG' else task}; vs {base})", text, effect,
                                 "points", where, _by_seed(d, "model", FOUND, base), scale))
    return rows


ABLATION_CLAIMS = {"dynamic_ffn": "dynamic FFN dims help", "head_search": "head search helps",
                   "kd": "relational KD beats classical KD", "sharing": "sharing blocks help"}


def claim_ablations(folder: Path, scale: str) -> list[Row]:
    df = _read(folder, "table5_8_ablations")
    model = paper.paper_model(scale)
    rows = []
    for name, entry in paper.ABLATIONS.items():
        with_it, without = entry[model]
        claim = f"Table {entry['table']}: {ABLATION_CLAIMS[name]}"
        text = f"{with_it - without:+.1f}: {model} {with_it} with vs {without} without (GLUE dev avg)"
        if df is None or name not in set(df.ablation):
            reason = _missing("table5_8_ablations") if df is None else f"no {name} rows"
            rows.append(not_run(claim, text, reason, with_it - without, "points"))
            continue
        d = df[(df.ablation == name) & (df.metric == df.metric.iloc[0])]
        rows.append(measured(claim, text, with_it - without, "points", f"{scale}, {d.task.iloc[0]} dev "
                             f"{d.metric.iloc[0]}", 100 * _by_seed(d, "variant", "with", "without"), scale))
    return rows


def claim_search_cost(folder: Path, scale: str) -> list[Row]:
    cost = paper.SEARCH_COST_GPU_DAYS
    claim, effect = "Search cost: dynamic FFN dims are cheaper", cost["fixed"] / cost["dynamic"] - 1
    text = f"{effect:+.3f}: fixed / dynamic = {cost['fixed']} / {cost['dynamic']} GPU-days - 1"
    df = _read(folder, "efficiency")
    if df is None:
        return [not_run(claim, text, _missing("efficiency"), effect, "(fixed / dynamic - 1)")]
    total = df.groupby(["seed", "variant"]).seconds.sum().unstack("variant").dropna()
    return [measured(claim, text, effect, "(fixed / dynamic - 1)", f"{scale}, search stages' seconds",
                     total["fixed"] / total["dynamic"] - 1, scale, digits=3)]


def _pca_units(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """(first-epoch, last-epoch) scores as layer x block tables per seed stacked, and the first-epoch mean."""
    first, last = df[df.epoch == df.epoch.min()], df[df.epoch == df.epoch.max()]
    table = lambda d: d.pivot_table(index=["seed", "layer"], columns="block", values="score")  # noqa: E731
    return table(first), table(last), float(first.score.mean())


def claim_fig2(folder: Path, scale: str) -> list[Row]:
    rise, differ = "Fig. 2: PCA scores rise during training", "Fig. 2: PCA scores differ by layer"
    text = "direction only; declared smallest effect +5% of the first epoch's mean score"
    df = _read(folder, "fig2_pca_curves")
    if df is None:
        return [not_run(c, text, _missing("fig2_pca_curves")) for c in (rise, differ)]
    first, last, base = _pca_units(df)
    growth = 100 * (last.mean(axis=1) - first.mean(axis=1)) / base             # per (seed, layer)
    gap = []                                                                    # per (seed, block)
    for seed, f in first.groupby(level="seed"):
        top, bottom = f.mean(axis=1).idxmax(), f.mean(axis=1).idxmin()          # chosen at the first epoch
        gap.append(100 * (last.loc[top] - last.loc[bottom]) / base)             # tested at the last epoch
    gap = pd.concat(gap, axis=1).T
    one = df.seed.nunique() == 1
    where = f"{scale}, epochs {df.epoch.min()}-{df.epoch.max()}" + (f", seed {df.seed.iloc[0]}" if one else "")
    rise_d = growth if one else growth.groupby(level="seed").mean()
    gap_d = gap.stack() if one else gap.mean(axis=1)
    return [measured(rise, text, 5.0, "% of mean score", where, rise_d, scale, n_unit="layers" if one else "seeds"),
            measured(differ, text + "; top vs bottom layer of the first epoch, at the last", 5.0,
                     "% of mean score", where, gap_d, scale, n_unit="blocks" if one else "seeds")]


def _found_archs(folder: Path) -> pd.DataFrame | None:
    """The found architecture of every seed, one row per (seed, layer), from table1_2_glue.csv."""
    df = _read(folder, "table1_2_glue")
    if df is None:
        return None
    found = df[df.model == FOUND].drop_duplicates("seed")
    return pd.DataFrame([dict(seed=r.seed, layer=i, **layer) for r in found.itertuples()
                         for i, layer in enumerate(json.loads(r.arch)["layers"])])


def _space(scale: str) -> SearchSpace:
    return SearchSpace.preset(SCALES.get(scale, {}).get("space", "small"))


def claim_fig3a(folder: Path, scale: str) -> list[Row]:
    claim = "Fig. 3a: heads are redundant; eta 0.9 merges some"
    text = "direction only; declared smallest effect 1 head merged per layer"
    archs = _found_archs(folder)
    if archs is None:
        return [not_run(claim, text, _missing("table1_2_glue"))]
    merged = (_space(scale).num_heads - archs.heads).groupby(archs.seed).mean()
    return [measured(claim, text, 1.0, "heads per layer", f"{scale}, found model's layers", merged, scale)]


def claim_fig3b(folder: Path, scale: str) -> list[Row]:
    claim = "Figs. 3b/6: relational KD makes a layer's blocks less similar"
    text = "direction only; declared smallest effect 0.01 cosine"
    df = _read(folder, "fig3b_block_similarity")
    if df is None:
        return [not_run(claim, text, _missing("fig3b_block_similarity"))]
    per_seed = df.groupby(["seed", "kd"]).similarity.mean().reset_index()
    d = _by_seed(per_seed, "kd", "classical", "relational", "similarity")
    return [measured(claim, text, 0.01, "cosine", f"{scale}, classical - relational, mean over layers", d, scale,
                     digits=3)]


def claim_fig5(folder: Path, scale: str) -> list[Row]:
    mobile, wide = "Fig. 5: more MobileBERT blocks", "Fig. 5: wider FFNs in the middle layers than in layer 1"
    mobile_text, wide_text = (f"direction only; declared smallest effect 1 {u}" for u in ("layer", "FFN step"))
    archs = _found_archs(folder)
    if archs is None:
        return [not_run(c, t, _missing("table1_2_glue")) for c, t in ((mobile, mobile_text), (wide, wide_text))]
    layers, step = archs.layer.max() + 1, _space(scale).ffn_step
    middle = archs[(archs.layer >= layers // 3) & (archs.layer < layers - layers // 3)]
    d_mobile = (archs.block == "mobilebert").groupby(archs.seed).sum() - layers / 2
    d_wide = (middle.groupby("seed").ffn_dim.mean() - archs[archs.layer == 0].set_index("seed").ffn_dim) / step
    where = f"{scale}, found model ({layers} layers)"
    return [measured(mobile, mobile_text, 1.0, "layers over half", where, d_mobile, scale),
            measured(wide, wide_text, 1.0, f"FFN steps of {step}",
                     f"{where}, middle third - layer 1", d_wide, scale)]


def claim_table3(folder: Path, scale: str) -> list[Row]:
    claim, model = "Table III: SQuAD v1.1/v2.0", paper.paper_model(scale)
    em, f1, em2, f12 = paper.TABLE3[model]
    text = f"{model} EM/F1 {em}/{f1} (v1.1), {em2}/{f12} (v2.0)"
    df = _read(folder, "table3_squad")
    if df is None:
        return [not_run(claim, text, _missing("table3_squad"))]
    ours = df[df.source != "paper"]
    if ours.empty or ours.status.astype(str).str.startswith("not run").all():
        return [not_run(claim, text, "needs the hub (SQuAD)")]
    return [Row(claim, text, NAN, "points", f"{scale}, found model only",
                verdict="not resolvable here: no same-size comparator measured")]


def claim_table4(folder: Path, scale: str) -> list[Row]:
    claim, suites = "Table IV: causal LM transfer (Rouge-L)", ("DollyEval", "SelfInst", "VicunaEval", "S-NI", "UnNI")
    elm, other = (23.0, 13.7, 15.1, 23.8, 28.2), (21.2, 12.4, 15.4, 22.4, 26.5)  # the paper's Table IV
    effect = float(np.mean(elm) - np.mean(other))
    text = f"{effect:+.1f}: ELM-Small vs EfficientBERT++, mean Rouge-L over {len(suites)} suites"
    df = _read(folder, "table4_clm")
    if df is None:
        return [not_run(claim, text, _missing("table4_clm") + "; the paper's suites need the hub", effect, "Rouge-L")]
    if "status" in df and df.status.astype(str).str.startswith("not run").all():
        return [not_run(claim, text, "needs the hub", effect, "Rouge-L")]
    if "elm_found" not in set(df.model):  # the ELM row is the documented fallback: no search gave it
        return [not_run(claim, text, "no searched architecture (the ELM row is the documented fallback)", effect,
                        "Rouge-L")]
    d = df[df.metric == "rouge_l"].groupby(["seed", "model"]).value.mean().reset_index()
    return [measured(claim, text, effect, "Rouge-L", f"{scale}, found - all_mobilebert, "
                     f"{'+'.join(sorted(df[df.metric == 'rouge_l'].dataset.unique()))}",
                     _by_seed(d, "model", "elm_found", "all_mobilebert"), scale)]


CLAIMS = (claim_table1_2, claim_ablations, claim_search_cost, claim_fig2, claim_fig3a, claim_fig3b, claim_fig5,
          claim_table3, claim_table4)


# The claims each notebook's CSVs answer (its closing findings cell prints them).
NOTEBOOK_CLAIMS = {"table1_2_glue": (claim_table1_2,), "table5_8_ablations": (claim_ablations,),
                   "efficiency": (claim_search_cost,), "fig2_pca_curves": (claim_fig2,),
                   "fig3a_cka_heads": (claim_fig3a,), "fig3b_block_similarity": (claim_fig3b,),
                   "fig6_block_similarity_matrix": (claim_fig3b,), "fig5_architectures": (claim_fig5,),
                   "table3_squad": (claim_table3,), "table4_clm": (claim_table4,)}


def findings(notebook: str, results_dir, scale: str) -> str:
    """The ledger rows of ``notebook``'s claims, as the short markdown table (the notebook's last cell)."""
    if notebook not in NOTEBOOK_CLAIMS:
        raise ValueError(f"notebook={notebook!r} answers no claim of the paper; expected one of "
                         f"{', '.join(NOTEBOOK_CLAIMS)}")
    rows = [asdict(r) for claim in NOTEBOOK_CLAIMS[notebook] for r in claim(Path(results_dir), scale)]
    rule = "verdict rule: docs/results.md, \"Claims ledger\""
    return f"**Findings** ({scale} scale; {rule})\n\n" + markdown(pd.DataFrame(rows), short=True, reasons=True)


def ledger(results_dir, scale: str) -> pd.DataFrame:
    """One row per claim, from the CSVs in ``results_dir`` (results/<scale>/; results/ itself for smoke)."""
    folder = Path(results_dir)
    return pd.DataFrame([asdict(r) for claim in CLAIMS for r in claim(folder, scale)])


def infer_scale(folder) -> str:
    """The scale written in the first results CSV of ``folder`` that has a ``scale`` column."""
    for name in ("table1_2_glue", "table5_8_ablations", "fig3b_block_similarity", "efficiency", "fig2_pca_curves"):
        df = _read(Path(folder), name)
        if df is not None and "scale" in df and len(df):
            return str(df.scale.iloc[0])
    raise ValueError(f"{folder} holds no results CSV naming its scale; pass --scale")


def scale_folder(root, scale: str) -> Path:
    """Where a scale's CSVs live: results/ for smoke, results/<scale>/ otherwise."""
    return Path(root) if scale == "smoke" else Path(root) / scale


# ----------------------------------------------------------------------------- markdown
def _num(x: float, digits: int, sign: bool = False) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:{'+' if sign else ''}.{digits}f}"


def _effect(r) -> str:
    if not math.isfinite(r.effect):
        return "-"
    ci = f" [{_num(r.low, r.digits, True)}, {_num(r.high, r.digits, True)}]" if math.isfinite(r.low) else ""
    return f"{_num(r.effect, r.digits, True)}{ci} {r.unit}"


def _short_paper(r) -> str:
    if r.paper.startswith("direction only"):
        return "direction only"
    return f"{_num(r.paper_effect, r.digits, True)} {r.unit}" if math.isfinite(r.paper_effect) else r.paper


def markdown(df: pd.DataFrame, short: bool = False, reasons: bool = False) -> str:
    """The ledger as a markdown table; ``short``: claim, paper, ours (effect, CI, n), verdict (the README's;
    ``reasons`` keeps the verdict's reason, e.g. how many seeds would resolve the claim)."""
    if short:
        lines = ["| claim | paper | ours: effect [95% CI], n | verdict |", "| --- | --- | --- | --- |"]
        for r in df.itertuples():
            ours = "-" if not math.isfinite(r.effect) else f"{_effect(r)}, {_count(r.n, r.n_unit)}"
            lines.append(f"| {r.claim} | {_short_paper(r)} | {ours} | {r.verdict if reasons else r.verdict.split(':')[0]} |")
        return "\n".join(lines)
    lines = ["| claim | paper value | ours (scale, task or suite, n) | effect [95% CI] | MDE (80% power) | verdict |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in df.itertuples():
        mde_ = "-" if not math.isfinite(r.effect) else _num(r.mde, r.digits)
        lines.append(f"| {r.claim} | {r.paper} | {r.ours} | {_effect(r)} | {mde_} | {r.verdict} |")
    return "\n".join(lines)
