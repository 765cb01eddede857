"""Causal-LM transfer of the found architecture (paper Sec. V, "Causal LM transfer", Table IV).

The paper trains the architecture found on GLUE as a causal LM: pretraining on 1% of SlimPajama
(AdamW, weight decay 0.1, cosine schedule from 5e-4), then instruction distillation with MiniLLM
(Gu et al., "MiniLLM: Knowledge Distillation of Large Language Models", ICLR 2024), evaluated with
Rouge-L on held-out instruction sets. Here, for every model of the table (the found architecture,
an all-BERT and an all-MobileBERT path of the same parameter count, and the teacher itself):

- ``config``: the settings (``ClmConfig``, scale presets ``CLM_SCALES``);
- ``data``: the teacher and its tokenizer, packed corpus rows (offline: the packaged Wikipedia prose
  of ``elmlib.data.corpus``; online: a streamed SlimPajama sample), instruction sets and prompts;
- ``students``: the found architecture and its parameter-matched uniform baselines;
- ``minillm``: MiniLLM's reverse-KL loss and seeded sampling (its simplifications are named there);
- ``stages``: ``pretrain``, ``sft`` (MiniLLM's student initialisation), ``distill``;
- ``search``: beyond the paper, a search in the causal setting (a causally masked supernet distilled
  from the teacher, then evolution) for the ELM row when no GLUE search run folder is given;
- ``evaluation``: Rouge-L of greedy responses on held-out instructions, perplexity on held-out text.

The Table IV driver and figure are experiment code: ``elmlib.repro.table4_clm``.

    from elmlib.extensions import causal_lm as clm
    cfg = clm.resolve_clm_config("smoke", seed=0)
    model = clm.build_student(space, clm.documented_architecture(space), tokenizer, seed=0)
"""
from elmlib.extensions.causal_lm.config import CLM_SCALES, ClmConfig, resolve_clm_config
from elmlib.extensions.causal_lm.data import (
    clm_rows, instruction_examples, left_pad, load_teacher_lm, prompt_ids, prompt_text, row_batches, take_per_task,
)
from elmlib.extensions.causal_lm.evaluation import evaluate, generate_responses, perplexity, rouge_l
from elmlib.extensions.causal_lm.minillm import minillm_loss, sample_responses, token_reverse_kl
from elmlib.extensions.causal_lm.search import causal_search
from elmlib.extensions.causal_lm.stages import distill, pretrain, sft
from elmlib.extensions.causal_lm.students import (
    build_student, clm_space, documented_architecture, found_architecture, matched_uniform, student_architectures,
)

__all__ = ["CLM_SCALES", "ClmConfig", "build_student", "causal_search", "clm_rows", "clm_space", "distill",
           "documented_architecture", "evaluate", "found_architecture", "generate_responses", "instruction_examples",
           "left_pad", "load_teacher_lm", "matched_uniform", "minillm_loss", "perplexity", "pretrain", "prompt_ids",
           "prompt_text", "resolve_clm_config", "rouge_l", "row_batches", "sample_responses", "sft",
           "student_architectures", "take_per_task", "token_reverse_kl"]
