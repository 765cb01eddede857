"""Training stages of the causal-LM transfer (paper Sec. V), each a resumable ``TrainLoop`` in a folder:

1. ``pretrain``: causal-LM loss on packed corpus rows, AdamW(wd 0.1), cosine schedule from 5e-4.
2. ``sft``: supervised fine-tuning on the instruction training set (MiniLLM initialises its student
   this way before distillation).
3. ``distill``: MiniLLM (``minillm``): per step the student samples responses (explicit generator),
   the teacher scores them, and the loss is MiniLLM's reverse KL plus its language-modelling loss on
   the corpus (L_PT).

    pretrain(model, rows, cfg, folder)
    sft(model, tokenizer, examples, cfg, folder)
    distill(model, teacher, tokenizer, examples, rows, cfg, folder)
"""
from __future__ import annotations

from pathlib import Path

import torch

from elmlib.extensions.causal_lm.config import ClmConfig
from elmlib.extensions.causal_lm.data import left_pad, prompt_ids, row_batches
from elmlib.extensions.causal_lm.minillm import minillm_loss, sample_responses
from elmlib.train.runtime import seeded_generator
from elmlib.train.training import TrainLoop, adamw, cosine_warmup_decay


def _loop(name, folder, model, lr, steps, cfg: ClmConfig, epochs=1) -> TrainLoop:
    Path(folder).mkdir(parents=True, exist_ok=True)
    opt = adamw([model], lr, cfg.weight_decay)
    loop = TrainLoop(name, folder, modules={"model": model}, optimizer=opt, epochs=epochs, steps_per_epoch=steps,
                     warmup_ratio=cfg.warmup_ratio, checkpoint_every=cfg.checkpoint_every,
                     config_digest=cfg.digest(), progress=False, seed=cfg.seed, schedule=cosine_warmup_decay)
    return loop


def pretrain(model, rows: torch.Tensor, cfg: ClmConfig, folder: Path) -> None:
    """Causal-LM loss on packed corpus rows (paper: AdamW wd 0.1, cosine from 5e-4)."""
    steps = cfg.pretrain_steps or len(rows) // cfg.pretrain_batch_size
    if steps * cfg.pretrain_batch_size > len(rows):
        raise ValueError(f"pretrain_steps={steps} x batch {cfg.pretrain_batch_size} needs more than the "
                         f"{len(rows)} corpus rows; lower pretrain_steps or use more corpus_documents")
    loop = _loop("pretrain", folder, model, cfg.pretrain_lr, steps, cfg, cfg.pretrain_epochs)
    loop.resume()
    model.train()

    def step(batch, index):
        loss = model(batch, labels=batch).loss
        loss.backward()
        return {"loss": loss}
    loop.run(lambda epoch: row_batches(rows, cfg.pretrain_batch_size, cfg.seed, epoch), step)


def _sft_batch(examples, tokenizer, cfg):
    """Prompt + reference response + EOS, right-padded; labels only on the response."""
    seqs, labels = [], []
    for ex in examples:
        p = prompt_ids(tokenizer, ex, cfg.max_input_tokens)
        r = tokenizer(ex["response"], add_special_tokens=False)["input_ids"][:cfg.max_new_tokens] + [tokenizer.eos_token_id]
        seqs.append(p + r)
        labels.append([-100] * len(p) + r)
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
    lab = torch.full((len(seqs), width), -100, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, (s, l) in enumerate(zip(seqs, labels)):
        ids[i, :len(s)], lab[i, :len(l)], mask[i, :len(s)] = torch.tensor(s), torch.tensor(l), 1
    return ids, mask, lab


def _example_batches(examples, batch_size, seed, epoch):
    g = seeded_generator(seed, 7919 + epoch)
    order = torch.randperm(len(examples), generator=g).tolist()
    for b in range(len(examples) // batch_size):
        yield [examples[i] for i in order[b * batch_size:(b + 1) * batch_size]]


def sft(model, tokenizer, examples: list[dict], cfg: ClmConfig, folder: Path) -> None:
    """Supervised fine-tuning on the instruction training set (MiniLLM's student initialisation)."""
    if cfg.sft_steps < 1:
        return
    loop = _loop("sft", folder, model, cfg.sft_lr, cfg.sft_steps, cfg)
    loop.resume()
    model.train()

    def step(batch, index):
        ids, mask, labels = _sft_batch(batch, tokenizer, cfg)
        loss = model(ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        return {"loss": loss}
    loop.run(lambda epoch: _example_batches(examples, cfg.distill_batch_size, cfg.seed, epoch), step)


def distill(model, teacher, tokenizer, examples: list[dict], rows: torch.Tensor, cfg: ClmConfig, folder: Path) -> None:
    """MiniLLM (see the module docstring for what is simplified) with L_PT on corpus rows."""
    if cfg.distill_steps < 1:
        return
    loop = _loop("distill", folder, model, cfg.distill_lr, cfg.distill_steps, cfg)
    loop.resume()
    model.train()

    def batches(epoch):
        pt = row_batches(rows, cfg.distill_batch_size, cfg.seed + 1, epoch)
        return zip(_example_batches(examples, cfg.distill_batch_size, cfg.seed + 1, epoch), pt)

    def step(batch, index):
        examples_, pt_rows = batch
        prompts, pmask = left_pad([prompt_ids(tokenizer, ex, cfg.max_input_tokens) for ex in examples_],
                                  tokenizer.pad_token_id)
        g = seeded_generator(cfg.seed, index)  # per step: resumes agree
        ids, mask, resp = sample_responses(model, prompts, pmask, cfg.max_new_tokens, tokenizer.eos_token_id,
                                           tokenizer.pad_token_id, g, cfg.temperature)
        keep = resp.shape[1] + 1  # logits at positions P-1 .. end predict the response tokens
        with torch.no_grad():
            t_logits = teacher(ids, attention_mask=mask, logits_to_keep=keep).logits[:, :-1]
        s_logits = model(ids, attention_mask=mask, logits_to_keep=keep).logits[:, :-1]
        loss, parts = minillm_loss(s_logits, t_logits, ids[:, -resp.shape[1]:], resp, cfg.long_term_weight)
        pt_loss = model(pt_rows, labels=pt_rows).loss
        (loss + cfg.pt_weight * pt_loss).backward()
        return {"loss": loss, "pt_loss": pt_loss, "response_tokens": resp.sum(), **parts}
    loop.run(batches, step)
