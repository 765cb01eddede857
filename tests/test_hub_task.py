"""Hub datasets as tasks (elmlib.data.hubtask): ``--task hub:<name>[/<config>]``.

The hub is out of reach here, so ``datasets.load_dataset`` is replaced by one that returns a real
in-memory ``datasets.DatasetDict`` of packaged rows (Rotten Tomatoes snippets, BoolQ dev rows): the
split, label and metric code runs on real data; only the download is skipped.
"""
import json
import os
import subprocess
import sys

import datasets
import pytest

from elmlib.data import hubtask
from elmlib.data.hubtask import parse_hub_task, register_hub
from elmlib.data.packaged import _read_offline
from elmlib.data.registry import TASKS
from elmlib.data.tasks import load_task, resolve_task
from elmlib.errors import UserError
from elmlib.pipeline.config import resolve_config
from elmlib.pipeline.export import data_digest
from elmlib.pipeline.run import SearchRun, run_search

from test_own_data import boolq_rows
from test_search import TINY


@pytest.fixture(autouse=True)
def _results_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path / "results"))


def fake_hub(monkeypatch, data: datasets.DatasetDict) -> list:
    """``datasets.load_dataset`` returning ``data``; the list records each call's (path, config). The tests
    reuse dataset names with other rows, so the per-process memo of datasets read starts empty."""
    calls = []
    monkeypatch.setattr(hubtask, "_SEEN", {})

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        return data

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def reviews_dict(with_validation: bool = True) -> datasets.DatasetDict:
    """Real Rotten Tomatoes snippets as a hub dataset would hold them: a ClassLabel column named 'label',
    a validation split with two unusable rows (no label, empty text) that must be left out."""
    rows = _read_offline("rotten_tomatoes")[::20]
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    dev_rows, rows = rows[::4], [r for i, r in enumerate(rows) if i % 4]  # the packaged rows come sorted by score
    train = {"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}
    splits = {"train": datasets.Dataset.from_dict(train, features=features)}
    if with_validation:
        dev = {"text": [r["text"] for r in dev_rows] + ["", "a row without a label"],
               "label": [r["label"] for r in dev_rows] + [1, -1]}
        splits["validation"] = datasets.Dataset.from_dict(dev, features=features)
    return datasets.DatasetDict(splits)


@pytest.mark.parametrize("task, expected", [
    ("hub:imdb", ("imdb", None)),
    ("hub:stanfordnlp/imdb", ("stanfordnlp/imdb", None)),
    ("hub:nyu-mll/glue/cola", ("nyu-mll/glue", "cola")),
    ("hub:SetFit/sst5", ("SetFit/sst5", None)),
])
def test_hub_names_parse_to_dataset_and_config(task, expected):
    assert parse_hub_task(task) == expected


@pytest.mark.parametrize("task", ["hub:", "hub:a/b/c/d", "hub:a//b", "hub:a b"])
def test_malformed_hub_names_are_one_line_errors(task):
    with pytest.raises(UserError, match=r"expected hub:<name>, hub:<owner>/<name> or hub:<owner>/<name>/<config>"):
        parse_hub_task(task)


def test_glue_on_the_hub_keeps_its_registered_name(monkeypatch):
    calls = fake_hub(monkeypatch, datasets.DatasetDict())
    assert register_hub("hub:nyu-mll/glue/sst2") is TASKS["sst2"] and calls == []


def test_offline_hub_task_is_one_line_error_through_the_cli(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "elmlib", "search", "--scale", "smoke", "--task", "hub:foo/bar",
                           "--run-dir", str(run_dir)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: task='hub:foo/bar' needs the hub dataset foo/bar, which "
                                                   "is out of reach (and not in the local cache")
    assert list(tmp_path.iterdir()) == []  # no run folder, no hub cache folder


def test_validation_split_is_dev_and_classlabel_names_are_kept(tmp_path, monkeypatch):
    calls = fake_hub(monkeypatch, reviews_dict())
    cfg = resolve_config("smoke", task="hub:someone/reviews", overrides=TINY)
    spec = resolve_task(cfg)
    assert calls == [("someone/reviews", None)]
    assert spec.name.startswith("hub-someone_reviews-") and spec.source == "hub-dataset"
    assert spec.label_names == ("neg", "pos") and spec.metrics == ("accuracy", "macro_f1")
    dev, train90, search = (load_task(spec.name, s) for s in ("dev", "train90", "search"))
    validation = reviews_dict()["validation"]
    assert list(dev["text"]) == validation["text"][:-2] and list(dev["label"]) == validation["label"][:-2]
    assert not set(dev["key"]) & (set(train90["key"]) | set(search["key"]))
    assert len(search) == pytest.approx(0.1 * (len(train90) + len(search)), abs=2)
    run_search(cfg, tmp_path / "run", progress=False, stages=("pretrain", "finetune"))
    stored = json.loads((tmp_path / "run" / "data_split.json").read_text())
    assert stored["task"] == spec.name and stored["hub"] == {"dataset": "someone/reviews", "config": None}
    assert stored["rows_left_out"] == 2 and stored["official_dev"] is True
    assert set(stored["dev"]) == set(dev["key"])
    assert data_digest(spec.name) == [("hub:someone/reviews", stored["sha256"])]


def test_without_validation_a_seeded_20_percent_is_dev_and_floats_make_regression(monkeypatch):
    rows = _read_offline("rotten_tomatoes_score")[::20]
    data = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"sentence": [r["text"] for r in rows], "score": [float(r["label"]) for r in rows]})})
    calls = fake_hub(monkeypatch, data)
    overrides = {**TINY, "text_column": "sentence", "label_column": "score"}
    spec = resolve_task(resolve_config("smoke", task="hub:someone/scores/v2", overrides=overrides))
    assert calls == [("someone/scores", "v2")]
    assert spec.is_regression and spec.metrics == ("pearson", "spearman")
    sizes = {s: len(load_task(spec.name, s)) for s in ("train90", "search", "dev")}
    assert sizes["dev"] == pytest.approx(0.2 * len(rows), abs=3)
    again = resolve_task(resolve_config("smoke", task="hub:someone/scores/v2", overrides={**overrides, "split_seed": 1}))
    assert again.name != spec.name and set(load_task(again.name, "dev")["key"]) != set(load_task(spec.name, "dev")["key"])


def test_pair_columns_and_boolean_labels(tmp_path, monkeypatch):
    frame = boolq_rows(300)
    fake_hub(monkeypatch, datasets.DatasetDict({"train": datasets.Dataset.from_pandas(frame)}))
    cfg = resolve_config("smoke", task="hub:someone/boolq", overrides={
        **TINY, "text_column": "question", "text_pair_column": "passage", "label_column": "answer"})
    spec = resolve_task(cfg)
    assert spec.is_pair and spec.label_names == ("False", "True") and spec.metrics[-1] == "mcc"  # 62% True
    run = SearchRun(cfg, tmp_path / "run", progress=False)
    try:
        train = run.task_split("train90", 0)
        assert 1 in train[0]["token_type_ids"]  # [CLS] question [SEP] passage [SEP]
    finally:
        run.close()


@pytest.mark.parametrize("case, expected", [
    ("columns", r"hub dataset someone/reviews: missing column\(s\) \['label'\]; found \['text', 'stars'\]"),
    ("no_train", "hub dataset someone/reviews has no 'train' split \\(it has test\\)"),
])
def test_bad_hub_datasets_are_one_line_errors_and_write_nothing(tmp_path, monkeypatch, case, expected):
    data = reviews_dict(with_validation=False)
    data = {"columns": lambda: datasets.DatasetDict({"train": data["train"].rename_column("label", "stars")}),
            "no_train": lambda: datasets.DatasetDict({"test": data["train"]})}[case]()
    fake_hub(monkeypatch, data)
    with pytest.raises(UserError, match=expected) as err:
        SearchRun(resolve_config("smoke", task="hub:someone/reviews", overrides=TINY), tmp_path / "run", progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "run").exists()
