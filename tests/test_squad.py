"""SQuAD pipeline on the real SQuAD-format fixture: windows, oracle post-processing, official EM/F1."""
from pathlib import Path

import numpy as np
import pytest

from elmlib import squad, tasks
from elmlib.tokenization import load_tokenizer

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
    with pytest.raises(tasks.HubUnavailable, match="squad"):
        squad.load_squad("1.1", "dev")
    with pytest.raises(ValueError, match="'1.1', '2.0'"):
        squad.load_squad("3", "dev")
