"""SQuAD pipeline on the real SQuAD-format fixture: windows, oracle post-processing, official EM/F1."""
from pathlib import Path

import numpy as np
import pytest

from elmlib.extensions import squad
from elmlib.data import sources
from elmlib.data.tokenization import load_tokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "squad.json"


@pytest.fixture(scope="module")
def examples():
    return squad.read_squad_json(FIXTURE)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("teacher")


def test_fixture_reads_five_questions(examples):
    assert len(examples) == 5 and len({e["context"] for e in examples}) == 2
    for e in examples:
        for text, start in zip(e["answers"]["text"], e["answers"]["answer_start"]):
            assert e["context"][start:start + len(text)] == text


def test_normalisation_and_scores_hand_checked():
    assert squad.normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert squad.normalize_answer("an apple a day") == "apple day"
    assert squad.exact_match_score("the Golden Statue.", "golden statue") == 1.0
    # pred {golden, statue}, gold {golden, statue, of, mary}: P = 1, R = 1/2, F1 = 2/3
    assert squad.f1_score("a golden statue", "the golden statue of Mary") == pytest.approx(2 / 3)
    assert squad.f1_score("", "") == 1.0 and squad.f1_score("x", "") == 0.0
    assert squad.f1_score("cat", "dog") == 0.0


def test_gold_answers_score_100(examples):
    result = squad.squad_evaluate(examples, {e["id"]: e["answers"]["text"][0] for e in examples})
    assert result["exact_match"] == 100.0 and result["f1"] == 100.0 and result["total"] == 5
    wrong = squad.squad_evaluate(examples, {e["id"]: "" for e in examples})
    assert wrong["exact_match"] == 0.0
    with pytest.raises(KeyError, match="no prediction"):
        squad.squad_evaluate(examples, {})


def test_v2_no_answer_scoring():
    ex = [{"id": "a", "answers": {"text": [], "answer_start": []}},
          {"id": "b", "answers": {"text": ["Paris"], "answer_start": [0]}}]
    r = squad.squad_evaluate(ex, {"a": "", "b": "Paris"})
    assert r["exact_match"] == 100.0 and r["no_answer_total"] == 1 and r["has_answer_exact"] == 100.0


def _oracle_logits(train_feats):
    n, length = np.asarray(train_feats["input_ids"]).shape
    start, end = np.zeros((n, length)), np.zeros((n, length))
    for i, (s, e) in enumerate(zip(train_feats["start_positions"], train_feats["end_positions"])):
        start[i, s] += 10
        end[i, e] += 10
    return start, end


def test_doc_stride_windows_and_oracle_round_trip(examples, tok):
    kwargs = dict(max_length=96, doc_stride=32)
    train = squad.prepare_train_features(examples, tok, **kwargs)
    evals = squad.prepare_eval_features(examples, tok, **kwargs)
    assert len(train["input_ids"]) == len(evals["input_ids"]) > len(examples)  # contexts overflow: strided windows
    assert all(len(ids) == 96 for ids in train["input_ids"])
    # each question has at least one window holding its answer
    holding = {evals["example_id"][i] for i, s in enumerate(train["start_positions"]) if s > 0}
    assert holding == {e["id"] for e in examples}
    start, end = _oracle_logits(train)
    preds = squad.postprocess_predictions(examples, evals, start, end)
    result = squad.squad_evaluate(examples, preds)
    # Spans are rebuilt from whole tokens; "Father Julius Nieuwl" (a cut word in SQuAD's gold) comes back whole.
    assert preds["5733b1da4776f4190066106b"].startswith("Father Julius Nieuwl")
    assert result["exact_match"] >= 80.0 and result["f1"] > 90.0
    null = np.zeros_like(start)
    null[:, 0] = 10.0  # every window puts its mass on [CLS]
    v2 = squad.postprocess_predictions(examples, evals, null, null, version_2=True)
    assert set(v2.values()) == {""}  # [CLS] wins everywhere -> no answer


def test_bad_stride_and_hub_fail_fast(tok, examples):
    with pytest.raises(ValueError, match="doc_stride"):
        squad.prepare_train_features(examples, tok, max_length=64, doc_stride=64)
    with pytest.raises(sources.HubUnavailable, match="squad"):
        squad.load_squad("1.1", "dev")
    with pytest.raises(ValueError, match="'1.1', '2.0'"):
        squad.load_squad("3", "dev")


# --------------------------------------------------------------------------- fine-tuning


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A tiny ELM encoder saved like a run's retrain_pretrained/ (smoke space, random weights)."""
    import random

    import torch

    from elmlib import SearchSpace
    from elmlib.model.modeling_elm import ElmForMaskedLM

    space = SearchSpace.preset("smoke")
    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    ElmForMaskedLM(space.config(space.sample(random.Random(0)))).save_pretrained(folder)
    return folder


def _memorise(steps):
    # One batch of 4 windows per epoch, a high constant rate: enough to memorise 5 questions.
    return squad.squad_settings("smoke", batch_size=4, epochs=steps, steps_per_epoch=1, lr=3e-3, warmup_ratio=0.0,
                                checkpoint_every=50)


def test_finetune_memorises_the_fixture_and_caches(encoder, examples, tmp_path):
    """Trained and scored on the same 5 questions, the answers come back exactly: the training labels
    (token positions) and the post-processing (token -> character spans) agree end to end."""
    once = squad.finetune_squad(encoder, tmp_path / "one", _memorise(1), train=examples, dev=examples)
    learnt = squad.finetune_squad(encoder, tmp_path / "forty", _memorise(40), train=examples, dev=examples)
    assert once["exact_match"] < 100.0 and learnt["exact_match"] == 100.0 and learnt["f1"] == 100.0
    out = tmp_path / "forty"
    assert {"squad_metrics.csv", "squad_metrics.provenance.json", "predictions.json", "model"} <= \
        {p.name for p in out.iterdir()}
    assert not (out / "squad.ckpt").exists()
    stamp = (out / "squad_metrics.csv").stat().st_mtime_ns
    assert squad.finetune_squad(encoder, out, _memorise(40), train=examples, dev=examples) == learnt
    assert (out / "squad_metrics.csv").stat().st_mtime_ns == stamp  # from cache, not retrained
    with pytest.raises(ValueError, match=r"other settings \(differs in \['epochs'\]\)"):
        squad.finetune_squad(encoder, out, _memorise(41), train=examples, dev=examples)


def test_finetune_resumes_where_it_was_killed(encoder, examples, tmp_path, monkeypatch):
    from elmlib.train import training

    whole = squad.finetune_squad(encoder, tmp_path / "whole", _memorise(12), train=examples, dev=examples)
    with monkeypatch.context() as kill:  # finetune_squad builds its own loop: its default stop_at
        kill.setitem(training.STOP_AT, "squad", 7)
        with pytest.raises(training.Interrupted):
            squad.finetune_squad(encoder, tmp_path / "killed", _memorise(12), train=examples, dev=examples)
    assert (tmp_path / "killed" / "squad.ckpt").exists() and not (tmp_path / "killed" / "squad_metrics.csv").exists()
    resumed = squad.finetune_squad(encoder, tmp_path / "killed", _memorise(12), train=examples, dev=examples)
    assert resumed == whole
    assert (tmp_path / "killed" / "predictions.json").read_text() == (tmp_path / "whole" / "predictions.json").read_text()


def test_finetune_settings_are_checked(encoder, examples, tmp_path):
    with pytest.raises(ValueError, match="scale='huge' is not allowed"):
        squad.squad_settings("huge")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['lr_max'\]"):
        squad.squad_settings("smoke", lr_max=1.0)
    with pytest.raises(ValueError, match="version='3' is not allowed"):
        squad.squad_settings("smoke", version="3")
    with pytest.raises(ValueError, match="train_limit=-1 is not allowed"):
        squad.squad_settings("smoke", train_limit=-1)
    with pytest.raises(FileNotFoundError, match="holds no saved model"):
        squad.finetune_squad(tmp_path, tmp_path / "out", train=examples, dev=examples)
    with pytest.raises(ValueError, match="steps_per_epoch=12 needs more"):  # 5 questions give too few windows
        squad.finetune_squad(encoder, tmp_path / "few", squad.squad_settings("smoke"), train=examples, dev=examples)


def test_table3_offline_reports_why(monkeypatch):
    from elmlib.repro import experiments

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ours, status = experiments.squad_scores("smoke", 0)
    assert ours == {} and status.startswith("not run: requires hub data")
