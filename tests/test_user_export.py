"""A found model for users (`python -m elmlib export`), and a search run outside the repository writing
only into its run folder and the user's cache.

One tiny search runs once per module through the real CLI, from an empty working directory outside the
repository with HOME and XDG_CACHE_HOME in a scratch folder and no ELMLIB_* variable set; the export
tests then read its run folder.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import elmlib
from elmlib.__main__ import main as cli
from elmlib.io.cache import MANIFEST, file_digest
from elmlib.pipeline.config import parse_sets, resolve_config
from elmlib.pipeline.export import MARKER, export_run, search_command
from elmlib.data.tasks import get_task, load_task, source_files
from test_search import TINY

ROOT = Path(elmlib.__file__).resolve().parent.parent


def _results_status() -> str:
    """What git sees changed or new in the repository's results/ (teachers.csv included)."""
    return subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all", "results"],
                          capture_output=True, text=True, check=True).stdout


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """A finished tiny search (boolq) made by `python -m elmlib search` run from outside the repository."""
    base = tmp_path_factory.mktemp("outside")
    cwd, home, xdg, run = base / "cwd", base / "home", base / "xdg", base / "run"
    for folder in (cwd, home, xdg):
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELMLIB_")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(xdg), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    sets = [w for k, v in {**TINY, "latency_repeats": 3}.items() for w in ("--set", f"{k}={v}")]
    argv = [sys.executable, "-m", "elmlib", "search", "--scale", "smoke", "--task", "boolq", "--no-progress",
            *sets, "--run-dir", str(run)]
    before, start = _results_status(), time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return SimpleNamespace(base=base, cwd=cwd, home=home, xdg=xdg, run=run, argv=argv, results_before=before,
                           seconds=time.perf_counter() - start)


def test_a_search_outside_the_repository_writes_only_its_run_folder_and_the_cache(outside):
    assert list(outside.cwd.iterdir()) == []  # not even runs/ or results/
    assert _results_status() == outside.results_before  # results/teachers.csv untouched
    assert not list(outside.base.rglob("teachers.csv"))
    cache = outside.xdg / "elmlib"  # the default cache: $XDG_CACHE_HOME/elmlib
    assert {"teachers", "tokenized"} <= {p.name for p in cache.iterdir()}
    metrics = list((cache / "teachers").glob("boolq-*/metrics.json"))  # the teacher's dev metrics are kept here
    assert len(metrics) == 1 and json.loads(metrics[0].read_text())["metrics"]["accuracy"] >= 0
    assert list(outside.home.iterdir()) == [] and [p.name for p in outside.xdg.iterdir()] == ["elmlib"]
    assert (outside.run / "retrain.done.json").exists() and (outside.run / "model" / MANIFEST).exists()


@pytest.fixture(scope="module")
def exported(outside, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported") / "boolq-model"
    start = time.perf_counter()
    assert cli(["export", str(outside.run), "--out", str(out)]) == 0
    return SimpleNamespace(out=out, seconds=time.perf_counter() - start)


def _own_probabilities(model_dir: Path, texts, pairs, max_length: int) -> torch.Tensor:
    """elmlib's own model and tokenization (elmlib.data.tokenization.encode_pairs: truncation at max_length)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = elmlib.ElmForSequenceClassification.from_pretrained(model_dir).eval()
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=True, return_tensors="pt",
                    return_token_type_ids=True)
    with torch.no_grad():
        return model(**enc).logits.softmax(-1)


def test_pipeline_loads_the_export_and_predicts_as_elmlib_does(outside, exported):
    from transformers import AutoModelForSequenceClassification, pipeline

    files = {p.name for p in exported.out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "modeling_elm.py"} <= files
    assert MANIFEST not in files and not any(f.endswith(".bin") for f in files)
    names = get_task("boolq").label_names
    model = AutoModelForSequenceClassification.from_pretrained(exported.out)
    assert type(model) is elmlib.ElmForSequenceClassification
    assert model.config.id2label == dict(enumerate(names))
    assert model.config.label2id == {n: i for i, n in enumerate(names)}
    rows = load_task("boolq", "dev").select(range(6))
    texts, pairs = list(rows["text"]), list(rows["text_pair"])
    classify = pipeline("text-classification", model=str(exported.out), truncation=True, top_k=None)
    got = classify([{"text": t, "text_pair": p} for t, p in zip(texts, pairs)])
    own = _own_probabilities(outside.run / "model", texts, pairs, resolve_config("smoke", overrides=TINY).max_length)
    for scores, expected in zip(got, own):
        by_label = {s["label"]: s["score"] for s in scores}
        assert torch.allclose(torch.tensor([by_label[n] for n in names]), expected, atol=1e-5)
        assert max(by_label, key=by_label.get) == names[int(expected.argmax())]


def test_the_model_card_holds_every_fact_and_the_command_remakes_the_config(outside, exported):
    card = (exported.out / "README.md").read_text()
    row = pd.read_csv(outside.run / "final_metrics.csv").iloc[0]
    arch = json.loads((outside.run / "arch.json").read_text())
    provenance = json.loads((outside.run / "final_metrics.provenance.json").read_text())
    for i, layer in enumerate(arch["layers"]):  # architecture per layer
        assert f"| {i} | {layer['block']} | {layer['sharing']} | {layer['ffn_dim']} | {layer['heads']} |" in card
    assert f"| parameters (embeddings + encoder) | {int(row['params']):,} |" in card  # parameters vs budget
    assert "| budget | 1,050,000 |" in card
    assert f"{row['latency_ms']:.3g} ms" in card and str(row["device"]) in card  # latency and its hardware
    assert f"| accuracy | {row['value']:.4f} | {int(row['n_dev'])} |" in card  # dev metric with n
    assert "all-MiniLM-L6-v2" in card  # the teacher
    for path in source_files("boolq"):  # the data's digest
        assert file_digest(path) in card
    assert provenance["git_commit"] in card and f"elmlib {elmlib.__version__}" in card  # version and commit
    command = card.split("## How it was made\n\n```\n", 1)[1].split("\n```", 1)[0]
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "elmlib", "search"] and words[-2:] == ["--run-dir", str(outside.run.resolve())]
    sets = parse_sets([words[i + 1] for i, w in enumerate(words) if w == "--set"])
    remade = resolve_config(words[words.index("--scale") + 1], words[words.index("--task") + 1], overrides=sets)
    assert remade.to_dict() == json.loads((outside.run / "config.json").read_text())
    assert command == search_command(remade, outside.run.resolve())


def _damaged_copy(run: Path, dest: Path, damage) -> Path:
    """A copy of the finished run's files the export reads, then ``damage(copy)``."""
    keep = {"config.json", "arch.json", "final_metrics.csv", "final_metrics.provenance.json", "retrain.done.json"}
    dest.mkdir()
    for name in keep:
        shutil.copyfile(run / name, dest / name)
    shutil.copytree(run / "model", dest / "model")
    damage(dest)
    return dest


def _nan_weights(folder: Path) -> None:
    """NaN in one tensor, with a manifest that matches (as a run that diverged unnoticed would leave)."""
    from safetensors.torch import load_file, save_file

    path = folder / "model" / "model.safetensors"
    tensors = load_file(path)
    name = next(k for k, t in tensors.items() if t.is_floating_point())
    tensors[name][0] = float("nan")
    save_file(tensors, path, metadata={"format": "pt"})
    manifest = json.loads((folder / "model" / MANIFEST).read_text())
    manifest["files"]["model.safetensors"] = file_digest(path)
    (folder / "model" / MANIFEST).write_text(json.dumps(manifest))


DAMAGE = {
    "retrain not done": (lambda d: (d / "retrain.done.json").unlink(), "has not finished the retrain stage"),
    "weights edited": (lambda d: open(d / "model" / "model.safetensors", "ab").write(b"\0"),
                       "changed since it was written"),
    "tokenizer missing": (lambda d: (d / "model" / "tokenizer.json").unlink(), "lacks tokenizer.json"),
    "no manifest": (lambda d: (d / "model" / MANIFEST).unlink(), f"has no {MANIFEST}"),
    "non-finite weights": (_nan_weights, "non-finite weights"),
}


def _refused(argv: list[str], root: Path, capsys) -> str:
    """Run the CLI expecting a refusal; it must print one line and leave ``root`` exactly as it was."""
    before = _snapshot(root)
    capsys.readouterr()
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert _snapshot(root) == before
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_run_that_cannot_be_exported_is_refused_in_one_line(outside, tmp_path, capsys, case):
    damage, message = DAMAGE[case]
    run = _damaged_copy(outside.run, tmp_path / "run", damage)
    assert message in _refused(["export", str(run), "--out", str(tmp_path / "out")], tmp_path, capsys)
    assert not (tmp_path / "out").exists()


def test_out_must_be_new_empty_or_an_earlier_export(outside, exported, tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert "was not made by `elmlib export`" in _refused(["export", str(outside.run), "--out", str(foreign)],
                                                         tmp_path, capsys)
    assert "was not made by `elmlib export`" in _refused(["export", str(outside.run), "--out", str(foreign),
                                                          "--overwrite"], tmp_path, capsys)  # never deleted
    (tmp_path / "file").write_text("x")
    assert "is a file" in _refused(["export", str(outside.run), "--out", str(tmp_path / "file")], tmp_path, capsys)
    earlier = tmp_path / "earlier"
    shutil.copytree(exported.out, earlier)
    assert "pass --overwrite" in _refused(["export", str(outside.run), "--out", str(earlier)], tmp_path, capsys)
    (earlier / "README.md").write_text("stale")
    assert cli(["export", str(outside.run), "--out", str(earlier), "--overwrite"]) == 0
    assert (earlier / "README.md").read_text() == (exported.out / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "file", "foreign"]  # no temporary left
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_run(outside.run, empty) == empty and (empty / MARKER).is_file()


@pytest.mark.skipif(sys.platform != "linux", reason="the XDG layout of the user's cache folder")
def test_default_folders_follow_the_environment_and_the_working_directory(tmp_path, monkeypatch):
    from elmlib.io import files

    for var in ("ELMLIB_CACHE", "ELMLIB_RESULTS", "ELMLIB_FIGURES", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert files.cache_dir() == tmp_path / "home" / ".cache" / "elmlib"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert files.cache_dir() == tmp_path / "xdg" / "elmlib"
    monkeypatch.setenv("ELMLIB_CACHE", str(tmp_path / "cache"))
    assert files.cache_dir() == tmp_path / "cache"
    monkeypatch.chdir(ROOT / "notebooks")  # inside the repository: its results/ and figures/
    assert files.results_dir() == files.shared_results_dir() == ROOT / "results"
    assert files.figures_dir() == ROOT / "figures"
    monkeypatch.chdir(tmp_path)  # elsewhere: no shared table; plain results/ is the working directory's
    assert files.shared_results_dir() is None and files.results_dir() == tmp_path / "results"
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path / "r"))  # moves the shared table; results/ is an argument
    assert files.shared_results_dir() == tmp_path / "r" and files.results_dir() == tmp_path / "results"
