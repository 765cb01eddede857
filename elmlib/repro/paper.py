"""The ELM paper's reported numbers as data (Tables I-III, V-VIII, appendix), for "paper beside ours".

Transcribed from the paper (Wang, ICME 2025; restated in the project's paper notes). Nothing here is
computed: these are the values our notebooks print beside what we measure.

    from elmlib.repro import paper
    paper.table("table2").query("model == 'ELM-Small' and task == 'AVG'")   # GLUE dev average, 82.0
    paper.ablation_value("kd", "ELM-Micro", with_it=False)                  # 73.8
"""
from __future__ import annotations

import math

import pandas as pd

NAN = math.nan

# Table I, GLUE test: params (M), A100 latency (ms), then the task scores.
TABLE1_TASKS = ("QNLI", "MRPC", "SST-2", "CoLA", "STS-B", "MNLI-m", "MNLI-mm", "RTE", "QQP", "AVG")
TABLE1 = {
    "BERT-base": (108.9, 274, (90.5, 88.9, 93.5, 52.1, 85.8, 84.6, 83.4, 66.4, 71.2, 79.6)),
    "BERT-tiny": (14.5, 44, (84.8, 83.2, 87.6, 19.5, 77.1, 75.4, 74.9, 62.6, 66.5, 70.2)),
    "TinyBERT-4": (14.5, 45, (87.7, 88.5, 91.2, 27.2, 83.0, 81.8, 80.7, 64.9, 69.6, 75.0)),
    "MobileBERT-tiny": (15.1, 62, (89.5, 87.9, 91.7, 46.7, 80.1, 81.5, 81.6, 65.1, 68.9, 77.0)),
    "EfficientBERT++": (16.0, 65, (90.6, 88.9, 92.3, 42.5, 83.6, 83.0, 82.5, 67.8, 71.2, 78.0)),
    "ELM-Micro": (5.0, 15, (85.6, 86.0, 89.2, 21.5, 81.7, 77.0, 76.3, 66.4, 68.2, 72.4)),
    "ELM-Tiny": (9.7, 26, (88.6, 87.5, 91.5, 30.1, 84.8, 81.1, 80.2, 71.7, 70.7, 76.2)),
    "ELM-Small": (15.6, 48, (90.1, 88.4, 91.8, 38.8, 86.8, 83.2, 82.7, 75.2, 70.7, 78.6)),
}
# Table II, GLUE dev: params (M), then the task scores (AutoBERT-Zero-small reports only the average).
TABLE2_TASKS = ("QNLI", "MRPC", "SST-2", "CoLA", "STS-B", "MNLI-m", "RTE", "QQP", "AVG")
TABLE2 = {
    "EfficientBERT-TINY": (9.4, (89.3, 90.1, 90.1, 39.1, 79.9, 81.7, 63.2, 86.7, 77.5)),
    "EfficientBERT": (15.7, (90.4, 91.5, 91.3, 50.2, 82.5, 83.1, 66.8, 87.3, 80.4)),
    "AutoBERT-Zero-small": (13.0, (NAN,) * 8 + (80.5,)),
    "ELM-Micro": (5.0, (85.8, 87.3, 90.7, 25.9, 81.9, 77.5, 64.2, 86.9, 75.0)),
    "ELM-Tiny": (9.7, (88.9, 89.3, 91.4, 42.4, 83.7, 81.2, 66.4, 87.3, 78.8)),
    "ELM-Small": (15.6, (91.0, 92.3, 92.9, 50.9, 85.1, 83.8, 71.9, 88.4, 82.0)),
}
# Table III, SQuAD dev: (v1.1 EM, F1, v2.0 EM, F1).
TABLE3 = {
    "BERT-base": (80.7, 88.2, 75.7, 78.7),
    "TinyBERT-4": (72.7, 82.1, 68.2, 71.8),
    "EfficientBERT++": (78.3, 86.5, 73.0, 76.1),
    "ELM-Micro": (70.6, 78.2, 64.8, 68.3),
    "ELM-Tiny": (75.2, 84.0, 69.3, 73.0),
    "ELM-Small": (78.5, 86.9, 73.6, 77.1),
}
# Tables V-VIII: GLUE dev average (with the component, without it).
ABLATIONS = {
    "dynamic_ffn": {"table": "V", "ELM-Micro": (75.0, 74.2), "ELM-Small": (82.0, 81.5)},
    "head_search": {"table": "VI", "ELM-Micro": (75.0, 74.2), "ELM-Small": (82.0, 81.7)},
    "kd": {"table": "VII", "ELM-Micro": (75.0, 73.8), "ELM-Small": (82.0, 81.2)},
    "sharing": {"table": "VIII", "ELM-Micro": (75.0, 74.3), "ELM-Small": (82.0, 81.6)},
}
# Appendix: search cost of ELM-Small in GPU-days.
SEARCH_COST_GPU_DAYS = {"dynamic": 7.1, "fixed": 8.5, "EfficientBERT (reproduced)": 9.2}
# Paper model names of the budgets (parameter ceilings, Appendix A).
BUDGETS = {"ELM-Small": 15.7e6, "ELM-Tiny": 10e6, "ELM-Micro": 5e6}


def table(name: str) -> pd.DataFrame:
    """A paper table in long form: model, task, metric, value (+ params_m, latency_ms where reported)."""
    rows = []
    if name == "table1":
        for model, (params, latency, scores) in TABLE1.items():
            rows += [dict(model=model, params_m=params, latency_ms=latency, task=t, metric="test score", value=v)
                     for t, v in zip(TABLE1_TASKS, scores)]
    elif name == "table2":
        for model, (params, scores) in TABLE2.items():
            rows += [dict(model=model, params_m=params, task=t, metric="dev score", value=v)
                     for t, v in zip(TABLE2_TASKS, scores) if not math.isnan(v)]
    elif name == "table3":
        for model, scores in TABLE3.items():
            rows += [dict(model=model, task=task, metric=m, value=v)
                     for (task, m), v in zip((("squad", "exact_match"), ("squad", "f1"),
                                              ("squad_v2", "exact_match"), ("squad_v2", "f1")), scores)]
    elif name == "ablations":
        for ablation, entry in ABLATIONS.items():
            for model in ("ELM-Micro", "ELM-Small"):
                rows += [dict(ablation=ablation, table=entry["table"], model=model, variant=variant,
                              task="GLUE dev AVG", value=v) for variant, v in zip(("with", "without"), entry[model])]
    else:
        raise ValueError(f"table={name!r} is not allowed; expected one of ('table1', 'table2', 'table3', 'ablations')")
    return pd.DataFrame(rows)


def ablation_value(ablation: str, model: str, with_it: bool = True) -> float:
    """The paper's GLUE dev average with (or without) one component, for ELM-Micro or ELM-Small."""
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation={ablation!r} is not allowed; expected one of {tuple(ABLATIONS)}")
    if model not in ("ELM-Micro", "ELM-Small"):
        raise ValueError(f"model={model!r} is not allowed; the ablations report ('ELM-Micro', 'ELM-Small')")
    return ABLATIONS[ablation][model][0 if with_it else 1]


def paper_model(scale: str, budget: float | None = None) -> str:
    """The paper model our run stands in for: the one whose budget is closest to ours at the small and
    paper scales; at the smoke scale (toy widths) the smallest, ELM-Micro."""
    if scale in ("smoke", "micro") or budget is None:
        return "ELM-Micro" if scale in ("smoke", "micro") else "ELM-Small"
    return min(BUDGETS, key=lambda name: abs(BUDGETS[name] - budget))
