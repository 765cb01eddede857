"""Table IV of the paper (Sec. V, causal-LM transfer): train and evaluate every model, the tidy table
and its figure. The method (settings, data, MiniLLM, stages, evaluation) is ``elmlib.extensions.causal_lm``;
notebooks/table4_clm.ipynb runs this driver and docs/causal_lm.md reports the results.

    cfg = resolve_clm_config("smoke", seed=0)
    table = run_table4(cfg, run_dir="runs/table4_clm-smoke")        # resumable; tidy DataFrame
    # the ELM row: a causal supernet search in the run folder (search_dir= a GLUE search run folder instead)
    save(plot_table4(table), "table4_clm", "figures")   # elmlib.repro.figures.extensions; .png + .pdf
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pandas as pd

from elmlib.extensions.causal_lm import (
    ClmConfig, build_student, causal_search, clm_rows, clm_space, distill, evaluate, instruction_examples,
    load_teacher_lm, pretrain, sft, student_architectures, take_per_task,
)
from elmlib.io.files import write_json
from elmlib.train.runtime import count_parameters

# Table IV of the paper: Rouge-L on DollyEval (the only one of its five sets we can load: dolly-15k).
PAPER_TABLE4 = {"elm": {"dolly": 23.0}, "params_elm": 35e6}


def cached_eval(done: Path, cfg: ClmConfig) -> dict | None:
    """A model's saved evaluation when it was made under the same settings (digest), else None."""
    if done.exists() and json.loads(done.read_text()).get("digest") == cfg.digest():
        return json.loads(done.read_text())
    return None


def _instructions(cfg: ClmConfig) -> tuple[list[dict], list[dict]]:
    """(training, held-out) instruction examples: training balanced across tasks (as many BoolQ as XSum
    rows), ``eval_instructions`` held-out rows per task; both shuffled by ``cfg.seed``."""
    train_ex = instruction_examples(cfg.instructions, "train")
    per_task = min(sum(ex["task"] == t for ex in train_ex) for t in {ex["task"] for ex in train_ex})
    train_ex = take_per_task(train_ex, per_task, cfg.seed)
    eval_ex = take_per_task(instruction_examples(cfg.instructions, "heldout"), cfg.eval_instructions, cfg.seed)
    return train_ex, eval_ex


def student_folder(run_dir: str | Path, name: str, arch) -> Path:
    """``<run_dir>/<name>-<8 hex digits of the architecture>``: one folder per architecture, so checkpoints
    of another architecture never load into this one; the trained student is its ``model/``."""
    return Path(run_dir) / f"{name}-{hashlib.sha256(arch.to_json().encode()).hexdigest()[:8]}"


def _train_student(space, arch, folder: Path, teacher, tok, data: dict, cfg: ClmConfig) -> dict:
    """Pretrain, SFT and MiniLLM-distill one fresh student in ``folder``, save it and evaluate it."""
    t0 = time.perf_counter()
    model = build_student(space, arch, tok, cfg.seed)
    pretrain(model, data["train_rows"], cfg, folder)
    sft(model, tok, data["train_ex"], cfg, folder)
    distill(model, teacher, tok, data["train_ex"], data["train_rows"], cfg, folder)
    model.save_pretrained(folder / "model")
    return {**evaluate(model, tok, data["eval_ex"], data["heldout_rows"], cfg), "params": count_parameters(model),
            "digest": cfg.digest(), "seconds": time.perf_counter() - t0}


def run_table4(cfg: ClmConfig, run_dir: str | Path, search_dir: str | Path | None = None,
               progress: bool = True, search: bool = True) -> pd.DataFrame:
    """Train and evaluate every model of Table IV; per-model results are cached in ``run_dir``.

    The ELM row's architecture: ``arch.json`` of ``search_dir``; without one, with ``search`` a causal
    supernet search in ``<run_dir>/causal_search`` (``causal_search``), else the documented fallback.

    Returns the tidy table (model, params, metric, dataset, value, paper_value, scale, seed) with
    ``attrs['wall_time_s']``, ``attrs['architectures']``, ``attrs['samples']`` and ``attrs['search_dir']``."""
    start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(cfg.to_dict(), run_dir / "config.json")
    teacher, tok = load_teacher_lm(cfg.teacher)
    heldout = clm_rows(tok, cfg, "heldout")  # the first eval_text_rows for perplexity, the next ones score paths
    data = dict(train_rows=clm_rows(tok, cfg, "train"), heldout_rows=heldout[:cfg.eval_text_rows])
    data["train_ex"], data["eval_ex"] = _instructions(cfg)
    space = clm_space(cfg, len(tok))
    if search_dir is None and search:
        search_dir = causal_search(cfg, teacher, tok, data["train_rows"], heldout, run_dir / "causal_search")
    results, info = {}, {}
    for name, (arch, source) in student_architectures(cfg, space, search_dir).items():
        folder = student_folder(run_dir, name, arch)
        results[name] = cached_eval(folder / "eval.json", cfg)
        if results[name] is None:
            results[name] = _train_student(space, arch, folder, teacher, tok, data, cfg)
            write_json(results[name], folder / "eval.json")
        if progress:
            print(f"{name}: {results[name]['params'] / 1e6:.2f}M params, ppl {results[name]['perplexity']:.1f}, "
                  f"Rouge-L {results[name]['rouge_l']}", flush=True)
        info[name] = {"source": source, **arch.to_dict()}
    results["teacher"] = cached_eval(run_dir / "teacher" / "eval.json", cfg)
    if results["teacher"] is None:
        results["teacher"] = {**evaluate(teacher, tok, data["eval_ex"], data["heldout_rows"], cfg),
                              "params": count_parameters(teacher), "digest": cfg.digest()}
        write_json(results["teacher"], run_dir / "teacher" / "eval.json")
    info["teacher"] = {"source": cfg.teacher}
    table = table4_frame(results, cfg, {name: i["source"] for name, i in info.items()})
    table.attrs.update(wall_time_s=time.perf_counter() - start, architectures=info,
                       samples={k: v["samples"] for k, v in results.items()},
                       search_dir=None if search_dir is None else str(search_dir))
    return table


FALLBACK = "elm_documented_not_searched"  # Table IV's ELM row when no search run folder gave its architecture


def table_name(model: str, source: str) -> str:
    """A model's name in the tables: ``elm_found`` becomes ``elm_documented_not_searched`` when its
    architecture is the documented fallback, so the row never claims a search that did not run."""
    return FALLBACK if model == "elm_found" and source.startswith("documented fallback") else model


def table4_frame(results: dict, cfg: ClmConfig, sources: dict | None = None) -> pd.DataFrame:
    """One row per (model, metric, dataset); ``arch_source`` says where each architecture came from, and
    the ELM row is named ``elm_documented_not_searched`` when no search produced it (the fallback)."""
    rows, sources = [], sources or {}
    for model, r in results.items():
        source = sources.get(model, "")
        name = table_name(model, source)
        paper_of = PAPER_TABLE4.get(model.replace("elm_found", "elm"), {}) if name != FALLBACK else {}
        for dataset, value in r["rouge_l"].items():
            rows.append(dict(model=name, params=r["params"], metric="rouge_l", dataset=dataset, value=value,
                             paper_value=paper_of.get(dataset), arch_source=source))
        rows.append(dict(model=name, params=r["params"], metric="perplexity", dataset=f"{cfg.corpus}_heldout",
                         value=r["perplexity"], paper_value=None, arch_source=source))
    table = pd.DataFrame(rows)
    table["scale"], table["seed"] = cfg.scale, cfg.seed
    return table
