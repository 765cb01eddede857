"""Fig. 4 of the paper (qualitative chat examples), in the causal-LM setting of Table IV: greedy responses
of the teacher and of every Table IV student to a few fixed held-out instructions, as a tidy table.

The prompts are the first ``per_task`` held-out instructions of every task in Table IV's evaluation
order (a subset of the prompts its Rouge-L is computed on); the students are the ones ``run_table4``
trained and saved in the same run folder, reloaded from their ``model/`` folders.

    table = run_table4(cfg, "runs/table4_clm-smoke")                 # trains and saves the students
    chats = run_fig4(cfg, "runs/table4_clm-smoke")                   # prompt, model, response, ...
    save(plot_fig4(chats), "fig4_chat_examples", "figures")          # elmlib.repro.figures.chat
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from elmlib.errors import UserError
from elmlib.extensions.causal_lm import (
    ClmConfig, clm_space, generate_responses, instruction_examples, load_teacher_lm, prompt_text,
    student_architectures, take_per_task,
)
from elmlib.model.modeling_elm import ElmForCausalLM
from elmlib.repro.table4_clm import cached_eval, student_folder, table_name
from elmlib.train.runtime import count_parameters

COLUMNS = ["prompt_id", "task", "prompt", "reference", "model", "response", "params", "arch_source", "scale",
           "seed"]


def chat_prompts(cfg: ClmConfig, per_task: int = 2) -> list[dict]:
    """The first ``per_task`` held-out instructions of every task, shuffled by ``cfg.seed`` as Table IV's
    evaluation set is (so they are its first prompts of each task)."""
    if per_task < 1:
        raise UserError(f"per_task={per_task!r} is not allowed; expected an integer >= 1")
    return take_per_task(instruction_examples(cfg.instructions, "heldout"), per_task, cfg.seed)


def chat_table(models: dict[str, tuple[object, str]], tokenizer, examples: list[dict], cfg: ClmConfig,
               max_new_tokens: int | None = None) -> pd.DataFrame:
    """One row per (prompt, model): the model's greedy response (``generate_responses``, at most
    ``max_new_tokens`` new tokens, default ``cfg.max_new_tokens``) with the prompt as the models see it
    (input cut to ``cfg.max_input_tokens``), the reference answer and the model's parameter count.

    ``models`` maps a name to (model, where its architecture came from)."""
    gen_cfg = dataclasses.replace(cfg, max_new_tokens=max_new_tokens or cfg.max_new_tokens)
    prompts = [prompt_text(tokenizer, ex, cfg.max_input_tokens) for ex in examples]
    rows = []
    for name, (model, source) in models.items():
        params = count_parameters(model)
        for i, (ex, prompt, response) in enumerate(zip(examples, prompts,
                                                       generate_responses(model, tokenizer, examples, gen_cfg))):
            rows.append(dict(prompt_id=i, task=ex["task"], prompt=prompt, reference=ex["response"], model=name,
                             response=response, params=params, arch_source=source, scale=cfg.scale, seed=cfg.seed))
    return pd.DataFrame(rows, columns=COLUMNS)


def trained_students(cfg: ClmConfig, run_dir: str | Path, tokenizer, search_dir=None,
                     search: bool = True) -> dict[str, tuple]:
    """{table name: (student reloaded from ``run_dir``, where its architecture came from)} for the students
    that ``run_table4(cfg, run_dir, search_dir, search=search)`` trained (without ``search_dir``, with
    ``search``: the architecture of its causal search in ``<run_dir>/causal_search``); a UserError when one
    is missing or was trained under other settings."""
    space = clm_space(cfg, len(tokenizer))
    if search_dir is None and search:
        search_dir = Path(run_dir) / "causal_search"
        if not (search_dir / "arch.json").exists():
            raise UserError(f"no causal search in {search_dir}; run run_table4(cfg, run_dir) first (the Table IV "
                            "notebook does)")
    found = {}
    for name, (arch, source) in student_architectures(cfg, space, search_dir).items():
        folder = student_folder(run_dir, name, arch)
        if cached_eval(folder / "eval.json", cfg) is None or not (folder / "model").is_dir():
            raise UserError(f"no {name} student trained under these settings in {folder}; run run_table4(cfg, "
                            f"run_dir, search_dir) with the same arguments first (the Table IV notebook does)")
        found[table_name(name, source)] = (ElmForCausalLM.from_pretrained(folder / "model").eval(), source)
    return found


def run_fig4(cfg: ClmConfig, run_dir: str | Path, search_dir=None, per_task: int = 2,
             max_new_tokens: int | None = None, teacher=None, search: bool = True) -> pd.DataFrame:
    """Fig. 4's table for the teacher and the students of Table IV's ``run_dir`` (see ``chat_table``);
    ``search_dir`` and ``search`` as given to ``run_table4``.

    ``teacher`` is (model, tokenizer); None loads ``cfg.teacher``."""
    teacher, tokenizer = teacher or load_teacher_lm(cfg.teacher)
    models = {"teacher": (teacher, cfg.teacher), **trained_students(cfg, run_dir, tokenizer, search_dir, search)}
    return chat_table(models, tokenizer, chat_prompts(cfg, per_task), cfg, max_new_tokens)
