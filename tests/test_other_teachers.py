"""Encoder teachers other than BERT (``--set teacher=<folder>``): DistilBERT and RoBERTa architectures.

No DistilBERT or RoBERTa checkpoint can be had offline (DATA.md), so each teacher here is a tiny
randomly initialised model of that architecture, saved with the packaged teacher's WordPiece
tokenizer, or (``bpe_teacher``) with a RoBERTa-style byte-level BPE larger than the students' default
vocabulary. The weights are random because only the code path is under test: inputs the model does
not take (DistilBERT: no token_type_ids; RoBERTa: one segment type), its hidden states and attention
maps for KD with another layer count and width, its fine-tuning head, RoBERTa's position offset, and
``--set vocab_size`` for a tokenizer of more than 30,522 tokens (RoBERTa's padding id 1).
"""
import json
import math
import shutil

import pandas as pd
import pytest
import torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DistilBertConfig, DistilBertModel,
                          RobertaConfig, RobertaModel, RobertaTokenizer, pipeline)

from elmlib.data.teachers import load_teacher, teacher_inputs
from elmlib.data.tokenization import gpt2_tokenizer_dir, teacher_dir
from elmlib.errors import UserError
from elmlib.io.files import cache_dir
from elmlib.pipeline.config import resolve_config
from elmlib.pipeline.context import kd_loss
from elmlib.pipeline.export import export_run
from elmlib.pipeline.preflight import preflight, usable_positions
from elmlib.pipeline.run import SearchRun, run_search

from test_search import TINY

POSITIONS = 34  # RoBERTa: pad_token_id 0, so positions 1..33 hold 33 tokens


@pytest.fixture(autouse=True)
def _results_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path / "results"))


def save(model, folder, tokenizer_dir=None):
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_dir or teacher_dir(), local_files_only=True).save_pretrained(folder)
    return str(folder)


def distilbert(vocab: int = 30522) -> DistilBertModel:
    """2 layers, width 32: fewer layers and another width than the students' (4 layers, 64 at smoke)."""
    torch.manual_seed(0)
    return DistilBertModel(DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                            max_position_embeddings=64, pad_token_id=0))


def roberta(vocab: int = 30522) -> RobertaModel:
    """3 layers, width 48, one segment type (as roberta-base) and a position table offset by the pad id."""
    torch.manual_seed(0)
    return RobertaModel(RobertaConfig(vocab_size=vocab, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                                      intermediate_size=64, max_position_embeddings=POSITIONS, pad_token_id=0,
                                      bos_token_id=101, eos_token_id=102, type_vocab_size=1))


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    base = tmp_path_factory.mktemp("teachers")
    return {"distilbert": save(distilbert(), base / "distilbert"), "roberta": save(roberta(), base / "roberta")}


@pytest.mark.parametrize("arch, layers, width", [("distilbert", 2, 32), ("roberta", 3, 48)])
def test_a_tiny_search_runs_with_the_teacher(tmp_path, teachers, arch, layers, width):
    """boolq is a pair task: its second segment's token_type_ids of 1 would index past RoBERTa's one-row table."""
    cfg = resolve_config("smoke", task="boolq", overrides={**TINY, "teacher": teachers[arch]})
    teacher = load_teacher(cfg.teacher)
    assert (teacher.config.num_hidden_layers, teacher.config.hidden_size) == (layers, width)
    kd = kd_loss(cfg, cfg.search_space(), 4, teacher, with_logits=True)
    assert kd.layer_map == ([0, 0, 1, 1] if layers == 2 else [0, 1, 2, 2])
    assert {p.out_features for p in kd.projections} == {width}
    run = run_search(cfg, tmp_path / "run", progress=False)
    for loop in ("pretrain", "finetune", "retrain_pretrain", "retrain_finetune"):
        rows = [json.loads(line) for line in next(run.rglob(f"{loop}.log.jsonl")).read_text().splitlines()]
        assert rows and all(math.isfinite(r["kd_attention"]) and math.isfinite(r["kd_hidden"]) for r in rows), loop
    metrics = (run / "final_metrics.csv").read_text()
    assert metrics.startswith("task,metric,value") and "boolq,accuracy," in metrics
    assert json.loads((run / "model" / "config.json").read_text())["vocab_size"] == 30522


def test_teacher_inputs_follow_the_model(teachers):
    batch = {"input_ids": torch.ones(1, 4, dtype=torch.long), "attention_mask": torch.ones(1, 4, dtype=torch.long),
             "token_type_ids": torch.ones(1, 4, dtype=torch.long), "labels": torch.zeros(1, dtype=torch.long)}
    assert set(teacher_inputs(load_teacher(), batch)) == {"input_ids", "attention_mask", "token_type_ids"}  # BERT
    for arch in ("distilbert", "roberta"):
        assert set(teacher_inputs(load_teacher(teachers[arch]), batch)) == {"input_ids", "attention_mask"}, arch


def test_roberta_positions_start_after_the_padding_index(tmp_path, teachers):
    assert usable_positions({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}) == 512
    assert usable_positions({"model_type": "distilbert", "max_position_embeddings": 512, "pad_token_id": 0}) == 512
    preflight(resolve_config("smoke", overrides={"teacher": teachers["roberta"], "max_length": POSITIONS - 1}))
    cfg = resolve_config("smoke", overrides={"teacher": teachers["roberta"], "max_length": POSITIONS})
    with pytest.raises(UserError, match=f"max_length={POSITIONS} is not allowed; expected at most {POSITIONS - 1}"):
        SearchRun(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_teacher_folder_without_a_tokenizer_takes_the_tokenizer_setting(tmp_path):
    folder = tmp_path / "teacher"
    distilbert().save_pretrained(folder)
    cfg = resolve_config("smoke", task="boolq", overrides={**TINY, "teacher": str(folder),
                                                           "tokenizer": str(teacher_dir())})
    run = SearchRun(cfg, tmp_path / "run", progress=False)
    try:
        assert len(run.tokenizer()) == 30522 and run.task_teacher().config.model_type == "distilbert"
    finally:
        run.close()
    made = [json.loads(p.read_text()) for p in (cache_dir() / "teachers").glob("boolq-*/metrics.json")]
    assert [m["settings"]["tokenizer"] for m in made if m["teacher"] == str(folder)] == [str(teacher_dir())]


@pytest.mark.parametrize("case, vocab, expected", [
    ("no_tokenizer", 0, "holds no tokenizer"),
    ("bigger_vocabulary", 0, "its tokenizer has 50,257 tokens, more than the students' vocabulary of 30,522"),
    ("no_special_tokens", 50257, "its tokenizer has no cls_token, sep_token, mask_token, pad_token"),
], ids=["no_tokenizer", "bigger_vocabulary", "no_special_tokens"])
def test_teachers_the_students_cannot_read_are_one_line_errors(tmp_path, case, vocab, expected):
    """GPT-2's BPE (no [CLS], [SEP], [MASK] or padding token) fits ``vocab_size=50257`` but not the students'
    masked-LM pretraining."""
    folder = tmp_path / "teacher"
    if case == "no_tokenizer":
        distilbert().save_pretrained(folder)
    else:
        save(roberta(vocab=50257), folder, tokenizer_dir=gpt2_tokenizer_dir())
    with pytest.raises(UserError, match=expected) as err:
        SearchRun(resolve_config("smoke", overrides={"teacher": str(folder), "max_length": 32, "vocab_size": vocab}),
                  tmp_path / "run", progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "run").exists()


BPE_SIZE = 50262  # GPT-2's 50,257 tokens and RoBERTa's 5 special ones
BPE_EXTRA = (BPE_SIZE - 30522) * 32  # the larger table's parameters at the smoke space's embedding size 32
CHEAPER = dict(generations=1, search_limit=16, dev_limit=16)  # the search itself is tested elsewhere


def roberta_bpe(folder) -> RobertaTokenizer:
    """RoBERTa's layout of GPT-2's byte-level BPE (the packaged ranks): <s> 0, <pad> 1, </s> 2, <unk> 3, then
    GPT-2's tokens, <mask> last (roberta-base's own has 50,265 tokens; it cannot be had offline)."""
    gpt2 = gpt2_tokenizer_dir()
    ranks = json.loads((gpt2 / "vocab.json").read_text(encoding="utf-8"))
    vocab = {token: i for i, token in enumerate(("<s>", "<pad>", "</s>", "<unk>"))}
    vocab.update({token: len(vocab) + rank for token, rank in ranks.items()})
    vocab["<mask>"] = len(vocab)
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    shutil.copyfile(gpt2 / "merges.txt", folder / "merges.txt")
    return RobertaTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def bpe_teacher(tmp_path_factory):
    """A tiny RoBERTa (as ``roberta()``) with the BPE's ids: padding 1, positions from 2 (34 rows hold 32)."""
    base = tmp_path_factory.mktemp("bpe")
    tokenizer = roberta_bpe(base / "bpe")
    assert (len(tokenizer), tokenizer.pad_token_id, tokenizer.cls_token_id) == (BPE_SIZE, 1, 0)
    torch.manual_seed(0)
    model = RobertaModel(RobertaConfig(vocab_size=BPE_SIZE, hidden_size=48, num_hidden_layers=3,
                                       num_attention_heads=4, intermediate_size=64, max_position_embeddings=POSITIONS,
                                       pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1))
    model.save_pretrained(base / "teacher")
    tokenizer.save_pretrained(base / "teacher")
    return str(base / "teacher")


def test_a_larger_tokenizer_is_refused_in_one_line_naming_vocab_size(tmp_path, bpe_teacher):
    refusals = {
        0: f"setting teacher={bpe_teacher!r} is not allowed with the 'smoke' space: its tokenizer has 50,262 tokens, "
           f"more than the students' vocabulary of 30,522; pass --set vocab_size={BPE_SIZE} (the larger embedding "
           f"table adds {BPE_EXTRA:,} parameters at the space's embedding size 32, counted against the budget)",
        BPE_SIZE - 1: f"setting vocab_size={BPE_SIZE - 1} is not allowed with teacher={bpe_teacher!r}; expected at "
                      "least its tokenizer's 50,262 tokens"}
    for vocab, expected in refusals.items():
        cfg = resolve_config("smoke", overrides={"teacher": bpe_teacher, "max_length": 32, "vocab_size": vocab})
        with pytest.raises(UserError) as err:
            SearchRun(cfg, tmp_path / "run", progress=False)
        assert str(err.value) == expected and not (tmp_path / "run").exists()
    cfg = resolve_config("smoke", overrides={"teacher": bpe_teacher, "max_length": 32, "vocab_size": BPE_SIZE})
    preflight(cfg)
    assert cfg.search_space().vocab_size == BPE_SIZE and "vocab_size" not in resolve_config("smoke").to_dict()
    default = resolve_config("smoke").search_space()
    assert cfg.search_space().embedding_params() - default.embedding_params() == BPE_EXTRA


def test_with_vocab_size_a_search_runs_and_its_export_predicts(tmp_path, bpe_teacher):
    """The students' tables (embeddings, tied masked-LM decoder) hold every BPE id (pretraining's random
    replacements draw from all of them), pad with RoBERTa's 1, and the budget counts the larger table."""
    overrides = {**TINY, **CHEAPER, "teacher": bpe_teacher, "vocab_size": BPE_SIZE, "budget": 1.05e6 + BPE_EXTRA}
    cfg = resolve_config("smoke", task="boolq", overrides=overrides)
    run = run_search(cfg, tmp_path / "run", progress=False)
    config = json.loads((run / "model" / "config.json").read_text())
    assert (config["vocab_size"], config["pad_token_id"]) == (BPE_SIZE, 1)
    row = pd.read_csv(run / "final_metrics.csv").iloc[0]
    assert row["params"] - row["non_embedding_params"] == cfg.search_space().embedding_params() > BPE_SIZE * 32
    assert row["params"] <= cfg.budget
    out = export_run(run, tmp_path / "export")
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.elm.embeddings.word_embeddings.num_embeddings == BPE_SIZE == model.config.vocab_size
    assert model.elm.embeddings.word_embeddings.padding_idx == 1
    assert len(AutoTokenizer.from_pretrained(out)) == BPE_SIZE
    classify = pipeline("text-classification", model=str(out), truncation=True)
    got = classify([{"text": "Is the sky blue on a clear day?", "text_pair": "The sky is blue."}] * 2)
    assert len(got) == 2 and {g["label"] for g in got} <= set(model.config.id2label.values())
