"""Fault cases of the inputs side: proxy benchmark files, results CSVs for figures/report, the teacher
and tokenizer caches, atomic figure writes and the ``data`` command. Each case checks the error (one
line naming the culprit and the fix) and that files which should not change did not."""
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from elmlib.io import cache
from elmlib.repro import report
from elmlib.repro.figsave import save
from elmlib.data import packaged
from elmlib.data import teachers
from elmlib.data import tokenization
from elmlib.__main__ import main as cli
from elmlib.io.inputs import read_results_csv

DEV_FILE = Path(__file__).resolve().parent.parent / "elmlib" / "benchmarks" / "flexibert_dev.json"


def one_line(excinfo, *names) -> str:
    """The error's message, checked to be one line that names every one of ``names``."""
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message, message
    for name in names:
        assert str(name) in message, (name, message)
    return message


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- proxy --data

def records(n=4):
    return json.loads(DEV_FILE.read_text())[:n]


def run_proxy(tmp_path, data, *extra):
    out = tmp_path / "out.csv"
    try:
        return cli(["--debug", "proxy", "--data", str(data), "--out", str(out), *extra])
    finally:
        assert not out.exists()  # nothing is written for a rejected file


def test_proxy_record_without_scores_is_named(tmp_path):
    recs = records()
    del recs[2]["scores"]
    data = tmp_path / "b.json"
    data.write_text(json.dumps(recs))
    with pytest.raises(ValueError) as err:
        run_proxy(tmp_path, data)
    one_line(err, data, f"record id={recs[2]['id']}", "--no-scores")


def test_proxy_empty_list_is_an_error(tmp_path):
    data = tmp_path / "empty.json"
    data.write_text("[]")
    with pytest.raises(ValueError) as err:
        run_proxy(tmp_path, data)
    one_line(err, data, "empty list")
    with pytest.raises(ValueError):  # also without scores
        run_proxy(tmp_path, data, "--no-scores")


def test_proxy_malformed_json_names_file_and_line(tmp_path):
    data = tmp_path / "cut.json"
    data.write_text(json.dumps(records(2), indent=1)[:-40])
    with pytest.raises(ValueError) as err:
        run_proxy(tmp_path, data)
    assert "not valid JSON at line " in one_line(err, data)


@pytest.mark.parametrize("mutate, culprit", [
    (lambda r: r[1]["scores"].update(glue="73.4"), "scores.glue = '73.4'"),
    (lambda r: r[1]["scores"].update(glue=float("nan")), "scores.glue = nan"),
    (lambda r: r[1]["scores"].pop("glue"), "without a 'glue'"),
    (lambda r: r.__setitem__(1, "not a record"), "record 1"),
    (lambda r: r[1].__setitem__("id", [1]), "id must be an integer or a string"),
    (lambda r: r[1].__setitem__("id", r[0]["id"]), "appears twice"),
    (lambda r: r[1]["hparams"]["model_hparam_overrides"].__setitem__("hidden_size", "big"), "hidden_size"),
    (lambda r: r[1]["hparams"]["model_hparam_overrides"]["nas_config"]["encoder_layers"].__setitem__(0, 7),
     "malformed architecture"),
])
def test_proxy_wrong_types_are_named(tmp_path, mutate, culprit):
    recs = records()
    mutate(recs)
    data = tmp_path / "bad.json"
    data.write_text(json.dumps(recs))
    before = data.read_bytes()
    with pytest.raises(ValueError) as err:
        run_proxy(tmp_path, data)
    one_line(err, data, culprit)
    assert data.read_bytes() == before


def test_proxy_top_level_must_be_a_list_and_file_must_exist(tmp_path):
    data = tmp_path / "dict.json"
    data.write_text(json.dumps({"records": records(2)}))
    with pytest.raises(ValueError) as err:
        run_proxy(tmp_path, data)
    one_line(err, data, "JSON list")
    with pytest.raises(FileNotFoundError) as err:
        run_proxy(tmp_path, tmp_path / "nowhere.json")
    one_line(err, tmp_path / "nowhere.json", "--data")


def test_proxy_out_folder_is_refused(tmp_path):
    with pytest.raises(ValueError) as err:
        cli(["--debug", "proxy", "--data", str(DEV_FILE), "--out", str(tmp_path)])
    one_line(err, tmp_path, "--out")
    assert list(tmp_path.iterdir()) == []


def test_proxy_constant_glue_prints_no_nan(tmp_path, capsys):
    recs = records(3)
    for r in recs:
        r["scores"]["glue"] = 70.0
    data = tmp_path / "flat.json"
    data.write_text(json.dumps(recs))
    assert cli(["--debug", "proxy", "--data", str(data), "--out", str(tmp_path / "s.csv")]) == 0
    printed = capsys.readouterr().out
    assert "nan" not in printed.lower() and "undefined: all 3 records have the same GLUE score" in printed


# --------------------------------------------------------------------------- figures / report

def similarity_rows():
    return pd.DataFrame([dict(scale="smoke", seed=s, kd=kd, layer=l, similarity=0.9 - 0.01 * l)
                         for s in (0, 1) for kd in ("classical", "relational") for l in (0, 1)])


def results_folder(tmp_path, bad_name, bad_bytes: bytes, provenance: dict | None = None) -> Path:
    """A results folder with one good CSV (fig3b) and one bad one."""
    folder = tmp_path / "results"
    folder.mkdir()
    similarity_rows().to_csv(folder / "fig3b_block_similarity.csv", index=False)
    (folder / f"{bad_name}.csv").write_bytes(bad_bytes)
    if provenance is not None:
        (folder / f"{bad_name}.provenance.json").write_text(json.dumps(provenance))
    return folder


GOOD_EFFICIENCY = pd.DataFrame([dict(variant=v, stage="pretrain", seconds=t, paper_gpu_days=1.0, scale="smoke", seed=0)
                                for v, t in (("dynamic", 10.0), ("fixed", 12.0))]).to_csv(index=False).encode()

BAD_CSVS = {
    "ragged": (b"variant,stage,seconds\ndynamic,pretrain,1\nfixed,pretrain,1,2,3\n", None, "not a readable CSV"),
    "empty": (b"", None, "is empty"),
    "header only": (b"variant,stage,seconds,paper_gpu_days,scale,seed\n", None, "no rows"),
    "cut mid-row": (GOOD_EFFICIENCY[:-9], None, "cut off"),
    "fewer rows than provenance": (GOOD_EFFICIENCY, {"rows": 5, "seed": 0}, "has 2 rows but efficiency.provenance.json records 5"),
    "missing column": (b"variant,seconds\ndynamic,1\n", None, "KeyError"),
    "binary": (b"\xff\xfe\x00\x81garbage\n", None, "efficiency.csv"),
}


@pytest.mark.parametrize("case", list(BAD_CSVS))
def test_figures_name_the_bad_csv_and_render_the_others(tmp_path, case, capsys):
    content, provenance, says = BAD_CSVS[case]
    folder = results_folder(tmp_path, "efficiency", content, provenance)
    before = snapshot(folder)
    figures = tmp_path / "figures"
    with pytest.raises(ValueError) as err:
        cli(["--debug", "figures", "--results", str(folder), "--figures", str(figures)])
    one_line(err, folder / "efficiency.csv", says)
    assert "re-rendered 1 figures: fig3b_block_similarity" in capsys.readouterr().out
    assert sorted(p.name for p in figures.iterdir()) == ["fig3b_block_similarity.pdf", "fig3b_block_similarity.png"]
    assert snapshot(folder) == before


def test_report_prints_good_sections_and_names_the_corrupt_csv(tmp_path, capsys):
    folder = results_folder(tmp_path, "efficiency", BAD_CSVS["ragged"][0])
    with pytest.raises(ValueError) as err:
        cli(["--debug", "figures", "--report", "--results", str(folder)])
    one_line(err, folder / "efficiency.csv", "1 results CSV(s) could not be reported")
    assert "**Block similarity**" in capsys.readouterr().out
    with pytest.raises(ValueError):  # the library function refuses too
        report.report(folder)


def test_malformed_provenance_names_file_and_line(tmp_path):
    folder = results_folder(tmp_path, "efficiency", GOOD_EFFICIENCY)
    (folder / "efficiency.provenance.json").write_text('{"rows": 2,\n "seed": }\n')
    with pytest.raises(ValueError) as err:
        read_results_csv(folder / "efficiency.csv")
    assert "not valid JSON at line 2" in one_line(err, folder / "efficiency.provenance.json")


def test_matching_provenance_rows_and_old_provenance_are_accepted(tmp_path):
    folder = results_folder(tmp_path, "efficiency", GOOD_EFFICIENCY, {"rows": 2})
    assert len(read_results_csv(folder / "efficiency.csv")) == 2
    (folder / "efficiency.provenance.json").write_text(json.dumps({"seed": 0}))  # written before `rows` existed
    assert len(read_results_csv(folder / "efficiency.csv")) == 2


def test_figures_results_folder_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        cli(["--debug", "figures", "--results", str(tmp_path / "nope")])
    one_line(err, tmp_path / "nope", "--results")


def test_figures_only_draws_the_named_figures_and_refuses_unknown_names(tmp_path):
    from elmlib.repro.plots import PLOTS

    with pytest.raises(ValueError) as err:
        cli(["--debug", "figures", "--only", "fig2,efficiency", "--figures", str(tmp_path / "out")])
    one_line(err, "--only fig2", "efficiency")  # the unknown name, and the names allowed
    assert not (tmp_path / "out").exists()  # refused before anything is written
    folder = results_folder(tmp_path, "efficiency", GOOD_EFFICIENCY)
    (folder / "table3_squad.csv").write_bytes((folder / "efficiency.csv").read_bytes())  # unreadable as Table III
    cli(["figures", "--results", str(folder), "--figures", str(tmp_path / "out"), "--only", "efficiency"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["efficiency.pdf", "efficiency.png"]
    assert "efficiency" in PLOTS and "table3_squad" in PLOTS


# --------------------------------------------------------------------------- atomic savefig

def failing_savefig(self, fname, *args, **kwargs):
    fname.write(b"partial bytes")  # what a crash mid-save leaves
    raise OSError("disk full")


def test_failed_savefig_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    target = tmp_path / "fig.png"
    target.write_bytes(b"the previous good figure")
    open_before = plt.get_fignums()  # figures other tests left open are not this test's
    monkeypatch.setattr(Figure, "savefig", failing_savefig)
    with pytest.raises(OSError, match="disk full"):
        fig, _ = plt.subplots()
        try:
            save(fig, "fig", tmp_path)
        finally:
            plt.close(fig)
    assert target.read_bytes() == b"the previous good figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]  # no temporary or partial file
    assert plt.get_fignums() == open_before


# --------------------------------------------------------------------------- teacher cache

KW = dict(epochs=1, max_steps=1, batch_size=4, max_length=16, train_limit=8, eval_limit=8, seed=0)


@pytest.fixture
def fake_training(tmp_path, monkeypatch):
    """finetune_teacher with its training replaced by a tiny BERT (seconds, not minutes); counts trainings."""
    from transformers import BertConfig, BertForSequenceClassification

    monkeypatch.setenv("ELMLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path / "results"))
    calls = []

    def train(spec, teacher, settings):
        calls.append(spec.name)
        config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, num_labels=spec.num_labels)
        info = {"metrics": {"accuracy": 0.5 + 0.01 * len(calls)}, "settings": settings, "teacher": teacher,
                "task": spec.name, "steps": 1, "n_train": 8, "n_dev": 8, "wall_time_s": 0.1}
        return BertForSequenceClassification(config), tokenization.load_tokenizer("teacher"), info

    monkeypatch.setattr(teachers, "_train", train)
    return SimpleNamespace(calls=calls, folder=lambda: next((tmp_path / "cache" / "teachers").glob("trec-*")),
                           table=tmp_path / "results" / "teachers.csv")


def test_interrupted_teacher_folder_is_rebuilt(fake_training):
    teachers.finetune_teacher("trec", **KW)
    folder = fake_training.folder()
    (folder / cache.MANIFEST).unlink()  # as if save_pretrained was killed: weights half there, no manifest
    (folder / "model.safetensors").write_bytes(b"half")
    _, metrics = teachers.finetune_teacher("trec", **KW)
    assert fake_training.calls == ["trec", "trec"] and metrics == {"accuracy": 0.52}
    assert cache.problem(folder, teachers._cache_inputs("teacher", "trec", _settings())) is None
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".") and p.is_dir()]  # no leftovers


def _settings():
    return dict(epochs=1, lr=5e-5, batch_size=4, max_length=16, max_steps=1, warmup_ratio=0.1, weight_decay=0.01,
                seed=0, train_limit=8, eval_limit=8)


def test_teacher_cache_is_reused_only_when_its_digests_match(fake_training, monkeypatch):
    teachers.finetune_teacher("trec", **KW)
    teachers.finetune_teacher("trec", **KW)
    assert fake_training.calls == ["trec"]  # a matching cache is reused
    monkeypatch.setattr(teachers, "source_hash", lambda task: "other-data")  # the task's data changed
    teachers.finetune_teacher("trec", **KW)
    assert fake_training.calls == ["trec", "trec"]
    weights = fake_training.folder() / "model.safetensors"  # a weights file changed on disk
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    teachers.finetune_teacher("trec", **KW)
    assert fake_training.calls == ["trec", "trec", "trec"]
    table = pd.read_csv(fake_training.table)
    assert table["value"].tolist() == [0.53]  # one row per recipe: the latest teacher's metrics


def test_teacher_published_but_not_recorded_is_recorded_on_the_next_load(fake_training, monkeypatch):
    record = teachers.record_teacher_metrics
    monkeypatch.setattr(teachers, "record_teacher_metrics", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # killed between publishing and recording
        teachers.finetune_teacher("trec", **KW)
    assert not fake_training.table.exists()
    monkeypatch.setattr(teachers, "record_teacher_metrics", record)
    _, metrics = teachers.finetune_teacher("trec", **KW)
    assert fake_training.calls == ["trec"]  # loaded from the cache, not trained again
    assert pd.read_csv(fake_training.table)["value"].tolist() == [metrics["accuracy"]]


def test_corrupt_teachers_csv_is_named_and_kept(fake_training):
    fake_training.table.parent.mkdir(parents=True)
    fake_training.table.write_bytes(b"teacher,task\n\"unclosed,trec\n")
    before = fake_training.table.read_bytes()
    with pytest.raises(ValueError) as err:
        teachers.finetune_teacher("trec", **KW)
    one_line(err, fake_training.table, "delete it")
    assert fake_training.table.read_bytes() == before


# --------------------------------------------------------------------------- tokenizer caches

@pytest.fixture
def tok():
    return tokenization.load_tokenizer("teacher")


@pytest.mark.parametrize("damage", ["no manifest", "other inputs", "changed data file", "missing data file"])
def test_tokenized_cache_mismatch_rebuilds(tmp_path, monkeypatch, tok, damage):
    monkeypatch.setenv("ELMLIB_CACHE", str(tmp_path))
    first = tokenization.tokenize_task("trec", "search", tok, max_length=16)["input_ids"]  # read before damage
    (folder,) = (tmp_path / "tokenized").iterdir()
    manifest = folder / cache.MANIFEST
    arrow = next(folder.glob("*.arrow"))
    if damage == "no manifest":
        manifest.unlink()
    elif damage == "other inputs":
        record = json.loads(manifest.read_text())
        record["inputs"]["tokenizer"] = "someone-else"
        manifest.write_text(json.dumps(record))
    elif damage == "changed data file":
        arrow.write_bytes(arrow.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    else:
        arrow.unlink()
    encoded = []
    real = tokenization.encode_pairs
    monkeypatch.setattr(tokenization, "encode_pairs", lambda *a, **k: encoded.append(1) or real(*a, **k))
    again = tokenization.tokenize_task("trec", "search", tok, max_length=16)
    assert encoded == [1] and again["input_ids"] == first
    assert [p.name for p in (tmp_path / "tokenized").iterdir()] == [folder.name]  # no temporary folder left
    assert cache.problem(folder, json.loads(manifest.read_text())["inputs"]) is None


def test_gpt2_tokenizer_folder_interrupted_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMLIB_CACHE", str(tmp_path))
    out = tokenization.gpt2_tokenizer_dir()
    merges = (out / "merges.txt").read_bytes()
    (out / "merges.txt").write_bytes(merges[: len(merges) // 2])  # cut off while being written
    assert tokenization.gpt2_tokenizer_dir() == out
    assert (out / "merges.txt").read_bytes() == merges


# --------------------------------------------------------------------------- data command

def test_data_unknown_task_is_one_line_without_quotes():
    with pytest.raises(ValueError) as err:
        cli(["--debug", "data", "show", "glue-sst"])
    message = one_line(err, "glue-sst", "known tasks: boolq")
    assert not message.startswith("'")


def test_data_prepare_checks_arguments_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMLIB_CACHE", str(tmp_path))
    with pytest.raises(ValueError) as err:
        cli(["--debug", "data", "prepare", "--tasks", "trec", "--no-corpus", "--max-length", "0"])
    one_line(err, "--max-length 0")
    with pytest.raises(ValueError) as err:
        cli(["--debug", "data", "prepare", "--tasks", "trec", "nosuch", "--no-corpus"])
    one_line(err, "'nosuch'")
    assert list(tmp_path.iterdir()) == []  # nothing tokenized


def test_data_corrupt_split_file_is_named(tmp_path, monkeypatch):
    bad = tmp_path / "trec.json.gz"
    bad.write_bytes(b"not gzip at all")
    monkeypatch.setattr(packaged, "_split_file", lambda name: bad)
    with pytest.raises(ValueError) as err:
        cli(["--debug", "data", "show", "trec"])
    one_line(err, bad, "reinstall")
    assert bad.read_bytes() == b"not gzip at all"


def test_data_hub_task_offline_is_a_value_error():
    with pytest.raises(ValueError) as err:
        cli(["--debug", "data", "show", "sst2"])
    one_line(err, "rotten_tomatoes")
