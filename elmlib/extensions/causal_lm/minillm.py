"""MiniLLM (Gu et al., "MiniLLM: Knowledge Distillation of Large Language Models", ICLR 2024) as pure
tensor functions: the decomposed reverse-KL loss on student-sampled responses (Eqs. 4-7) and
ancestral sampling with the KV cache and an explicit ``torch.Generator``.

The loss is the single-step term (the exact per-token KL(q_theta || p) over the whole vocabulary at
every sampled position) plus the length-normalised long-term policy-gradient term
-R^Norm_{t+1} log q_theta(y_t). **Simplifications (named):** responses are sampled from the student
alone (no teacher-mixed sampling, alpha = 0), and every sampled batch gets exactly one gradient step
(on-policy), so no importance weights and no PPO-style clipping are needed; no reward baseline besides
the length normalisation.

    ids, mask, resp = sample_responses(student, prompts, prompt_mask, 64, eos_id, pad_id, generator)
    loss, parts = minillm_loss(student_logits, teacher_logits, ids[:, -resp.shape[1]:], resp)
"""
from __future__ import annotations

import torch

from elmlib.model.modeling_elm import output_cache


def token_reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over masked positions of KL(q_student || p_teacher), exact over the vocabulary.

    MiniLLM's single-step term (Gu et al. 2024, Eq. 5, (grad L)_Single)."""
    logq = student_logits.float().log_softmax(-1)
    logp = teacher_logits.float().log_softmax(-1)
    kl = (logq.exp() * (logq - logp)).sum(-1)
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def minillm_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tokens: torch.Tensor,
                 mask: torch.Tensor, long_term_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """MiniLLM's reverse-KL objective on responses sampled from the student (Eqs. 4-7).

    logits (B, T, V) predict ``tokens`` (B, T) at positions where ``mask`` is 1. Returns
    single-step KL + long_term_weight * long-term term, whose gradient is
    -sum_t R^Norm_{t+1} grad log q(y_t), with per-step reward r_t = log p(y_t) - log q(y_t) and
    R^Norm_{t+1} the mean of the rewards after t (length normalisation). Rewards are constants.
    Both terms are zero, with zero gradient, when the student's distribution equals the teacher's."""
    mask = mask.to(torch.float32)
    single = token_reverse_kl(student_logits, teacher_logits, mask)
    logq_tok = student_logits.float().log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
    with torch.no_grad():
        logp_tok = teacher_logits.float().log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
        reward = (logp_tok - logq_tok) * mask
        after_sum = reward.flip(-1).cumsum(-1).flip(-1) - reward          # sum over t' > t
        after_cnt = mask.flip(-1).cumsum(-1).flip(-1) - mask
        future = after_sum / after_cnt.clamp(min=1)
    long = -(future * logq_tok * mask).sum() / mask.sum().clamp(min=1)
    loss = single + long_term_weight * long
    return loss, {"reverse_kl": single.detach(), "long_term": long.detach(), "reward": (reward.sum() / mask.sum().clamp(min=1))}


@torch.no_grad()
def sample_responses(model, prompts: torch.Tensor, prompt_mask: torch.Tensor, max_new_tokens: int, eos_id: int,
                     pad_id: int, generator: torch.Generator, temperature: float = 1.0):
    """Ancestral sampling with the KV cache and an explicit generator (``generate()`` cannot take one).

    Returns (ids (B, P + R), attention mask, response mask over the R new columns: 1 up to and including EOS)."""
    was_training = model.training
    model.eval()
    out = model(prompts, attention_mask=prompt_mask, use_cache=True, logits_to_keep=1)
    ids, mask = prompts, prompt_mask
    done = torch.zeros(len(prompts), dtype=torch.bool)
    new_mask = []
    for _ in range(max_new_tokens):
        probs = (out.logits[:, -1].float() / temperature).softmax(-1)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        alive = (~done).long()
        new_mask.append(alive)
        ids = torch.cat([ids, token[:, None]], 1)
        mask = torch.cat([mask, alive[:, None]], 1)
        done |= token == eos_id
        if bool(done.all()):
            break
        out = model(token[:, None], attention_mask=mask, cache=output_cache(out), use_cache=True)
    model.train(was_training)
    return ids, mask, torch.stack(new_mask, 1)
