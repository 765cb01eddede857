"""Settings of the causal-LM transfer (paper Sec. V, Table IV): one frozen dataclass, scale presets,
validated by ``elmlib.io.settings`` (errors name the key, the value and what is allowed).

``paper`` holds the paper's hyperparameters (pretraining batch 64, 3 epochs, cosine from 5e-4, AdamW
weight decay 0.1); ``small``, ``micro`` and ``smoke`` shorten the schedules and subsets. ``digest()`` names
the settings in every checkpoint and cached evaluation.

    cfg = resolve_clm_config("smoke", seed=0, overrides={"distill_steps": 8})
    cfg.digest()                                     # 16 hex digits
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from elmlib.io import settings
from elmlib.nas.space import SearchSpace


@dataclass(frozen=True)
class ClmConfig:
    scale: str = "paper"
    seed: int = 0
    space: str = "small"                  # search-space preset of the students' widths
    teacher: str = "smollm2"              # packaged SmolLM2-135M-Instruct, or a hub id / folder
    corpus: str = "offline"               # offline | slimpajama (streamed)
    corpus_documents: int = 0             # 0 = all (offline); the streamed count online
    instructions: str = "offline"         # offline (XSum + BoolQ) | dolly
    max_position_embeddings: int = 1024
    # --- pretraining (paper: batch 64, 3 epochs, cosine from 5e-4, AdamW wd 0.1) ---
    max_length: int = 512
    pretrain_epochs: int = 3
    pretrain_steps: int = 0               # steps per epoch; 0 = one pass over the rows
    pretrain_batch_size: int = 64
    pretrain_lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_ratio: float = 0.01
    # --- SFT initialisation and MiniLLM distillation ---
    sft_steps: int = 1000
    sft_lr: float = 1e-4
    distill_steps: int = 2000
    distill_lr: float = 2e-5
    distill_batch_size: int = 8
    pt_weight: float = 1.0                # MiniLLM's L_PT on the corpus
    long_term_weight: float = 1.0         # MiniLLM's long-term (policy-gradient) term
    temperature: float = 1.0
    max_input_tokens: int = 384           # instruction inputs (articles, passages) are cut to this
    max_new_tokens: int = 64
    # --- causal-setting search (beyond the paper: it searches on GLUE with a bidirectional supernet) ---
    search_steps: int = 2000              # causal supernet training steps (one sampled path each)
    search_lr: float = 5e-4
    search_population: int = 50           # the paper's evolution: population 50, 40 generations
    search_generations: int = 40
    search_eval_rows: int = 64            # held-out rows beyond eval_text_rows that score a path
    # --- evaluation ---
    eval_instructions: int = 500          # per instruction set
    eval_text_rows: int = 512
    eval_batch_size: int = 8
    checkpoint_every: int = 200

    def __post_init__(self):
        settings.check(self, _CLM_CHOICES, _CLM_RANGES)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


CLM_SCALES: dict[str, dict[str, Any]] = {
    "paper": {},
    # ~1-2 hours on 2 CPU cores: the real `small` widths, short schedules, subsets.
    "small": dict(space="small", max_position_embeddings=512, max_length=256, pretrain_epochs=1,
                  pretrain_steps=400, pretrain_batch_size=16, sft_steps=100, distill_steps=60, distill_batch_size=4,
                  max_input_tokens=256, max_new_tokens=48, eval_instructions=64, eval_text_rows=64,
                  checkpoint_every=50, search_steps=300, search_population=12, search_generations=4,
                  search_eval_rows=32),
    # ~20-30 minutes on 2 CPU cores: the ELM-Micro widths, short schedules, small subsets.
    "micro": dict(space="micro", max_position_embeddings=256, max_length=128, pretrain_epochs=1,
                  pretrain_steps=200, pretrain_batch_size=16, pretrain_lr=1e-3, sft_steps=50, sft_lr=5e-4,
                  distill_steps=20, distill_lr=5e-5, distill_batch_size=4, max_input_tokens=128, max_new_tokens=32,
                  eval_instructions=32, eval_text_rows=64, checkpoint_every=50, search_steps=150, search_lr=1e-3,
                  search_population=10, search_generations=3, search_eval_rows=32),
    # a few minutes on 2 CPU cores: toy widths; the real teacher, data and metrics.
    "smoke": dict(space="smoke", max_position_embeddings=256, corpus_documents=1500, max_length=64,
                  pretrain_epochs=1, pretrain_steps=60, pretrain_batch_size=8, pretrain_lr=3e-3, sft_steps=20,
                  sft_lr=1e-3, distill_steps=4, distill_lr=1e-4, distill_batch_size=4, max_input_tokens=64, max_new_tokens=16,
                  eval_instructions=12, eval_text_rows=32, checkpoint_every=20, search_steps=60, search_lr=3e-3,
                  search_population=8, search_generations=3, search_eval_rows=16),
}


_CLM_CHOICES = {"scale": lambda: tuple(CLM_SCALES), "space": SearchSpace.presets,
                "corpus": lambda: ("offline", "slimpajama"), "instructions": lambda: ("offline", "dolly")}
_CLM_RANGES = ((("max_length", "pretrain_epochs", "pretrain_batch_size", "distill_batch_size", "max_new_tokens",
                 "eval_instructions", "eval_text_rows", "eval_batch_size", "checkpoint_every", "max_input_tokens",
                 "search_steps", "search_population", "search_generations", "search_eval_rows"),
                settings.AT_LEAST_1),
               (("temperature", "search_lr"), settings.POSITIVE))


def resolve_clm_config(scale: str = "smoke", seed: int = 0, overrides: dict | None = None) -> ClmConfig:
    """Scale preset, then explicit overrides; errors name the key, the value and what is allowed."""
    return settings.build(ClmConfig, {**settings.preset(scale, CLM_SCALES), "seed": seed, **(overrides or {})})
