"""Settings of the ELM search (paper Algorithm 2 and Appendix A), by scale.

``paper`` holds the paper's hyperparameters; ``small`` and ``smoke`` shrink data, steps and
populations (big_vision's ``runlocal`` idea) so the whole pipeline runs on a laptop CPU. Any
setting can be overridden one by one; errors name the key, the value and what is allowed.

    cfg = resolve_config("smoke", task="boolq", overrides={"kd": "classical"})
    cfg.pretrain_epochs, cfg.budget
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elmlib.data.registry import SUITES
from elmlib.errors import UserError
from elmlib.io import settings
from elmlib.nas.growth import PCA_SCORES
from elmlib.nas.space import SearchSpace
from elmlib.train.training import PRECISIONS


@dataclass(frozen=True)
class SearchConfig:
    scale: str = "paper"
    task: str = "boolq"
    space: str = "small"                  # search-space preset (small / tiny / micro / smoke)
    budget: float = 15.7e6                # parameter ceiling (encoder + embeddings)
    seed: int = 0
    teacher: str = "teacher"              # "teacher" = packaged all-MiniLM-L6-v2; or a folder / hub id
    tokenizer: str = ""                   # "" = the teacher's; a folder or hub id with the teacher's vocabulary
    corpus: str = "offline"               # pretraining corpus: offline, or hub corpora joined by + (elmlib.data.corpus)
    corpus_documents: int = 0             # documents per corpus source; 0 = all offline, 200,000 per hub corpus
    max_length: int = 128
    # The students' vocabulary: 0 = the space's (BERT's 30,522 WordPiece tokens); else at least the tokenizer's
    # size (RoBERTa's BPE: 50,265), its larger embedding table counted against the budget (preflight checks).
    vocab_size: int = 0
    # Tables I/II's protocol: after retraining, fine-tune the found model on every task of a suite (glue,
    # offline; elmlib.data.registry.SUITES), ``task`` being the suite member whose search split the search
    # scores; "" = the run's one task only.
    suite: str = ""
    # --- a data file as the task (task=path/to/data.csv|.tsv|.jsonl|.parquet; elmlib.data.filetask) ---
    text_column: str = "text"
    text_pair_column: str = "text_pair"   # used when the file has it
    label_column: str = "label"
    dev_file: str = ""                    # an official dev file; "" = a seeded, stratified 20% of the file
    split_seed: int = 0                   # seeds that 20% dev split (and the 90/10 train/search split)
    dropout: float = 0.1
    classifier_pooling: str = "cls"       # task head: BERT's [CLS] or the mean over tokens (elmlib.model.modeling_elm)
    # --- supernet and its ablations (Tables V-VIII) ---
    candidates: str = "all"               # "all": 6 blocks per layer; "no_sharing": BERT + MobileBERT only
    dynamic_ffn: bool = True              # PCA-guided growth; False: every FFN fixed at fixed_ffn_dim
    fixed_ffn_dim: int = 0                # 0 = hidden size
    growth_k: int = 21                    # blocks grown per epoch (paper: 21 of 72); /3 without sharing blocks
    growth_limit: float = 0.0             # supernet parameter cap for growth; 0 = all FFNs at hidden size
    growth_init: str = "zero"             # new units' outgoing weights: zero (function-preserving) / normal
    importance: bool = False              # EFTNAS: reorder FFN units by first-order importance (elmlib.nas.importance)
    elastic_widths: int = 1               # FFN widths the search may pick per block: grown size and n-1 steps below
    pca_threshold: float = 0.99           # share of variance (W-PCA)
    pca_score: str = "normalized"         # growth ranks by PCA count / current FFN width, or the raw count (elmlib.nas.growth)
    pca_batches: int = 8
    kd: str = "relational"                # relational (Eqs. 4-5) or classical (Eqs. 1-3)
    kd_logit_weight: float = 1.0
    kd_attn_weight: float = 1.0
    kd_hidden_weight: float = 1.0
    mlm_weight: float = 1.0
    ce_weight: float = 1.0
    # --- stage 1: supernet pretraining ---
    pretrain_epochs: int = 10
    pretrain_steps: int = 0               # steps per epoch; 0 = one pass over the corpus
    pretrain_batch_size: int = 256
    pretrain_lr: float = 1e-4
    # --- stage 2: supernet fine-tuning on the task's 90% split ---
    finetune_epochs: int = 10
    finetune_steps: int = 0
    finetune_batch_size: int = 32
    finetune_lr: float = 4e-4
    train_limit: int = 0                  # rows of train90 used; 0 = all
    # --- task teacher (fine-tuned from `teacher` on train90) ---
    teacher_epochs: int = 3
    teacher_lr: float = 5e-5
    teacher_max_steps: int = 0
    # --- stage 3: evolutionary search on the 10% search split ---
    search_mode: str = "supernet"         # supernet | proxy_assisted (proxy filters proposals) | proxy_only
    proxy_fraction: float = 0.25          # proxy_assisted: share of proposals the supernet evaluates
    population: int = 50
    generations: int = 40
    crossover_prob: float = 1.0
    mutation_prob: float = 0.1
    parents: int = 10
    search_limit: int = 0                 # rows of the search split scored; 0 = all
    # --- stage 4: head search ---
    head_search: bool = True
    cka_eta: float = 0.9
    cka_batches: int = 8
    # --- stage 5: retraining of the found architecture ---
    inherit_weights: bool = False         # True: start from the supernet's weights and task head (not in the paper)
    retrain_pretrain_epochs: int = 10
    retrain_pretrain_steps: int = 0
    retrain_finetune_epochs: int = 10
    retrain_finetune_steps: int = 0
    retrain_lr: float = 5e-5
    dev_limit: int = 0                    # rows of dev evaluated; 0 = all
    # --- mechanics ---
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    checkpoint_every: int = 200           # steps
    eval_batch_size: int = 64
    latency_repeats: int = 50
    device: str = "auto"
    # Training steps under bf16 autocast (matmuls in bfloat16; weights, optimizer state and losses stay
    # float32); its speed on CPUs and GPUs: docs/running.md.
    precision: str = "fp32"

    def __post_init__(self):
        settings.check(self, _CHOICES, _RANGES)

    @classmethod
    def from_dict(cls, saved: dict) -> "SearchConfig":
        """A run folder's config.json: a setting added after the folder was made takes the value that
        reproduces the folder (``_ADDED_LATER``), not today's default."""
        return cls(**{**_ADDED_LATER, **saved})

    def to_dict(self) -> dict:
        """Every setting, except those added after run folders existed while they hold their default:
        a run folder made before a setting existed keeps matching its config (and digest)."""
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if not (k in _ADDED_LATER and v == _ADDED_LATER[k])}

    def digest(self) -> str:
        """Hash of every setting: a run folder belongs to exactly one config."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def tokenizer_source(self) -> str:
        """What the teacher and the students tokenize with: ``tokenizer``, else the teacher's own."""
        return self.tokenizer or self.teacher

    def search_space(self) -> SearchSpace:
        """The ``space`` preset with the students' ``vocab_size`` (when set) and, without dynamic FFNs,
        every FFN starting at ``fixed_ffn_dim``: every model of the run (supernet, retrained, baselines,
        export) and every parameter count (the budget) is built from it."""
        overrides = {"vocab_size": self.vocab_size} if self.vocab_size else {}
        if not self.dynamic_ffn:
            overrides["ffn_init"] = self.fixed_ffn_dim or SearchSpace.preset(self.space).hidden_size
        return SearchSpace.preset(self.space, **overrides)


_CHOICES = {"scale": lambda: tuple(SCALES), "candidates": lambda: ("all", "no_sharing"),
            "kd": lambda: ("relational", "classical"), "growth_init": lambda: ("zero", "normal"),
            "space": SearchSpace.presets, "search_mode": lambda: ("supernet", "proxy_assisted", "proxy_only"),
            "classifier_pooling": lambda: ("cls", "mean"), "precision": lambda: PRECISIONS,
            "pca_score": lambda: PCA_SCORES, "suite": lambda: ("",) + tuple(SUITES)}
_RANGES = (  # (keys, (test, what is allowed))
    (("max_length", "pretrain_epochs", "pretrain_batch_size", "finetune_epochs", "finetune_batch_size",
      "population", "generations", "parents", "pca_batches", "cka_batches", "checkpoint_every", "eval_batch_size",
      "latency_repeats", "teacher_epochs", "elastic_widths", "growth_k", "retrain_pretrain_epochs",
      "retrain_finetune_epochs"), settings.AT_LEAST_1),
    (("seed", "split_seed", "corpus_documents", "fixed_ffn_dim", "pretrain_steps", "finetune_steps", "train_limit", "teacher_max_steps",
      "search_limit", "retrain_pretrain_steps", "retrain_finetune_steps", "dev_limit"), settings.NONNEGATIVE_INT),
    (("vocab_size",), (lambda v: v >= 0, "0 (the space's vocabulary) or the students' vocabulary size, at least "
                                         "the tokenizer's (checked by preflight)")),
    (("budget", "pretrain_lr", "finetune_lr", "teacher_lr", "retrain_lr"), settings.POSITIVE),
    (("growth_limit", "weight_decay", "kd_logit_weight", "kd_attn_weight", "kd_hidden_weight", "mlm_weight",
      "ce_weight"), settings.NONNEGATIVE),
    (("crossover_prob", "mutation_prob", "dropout", "warmup_ratio", "cka_eta", "pca_threshold"), settings.UNIT),
    (("proxy_fraction",), settings.OPEN_UNIT),
)

# Settings introduced after the first run folders, with the value that reproduces those runs (dropped from
# to_dict() when they hold it, so those folders keep their digest; `SearchConfig.from_dict` restores it).
_ADDED_LATER = {"precision": "fp32", "pca_score": "count", "corpus_documents": 0, "text_column": "text",
                "text_pair_column": "text_pair", "label_column": "label", "dev_file": "", "split_seed": 0,
                "suite": "", "tokenizer": "", "vocab_size": 0}

SCALES: dict[str, dict[str, Any]] = {
    # The paper's settings: BERT-base teacher, Wikipedia + BookCorpus, the search on MNLI's 10% and the GLUE
    # suite (hub; offline, preflight names what is missing and the offline substitutes), Appendix A's
    # schedules (the dataclass defaults).
    "paper": dict(teacher="bert-base-uncased", corpus="wikipedia+bookcorpus", task="mnli", suite="glue"),
    # The real spaces, short schedules, subsets (cost: docs/speed.md). As at micro, mean pooling and
    # learning rates raised to match the short schedules (why: docs/departures.md).
    "small": dict(space="small", classifier_pooling="mean", pretrain_epochs=10, pretrain_steps=60,
                  pretrain_lr=5e-4, retrain_lr=5e-4, pretrain_batch_size=32, max_length=128, finetune_epochs=2,
                  finetune_steps=100, finetune_batch_size=32, train_limit=4000,
                  teacher_epochs=1, teacher_max_steps=300, population=20, generations=8, parents=5,
                  search_limit=256, pca_batches=2, cka_batches=4, retrain_pretrain_epochs=2,
                  retrain_pretrain_steps=150, retrain_finetune_epochs=2, retrain_finetune_steps=100,
                  dev_limit=1000, checkpoint_every=50, latency_repeats=20, growth_k=21),
    # The ELM-Micro space (hidden 192, 6 layers, 5M), whose students learn (smoke's 1M budget leaves a
    # 16-wide bottleneck); short schedules with learning rates raised to match, sequences of 64 (sentence
    # tasks such as rotten_tomatoes), and mean pooling in the task head (why: docs/departures.md).
    "micro": dict(space="micro", budget=5e6, max_length=64, classifier_pooling="mean", pretrain_epochs=10, pretrain_steps=12,
                  pretrain_batch_size=32, pretrain_lr=5e-4, finetune_epochs=2, finetune_steps=80,
                  finetune_batch_size=32, train_limit=0, teacher_epochs=1, teacher_max_steps=200, population=12,
                  generations=4, parents=4, search_limit=256, pca_batches=2, cka_batches=4,
                  retrain_pretrain_epochs=1, retrain_pretrain_steps=60, retrain_finetune_epochs=2,
                  retrain_finetune_steps=80, retrain_lr=5e-4, dev_limit=0, checkpoint_every=40, latency_repeats=20,
                  growth_k=10),
    # The whole pipeline at toy widths, in minutes on a CPU.
    "smoke": dict(space="smoke", budget=1.05e6, max_length=64, pretrain_epochs=2, pretrain_steps=12,
                  pretrain_batch_size=16, finetune_epochs=1, finetune_steps=12, finetune_batch_size=16,
                  train_limit=256, teacher_epochs=1, teacher_max_steps=16, population=8, generations=3, parents=3,
                  search_limit=64, pca_batches=2, cka_batches=2, retrain_pretrain_epochs=1,
                  retrain_pretrain_steps=12, retrain_finetune_epochs=1, retrain_finetune_steps=12, dev_limit=128,
                  checkpoint_every=5, latency_repeats=5, growth_k=4, eval_batch_size=32),
}

# Per-task settings of a preset. Appendix A: "Epochs 10 for all tasks (CoLA 50)": the found model's CoLA
# fine-tuning at the paper scale (the paper searches on MNLI, so its supernet is never fine-tuned on CoLA).
_TASK_PRESETS = {("paper", "cola"): {"retrain_finetune_epochs": 50}}

_BUDGET_SPACE = ((5.5e6, "micro"), (11e6, "tiny"))  # budgets up to these use these spaces


def task_config(cfg: SearchConfig, task: str) -> SearchConfig:
    """``cfg`` as a run on ``task`` alone (a suite member): the task, and the preset's per-task settings
    of that task (CoLA's 50 epochs at the paper scale) in place of those of ``cfg.task``."""
    base = SCALES.get(cfg.scale, {})
    values: dict[str, Any] = {"task": task, "suite": ""}
    for (scale, name), presets in _TASK_PRESETS.items():
        if scale == cfg.scale and name == cfg.task:  # undo the search task's own per-task settings
            values.update({k: base.get(k, SearchConfig.__dataclass_fields__[k].default) for k in presets})
    values.update(_TASK_PRESETS.get((cfg.scale, task), {}))
    return dataclasses.replace(cfg, **values)


def parse_budget(value: str | float | int) -> float:
    """'15.7M', '500K', '5e6' or a number -> parameters."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().upper()
    scale = {"K": 1e3, "M": 1e6, "B": 1e9}.get(text[-1:], 1.0)
    try:
        return float(text[:-1] if scale != 1.0 else text) * scale
    except ValueError:
        raise UserError(f"budget={value!r} is not allowed; expected a number of parameters like 15.7M or 5e6")


def resolve_config(scale: str = "smoke", task: str | None = None, budget: str | float | None = None,
                   overrides: dict | None = None, config_file: str | Path | None = None) -> SearchConfig:
    """Scale preset (with its per-task settings), then a JSON config file, then explicit overrides
    (later wins)."""
    values: dict[str, Any] = settings.preset(scale, SCALES)
    explicit = {**(read_config_file(config_file) if config_file else {}), **(overrides or {})}
    values.update(explicit)
    if task is not None:
        values["task"] = task
    for key, value in _TASK_PRESETS.get((scale, values.get("task", "boolq")), {}).items():
        if key not in explicit:  # a setting from the file or --set wins
            values[key] = value
    if budget is not None:
        values["budget"] = budget
        if scale != "smoke" and "space" not in (overrides or {}):  # the paper's space for the budget
            b = parse_budget(budget)
            values["space"] = next((name for limit, name in _BUDGET_SPACE if b <= limit), "small")
    return settings.build(SearchConfig, values, {"budget": parse_budget})


def read_config_file(path: str | Path) -> dict:
    """A JSON object of settings; a missing or malformed file is one line naming it (and the line)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise UserError(f"config file {path} cannot be read ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"config file {path}: not valid JSON at line {err.lineno} ({err.msg})") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} holds a {type(data).__name__}; expected a JSON object of settings")
    return data


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """['a=1', 'b=x'] -> {'a': '1', 'b': 'x'}."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--set {pair!r} is not allowed; expected key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out
