"""Evaluation of the causal-LM transfer (paper Sec. V, Table IV): Rouge-L (the ``rouge-score`` library,
F-measure x 100, stemming) of greedy responses on held-out instruction sets, and perplexity on
held-out corpus text; the teacher is evaluated the same way.

    result = evaluate(model, tokenizer, eval_examples, heldout_rows, cfg)
    result["rouge_l"], result["perplexity"]          # {task: value}, value
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from elmlib.extensions.causal_lm.config import ClmConfig
from elmlib.extensions.causal_lm.data import left_pad, prompt_ids


@torch.no_grad()
def generate_responses(model, tokenizer, examples: list[dict], cfg: ClmConfig) -> list[str]:
    """Greedy responses (``generate()`` with the KV cache), left-padded batches."""
    model.eval()
    out = []
    for b in range(0, len(examples), cfg.eval_batch_size):
        chunk = examples[b:b + cfg.eval_batch_size]
        ids, mask = left_pad([prompt_ids(tokenizer, ex, cfg.max_input_tokens) for ex in chunk], tokenizer.pad_token_id)
        gen = model.generate(ids, attention_mask=mask, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        out += tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)
    return [o.strip() for o in out]


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean Rouge-L F-measure x 100 (``rouge-score``, Porter stemming), as MiniLLM reports it."""
    from rouge_score import rouge_scorer  # optional: rouge-score (the [clm] extra)

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return 100 * float(np.mean([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]))


@torch.no_grad()
def perplexity(model, rows: torch.Tensor, batch_size: int = 8) -> float:
    """exp(mean next-token NLL) over held-out rows."""
    model.eval()
    nll, count = 0.0, 0
    for b in range(0, len(rows), batch_size):
        x = rows[b:b + batch_size]
        logits = model(x).logits[:, :-1].float()
        nll += float(F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="sum"))
        count += x[:, 1:].numel()
    return math.exp(nll / count)


def evaluate(model, tokenizer, eval_examples: list[dict], text_rows: torch.Tensor, cfg: ClmConfig) -> dict:
    """{'rouge_l': {task: value}, 'perplexity': value, 'samples': [...]} for one model."""
    responses = generate_responses(model, tokenizer, eval_examples, cfg)
    scores = {}
    for task in sorted({ex["task"] for ex in eval_examples}):
        pairs = [(r, ex["response"]) for r, ex in zip(responses, eval_examples) if ex["task"] == task]
        scores[task] = rouge_l(*zip(*pairs))
    samples = [dict(task=ex["task"], reference=ex["response"], response=r) for ex, r in zip(eval_examples, responses)][:6]
    return {"rouge_l": scores, "perplexity": perplexity(model, text_rows, cfg.eval_batch_size), "samples": samples}
