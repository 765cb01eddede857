"""Faults a careless user (or a kill -9) can cause: each is impossible, or one early line naming the
culprit with nothing on disk changed (bad settings and files, foreign/locked/read-only folders,
planted pickles, torn files, divergence, edited architectures and evolution states)."""
import ast
import hashlib
import json
import math
import os
import re
import pickle  # noqa: S403 (used only to plant a malicious payload that elmlib must refuse)
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from elmlib.__main__ import main as cli
from elmlib.pipeline.config import resolve_config
from elmlib.errors import TrainingDiverged, UserError
from elmlib.nas.evolution import EvolutionarySearch, EvolutionSettings
from elmlib.nas.objective import predict
from elmlib.io.cache import publish_model, published
from elmlib.pipeline.runfolder import LOCK, MARKER
from elmlib.pipeline.context import load_supernet
from elmlib.pipeline.retrain import retrain_found
from elmlib.pipeline.run import SearchRun
from elmlib.nas.space import Architecture
from elmlib.train.training import TrainLoop, adamw, fit, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SMOKE = resolve_config("smoke")


@pytest.fixture(autouse=True)
def _results_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path / "results"))


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with a hash of its bytes (empty when the folder does not exist)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def run_cli(capsys, *argv) -> tuple[int, list[str]]:
    """Exit code and stderr lines (progress bars of model loading excepted: they are not errors)."""
    code = cli(list(argv))
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.strip() and not line.startswith(("Loading weights", "pretrain:", "\r"))]
    return code, err


def assert_one_line(err: list[str], *needles: str) -> None:
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    for needle in needles:
        assert needle in err[0], (needle, err[0])


# --------------------------------------------------------------------------- bad settings

BAD_SETS = [
    ("growth_k=0", "growth_k=0"), ("pretrain_steps=4.7", "pretrain_steps='4.7'"),
    ("importance=0.5", "importance='0.5'"), ("train_limit=-1", "train_limit=-1"),
    ("weight_decay=-0.1", "weight_decay=-0.1"), ("device=tpu", "device='tpu'"),
    ("precision=fp16", "precision='fp16'"), ("max_length=4096", "max_length=4096"),
    ("corpus=wikipedia", "corpus='wikipedia' (wikimedia/wikipedia) needs the hub"),
    ("corpus=nonsense", "corpus='nonsense' is not allowed"),
    ("teacher=bert-base-uncased", "teacher='bert-base-uncased' needs the hub"),
    ("teacher=./no-such-folder", "no-such-folder"),
    ("pretrain_lr=nan", "pretrain_lr='nan'"), ("mutation_prob=1.5", "mutation_prob=1.5"), ("seed=-1", "seed=-1"),
    ("popsize=3", "unknown setting(s) ['popsize']"), ("novalue", "--set 'novalue'"),
    ("proxy_fraction=0", "proxy_fraction=0.0"), ("budget=lots", "budget='lots'"),
]


@pytest.mark.parametrize("setting, culprit", BAD_SETS, ids=[s for s, _ in BAD_SETS])
def test_a_bad_setting_is_one_line_before_anything_is_written(tmp_path, capsys, setting, culprit):
    code, err = run_cli(capsys, "search", "--scale", "smoke", "--set", setting, "--run-dir", str(tmp_path / "run"))
    assert code == 2
    assert_one_line(err, culprit)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_that_is_not_there_is_refused(tmp_path, capsys):
    code, err = run_cli(capsys, "search", "--set", "device=cuda:0", "--run-dir", str(tmp_path / "run"))
    assert code == 2 and not (tmp_path / "run").exists()
    assert_one_line(err, "device='cuda:0'", "no CUDA GPU")


@pytest.mark.parametrize("device", ["mps", "meta"])
def test_a_device_type_elmlib_does_not_train_on_is_refused(tmp_path, capsys, device):
    code, err = run_cli(capsys, "search", "--set", f"device={device}", "--run-dir", str(tmp_path / "run"))
    assert code == 2 and not (tmp_path / "run").exists()
    assert_one_line(err, f"device={device!r}", "expected auto, cpu, cuda or cuda:N")


@pytest.mark.parametrize("argv, culprit", [
    (["--task", "nope"], "unknown task 'nope'"), (["--task", "sst2"], "task='sst2' (nyu-mll/glue) needs the hub"),
    (["--task", "squad"], "extractive QA"), (["--stages", "pretrain,bogus"], "--stages pretrain,bogus"),
    (["--budget", "50M"], "budget=5e+07 is not allowed for the 'smoke' space"),
], ids=["unknown-task", "hub-task-offline", "qa-task", "bad-stage", "budget-out-of-space"])
def test_bad_task_stage_or_budget_is_one_line(tmp_path, capsys, argv, culprit):
    code, err = run_cli(capsys, "search", "--scale", "smoke", *argv, "--run-dir", str(tmp_path / "run"))
    assert code == 2 and not (tmp_path / "run").exists()
    assert_one_line(err, culprit)


@pytest.mark.parametrize("text, culprit", [
    ('{"seed": 1,', "not valid JSON at line 1"), ('{"population": 4.7}', "population=4.7"),
    ('{"importance": []}', "importance=[]"), ('[1, 2]', "holds a list"),
], ids=["malformed", "float-for-int", "list-for-bool", "not-an-object"])
def test_a_bad_config_file_names_the_file_or_key(tmp_path, capsys, text, culprit):
    (tmp_path / "c.json").write_text(text)
    code, err = run_cli(capsys, "search", "--config", str(tmp_path / "c.json"), "--run-dir", str(tmp_path / "run"))
    assert code == 2 and not (tmp_path / "run").exists()
    assert_one_line(err, culprit)


def test_a_missing_config_file_is_one_line(tmp_path, capsys):
    code, err = run_cli(capsys, "search", "--config", str(tmp_path / "none.json"), "--run-dir", str(tmp_path / "r"))
    assert code == 2
    assert_one_line(err, "none.json", "cannot be read")


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="growth_k=0"):
        cli(["search", "--debug", "--set", "growth_k=0", "--run-dir", str(tmp_path / "r")])
    monkeypatch.setenv("ELMLIB_DEBUG", "1")
    with pytest.raises(UserError, match="growth_k=0"):
        cli(["search", "--set", "growth_k=0", "--run-dir", str(tmp_path / "r")])


# --------------------------------------------------------------------------- run folders

def test_a_foreign_folder_is_never_used_or_deleted(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    before = snapshot(folder)
    for extra in ([], ["--overwrite"]):
        code, err = run_cli(capsys, "search", "--run-dir", str(folder), *extra)
        assert code == 2
        assert_one_line(err, str(folder), "not an elmlib run folder")
        assert snapshot(folder) == before


def test_a_config_json_alone_does_not_make_a_folder_deletable(tmp_path, capsys):
    folder = tmp_path / "other-tool"
    folder.mkdir()
    (folder / "config.json").write_text('{"model": "theirs"}')
    (folder / "weights.bin").write_bytes(b"\x00" * 64)
    before = snapshot(folder)
    code, err = run_cli(capsys, "search", "--run-dir", str(folder), "--overwrite")
    assert code == 2
    assert_one_line(err, MARKER, "will not delete it")
    assert snapshot(folder) == before


def test_a_file_as_run_folder_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, err = run_cli(capsys, "search", "--run-dir", str(tmp_path / "f"))
    assert code == 2
    assert_one_line(err, "is a file")


def test_another_config_is_refused_and_overwrite_empties_only_a_marked_folder(tmp_path, capsys):
    folder = tmp_path / "run"
    SearchRun(SMOKE, folder).close()
    (folder / "pretrain.done.json").write_text("{}")
    before = snapshot(folder)
    code, err = run_cli(capsys, "search", "--set", "seed=1", "--run-dir", str(folder))
    assert code == 2 and snapshot(folder) == before
    assert_one_line(err, "made with another config (differs in ['seed'])")
    SearchRun(resolve_config("smoke", overrides={"seed": 1}), folder, overwrite=True).close()
    assert sorted(p.name for p in folder.iterdir()) == sorted([MARKER, LOCK, "config.json"])
    assert json.loads((folder / MARKER).read_text())["config_digest"] == resolve_config(
        "smoke", overrides={"seed": 1}).digest()


def test_a_folder_made_before_the_marker_is_adopted_only_with_the_same_config(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMOKE.to_dict()))
    SearchRun(SMOKE, folder).close()
    assert (folder / MARKER).exists()


def _hold_lock(folder: Path) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        from elmlib.pipeline.config import resolve_config
        from elmlib.pipeline.runfolder import claim_run_folder
        cfg = resolve_config("smoke")
        held = claim_run_folder({str(folder)!r}, cfg.to_dict(), cfg.digest())
        print("locked", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_folder_in_use_is_refused_with_the_holders_pid_and_a_killed_holder_is_taken_over(tmp_path, capsys):
    folder = tmp_path / "run"
    holder = _hold_lock(folder)
    try:
        before = snapshot(folder)
        for extra in ([], ["--overwrite"], ["--set", "seed=3", "--overwrite"]):
            code, err = run_cli(capsys, "search", "--run-dir", str(folder), *extra)
            assert code == 2, err
            assert_one_line(err, f"run folder {folder} is in use by process {holder.pid}")
            assert snapshot(folder) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    SearchRun(SMOKE, folder).close()  # the kernel released the dead holder's lock: taken over


def test_one_process_may_open_its_own_folder_twice(tmp_path):
    a = SearchRun(SMOKE, tmp_path / "run")
    b = SearchRun(SMOKE, tmp_path / "run")  # e.g. a baseline retrained beside the main run
    a.close()
    b.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_finished_run_in_a_read_only_folder_can_still_be_read(tmp_path):
    _read_only_case(tmp_path)


def test_a_finished_run_on_a_read_only_disk_can_still_be_read(tmp_path, monkeypatch):
    """As root (CI), permissions do not bind: simulate the read-only disk at the lock's open()."""
    import elmlib.pipeline.runfolder as rf

    real_open = os.open

    def refuse_lock(path, flags, *args):
        if str(path).endswith(LOCK):
            raise OSError(30, "Read-only file system", str(path))  # EROFS
        return real_open(path, flags, *args)

    SearchRun(SMOKE, tmp_path / "run").close()
    for stage in ("pretrain", "finetune", "search", "heads", "retrain"):
        (tmp_path / "run" / f"{stage}.done.json").write_text("{}")
    (tmp_path / "run" / "search.done.json").unlink()
    before = snapshot(tmp_path / "run")
    monkeypatch.setattr(rf.os, "open", refuse_lock)
    run = SearchRun(SMOKE, tmp_path / "run")
    assert run.folder.read_only
    run.run(("pretrain", "finetune"))  # done: nothing to write
    with pytest.raises(UserError, match=r"read-only and stages \['search'\] are not done"):
        run.run()
    assert snapshot(tmp_path / "run") == before


def _read_only_case(tmp_path):
    SearchRun(SMOKE, tmp_path / "run").close()
    (tmp_path / "run" / "pretrain.done.json").write_text("{}")
    os.chmod(tmp_path / "run", stat.S_IRUSR | stat.S_IXUSR)
    try:
        run = SearchRun(SMOKE, tmp_path / "run")
        run.run(("pretrain",))
    finally:
        os.chmod(tmp_path / "run", stat.S_IRWXU)


# --------------------------------------------------------------------------- no code from data files

class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"format": "elmlib-checkpoint-v1", "x": _Payload(marker)}, f)


def test_a_planted_pickle_checkpoint_runs_nothing(tmp_path):
    _plant(tmp_path / "pretrain.ckpt", tmp_path / "pwned")
    with pytest.raises(UserError, match="is not an elmlib checkpoint .*delete it"):
        load_checkpoint(tmp_path / "pretrain.ckpt", SMOKE.digest())
    assert not (tmp_path / "pwned").exists()


def test_a_planted_pickle_supernet_runs_nothing(tmp_path):
    _plant(tmp_path / "supernet_pretrain.pt", tmp_path / "pwned")
    with pytest.raises(UserError, match="is not an elmlib checkpoint .*delete it"):
        load_supernet(SMOKE, SMOKE.search_space(), tmp_path / "supernet_pretrain.pt")
    assert not (tmp_path / "pwned").exists()


def test_a_torn_checkpoint_is_refused(tmp_path):
    save_checkpoint(tmp_path / "a.ckpt", {"config_digest": "d", "w": torch.randn(64, 64)})
    data = (tmp_path / "a.ckpt").read_bytes()
    (tmp_path / "a.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="is not an elmlib checkpoint"):
        load_checkpoint(tmp_path / "a.ckpt", "d")


def test_no_pickle_eval_exec_or_unsafe_torch_load_in_elmlib():
    bad = []
    for path in sorted((ROOT / "elmlib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                bad += [f"{path.name}: imports {n}" for n in names if n.split(".")[0] in ("pickle", "dill", "marshal")]
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if isinstance(node.func, ast.Name) and name in ("eval", "exec"):
                    bad.append(f"{path.name}:{node.lineno}: {name}()")
                if name == "load" and getattr(node.func.value, "id", None) == "torch" if isinstance(
                        node.func, ast.Attribute) else False:
                    safe = any(k.arg == "weights_only" and getattr(k.value, "value", None) is True
                               for k in node.keywords)
                    bad += [] if safe else [f"{path.name}:{node.lineno}: torch.load without weights_only=True"]
    assert not bad, bad


# --------------------------------------------------------------------------- divergence

def _loop(tmp_path, net, name="pretrain", lr=1e-3):
    return TrainLoop(name, tmp_path, modules={"net": net}, optimizer=adamw([net], lr, 0.0), epochs=1,
                     steps_per_epoch=4, checkpoint_every=1, progress=False, lr_setting="pretrain_lr")


def _plain_step(net, after_backward=lambda: None):
    def step(batch, index):
        loss = net(batch).sum()
        loss.backward()
        after_backward()
        return {"loss": loss}
    return step


def test_a_nan_loss_stops_training_at_that_step_with_no_checkpoint(tmp_path):
    net = torch.nn.Linear(4, 1)
    loop = _loop(tmp_path, net)

    def step(batch, index):
        loss = net(batch).sum() * (float("nan") if index == 2 else 1.0)
        loss.backward()
        return {"loss": loss}

    with pytest.raises(TrainingDiverged, match=r"diverged at step 2 of stage pretrain \(loss=nan\); lower pretrain_lr"):
        loop.run(lambda e: iter([torch.ones(2, 4)] * 4), step)
    assert torch.isfinite(net.weight).all()  # the NaN step was never applied
    assert load_checkpoint(tmp_path / "pretrain.ckpt", "")["step"] == 2  # the last good state stays


def test_an_infinite_gradient_stops_training(tmp_path):
    net = torch.nn.Linear(4, 1)
    loop = _loop(tmp_path, net)
    step = _plain_step(net, after_backward=lambda: net.weight.grad.__setitem__((0, 0), float("inf")))
    with pytest.raises(TrainingDiverged, match="gradient norm=inf"):
        loop.run(lambda e: iter([torch.ones(2, 4)] * 4), step)
    assert not (tmp_path / "pretrain.ckpt").exists()


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    net = torch.nn.Linear(4, 1)
    loop = _loop(tmp_path, net)
    with torch.no_grad():
        net.bias.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"net.bias is not finite"):
        loop.save()
    assert not (tmp_path / "pretrain.ckpt").exists()


def test_evaluation_refuses_non_finite_logits():
    class Encoder(torch.nn.Module):
        def forward(self, ids, attention_mask=None, token_type_ids=None):
            return type("Out", (), {"last_hidden_state": torch.full((ids.shape[0], 3, 2), float("nan"))})

    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3, dtype=torch.long),
             "token_type_ids": torch.zeros(2, 3, dtype=torch.long), "labels": torch.zeros(2, dtype=torch.long)}
    with pytest.raises(TrainingDiverged, match="2 of 2 rows have non-finite logits"):
        predict(Encoder(), lambda h, m: h[:, 0], [batch], "cpu")


def test_teacher_fine_tuning_stops_at_a_nan_loss():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return type("Out", (), {"loss": (self.w * x).sum() * float("nan")})

    with pytest.raises(TrainingDiverged, match="diverged at step 1"):
        fit(Model(), lambda e: iter([{"x": torch.ones(2)}]), 3, lr=1e-3)


def test_a_diverging_search_exits_3_and_leaves_no_supernet(tmp_path, capsys):
    code, err = run_cli(capsys, "search", "--scale", "smoke", "--stages", "pretrain", "--no-progress",
                        "--set", "pretrain_lr=1e9", "--set", "pretrain_steps=6", "--set", "pretrain_epochs=1",
                        "--set", "checkpoint_every=100", "--run-dir", str(tmp_path / "run"))
    assert code == 3, err
    assert_one_line(err, "training diverged at step", "of stage pretrain", "lower pretrain_lr")
    assert not (tmp_path / "run" / "supernet_pretrain.pt").exists()
    assert not (tmp_path / "run" / "pretrain.done.json").exists()


# --------------------------------------------------------------------------- edited state and caches

def _search(tmp_path, **kw):
    decode = lambda g: Architecture.uniform(2, "bert", "none", 8 * (1 + g[0]), 2)  # noqa: E731
    return EvolutionarySearch(2, 3, decode, lambda a: 100 * a.layers[0].ffn_dim, kw.pop("budget", 2000),
                              lambda a: a.layers[0].ffn_dim / 100, settings=EvolutionSettings(population=3, generations=2,
                                                                                               parents=2),
                              state_path=tmp_path / "evolution_state.json", **kw)


@pytest.mark.parametrize("edit, culprit", [
    (lambda s: s["evaluated"][0].update(genome=[-1, 0], score=1.0), "genome [-1, 0]"),
    (lambda s: s["evaluated"][0].update(params=1), "stored parameter count 1"),
    (lambda s: s["evaluated"][0].update(score=float("nan")), "score nan"),
    (lambda s: s["population"].append([2, 2]), "never evaluated"),
], ids=["negative-gene", "params", "nan-score", "population"])
def test_an_edited_evolution_state_is_refused_on_resume(tmp_path, edit, culprit):
    _search(tmp_path).step()
    state = json.loads((tmp_path / "evolution_state.json").read_text())
    edit(state)
    (tmp_path / "evolution_state.json").write_text(json.dumps(state))
    with pytest.raises(UserError, match=f"evolution state .*{re.escape(culprit)}.*; delete it"):
        _search(tmp_path)


def test_an_evolution_state_over_a_lower_budget_is_refused(tmp_path):
    _search(tmp_path).step()
    with pytest.raises(UserError, match="exceeds the budget"):
        _search(tmp_path, budget=900)


def _run_with_arch(tmp_path, arch_json: str):
    run = SearchRun(SMOKE, tmp_path / "run")
    (run.dir / "arch.json").write_text(arch_json)
    return run


def test_an_arch_json_edited_over_the_budget_is_refused_before_retraining(tmp_path):
    space = SMOKE.search_space()
    big = Architecture.uniform(space.num_layers, "bert", "none", space.ffn_max, space.num_heads)
    assert space.num_params(big) > SMOKE.budget
    run = _run_with_arch(tmp_path, json.dumps(big.to_dict()))
    with pytest.raises(UserError, match=r"arch.json has [\d,]+ parameters, over budget"):
        retrain_found(run)
    assert not (run.dir / "model").exists()


def test_a_malformed_arch_json_is_refused(tmp_path):
    run = _run_with_arch(tmp_path, '{"layers": [{"block": "bert"}]}')
    with pytest.raises(UserError, match="arch.json is not a valid architecture"):
        retrain_found(run)


def test_a_baseline_folder_of_another_architecture_is_not_reused(tmp_path):
    from elmlib.pipeline.retrain import retrain_architecture

    space = SMOKE.search_space()
    a1 = Architecture.uniform(space.num_layers, "bert", "none", space.ffn_min, space.num_heads)
    a2 = Architecture.uniform(space.num_layers, "mobilebert", "none", space.ffn_min, space.num_heads)
    SearchRun(SMOKE, tmp_path / "run").close()
    folder = tmp_path / "run" / "baselines" / "uniform"
    folder.mkdir(parents=True)
    pd.DataFrame([dict(metric="accuracy", value=0.6, arch=a1.to_json(), inherit_weights=False)]).to_csv(
        folder / "final_metrics.csv", index=False)
    assert retrain_architecture(SMOKE, a1, tmp_path / "run", "uniform")["value"].tolist() == [0.6]
    with pytest.raises(UserError, match="holds the results of another architecture"):
        retrain_architecture(SMOKE, a2, tmp_path / "run", "uniform")


def test_a_model_folder_is_published_whole_or_not_at_all(tmp_path):
    class Breaks:
        def save_pretrained(self, folder):
            Path(folder).mkdir(exist_ok=True)
            (Path(folder) / "config.json").write_text("{}")
            raise KeyboardInterrupt("killed between config.json and the weights")

    with pytest.raises(KeyboardInterrupt):
        publish_model(Breaks(), tmp_path / "model", "digest")
    assert not (tmp_path / "model").exists() and not published(tmp_path / "model", "digest")
    assert list(tmp_path.iterdir()) == []  # no temporary folder left behind
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")  # an interrupted folder of an older version
    assert not published(tmp_path / "model", "digest")


def test_a_torn_last_log_line_is_dropped_on_resume_and_a_damaged_one_is_an_error(tmp_path):
    net = torch.nn.Linear(4, 1)
    _loop(tmp_path, net).run(lambda e: iter([torch.ones(2, 4)] * 4), _plain_step(net))
    lines = (tmp_path / "pretrain.log.jsonl").read_text().splitlines()
    (tmp_path / "pretrain.log.jsonl").write_text("\n".join(lines) + '\n{"step": 5, "lo')
    save_checkpoint(tmp_path / "pretrain.ckpt", {**load_checkpoint(tmp_path / "pretrain.ckpt", ""), "step": 4})
    resumed = _loop(tmp_path, torch.nn.Linear(4, 1))
    with pytest.warns(UserWarning, match="torn last line"):
        resumed.resume()
    assert (tmp_path / "pretrain.log.jsonl").read_text().splitlines() == lines
    (tmp_path / "pretrain.log.jsonl").write_text('{"step": 1, "lo\n' + "\n".join(lines[1:]) + "\n")
    with pytest.raises(UserError, match="line 1 is not valid JSON"):
        _loop(tmp_path, torch.nn.Linear(4, 1)).resume()


def test_a_kill_9_mid_stage_resumes_to_a_finished_run(tmp_path):
    """A real SIGKILL during pretraining (no Python cleanup runs), then the same command finishes."""
    folder = tmp_path / "run"
    argv = [sys.executable, "-m", "elmlib", "search", "--scale", "smoke", "--stages", "pretrain", "--no-progress",
            "--set", "pretrain_epochs=1", "--set", "pretrain_steps=40", "--set", "checkpoint_every=2",
            "--run-dir", str(folder)]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (folder / "pretrain.ckpt").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (folder / "pretrain.ckpt").exists() and not (folder / "pretrain.done.json").exists()
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = [json.loads(line)["step"] for line in (folder / "pretrain.log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 41)) and all(math.isfinite(s) for s in steps)
    assert (folder / "supernet_pretrain.pt").exists()


@pytest.mark.parametrize("argv, culprit", [
    (["proxy", "--data", "{tmp}/none.json", "--out", "{tmp}/s.csv"], "none.json"),
    (["figures", "--results", "{tmp}/nope"], "nope"),
    (["report", "--results", "{tmp}/nope"], "nope"),
    (["data", "show", "glue-sst"], "unknown task 'glue-sst'"),
    (["runs", "--scale", "huge"], "huge"),
], ids=["proxy", "figures", "report", "data", "runs"])
def test_every_command_reports_a_user_error_in_one_line(tmp_path, capsys, argv, culprit):
    before = snapshot(tmp_path)
    code, err = run_cli(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert_one_line(err, culprit)
    assert snapshot(tmp_path) == before


def test_the_paper_preset_offline_names_every_missing_hub_item_in_one_line(tmp_path, capsys):
    code, err = run_cli(capsys, "search", "--scale", "paper", "--run-dir", str(tmp_path / "run"))
    assert code == 2 and not (tmp_path / "run").exists()
    assert_one_line(err, "corpus='wikipedia' (wikimedia/wikipedia)", "corpus='bookcorpus' (bookcorpus/bookcorpus)",
                    "teacher='bert-base-uncased'", "--set teacher=teacher --set corpus=offline")


def test_an_overwrite_never_empties_a_folder_this_process_still_holds(tmp_path):
    first = SearchRun(SMOKE, tmp_path / "run")
    (tmp_path / "run" / "pretrain.done.json").write_text("{}")
    with pytest.raises(UserError, match="open elsewhere in this process"):
        SearchRun(resolve_config("smoke", overrides={"seed": 1}), tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / "pretrain.done.json").exists()
    first.close()


def test_a_finished_run_is_read_without_its_lock(tmp_path):
    """Jobs that only read the main run go on while its baselines retrain under its lock."""
    from elmlib.repro import experiments

    SearchRun(SMOKE, tmp_path / "run").close()
    for stage in ("pretrain", "finetune", "search", "heads", "retrain"):
        (tmp_path / "run" / f"{stage}.done.json").write_text("{}")
    holder = _hold_lock(tmp_path / "run")
    try:
        assert experiments._run(SMOKE, tmp_path / "run") == tmp_path / "run"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_file_system_without_locks_is_used_with_a_warning(tmp_path, monkeypatch):
    import errno as errno_

    import elmlib.pipeline.runfolder as rf

    def no_locks(fd, op):
        raise OSError(errno_.ENOLCK, "No locks available")

    monkeypatch.setattr(rf.fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match="cannot lock files"):
        run = SearchRun(SMOKE, tmp_path / "run")
    run.close()


def test_an_unscoreable_architecture_ranks_last_and_the_state_still_resumes(tmp_path):
    decode = lambda g: Architecture.uniform(2, "bert", "none", 8 * (1 + g[0]), 2)  # noqa: E731
    make = lambda: EvolutionarySearch(  # noqa: E731
        2, 3, decode, lambda a: 100 * a.layers[0].ffn_dim, 2000,
        lambda a: float("nan") if a.layers[0].ffn_dim == 8 else a.layers[0].ffn_dim / 100,
        settings=EvolutionSettings(population=3, generations=2, parents=2), state_path=tmp_path / "s.json")
    search = make()
    search.step()
    unscoreable = [e for e in search.evaluated.values() if e.arch.layers[0].ffn_dim == 8]
    assert unscoreable and all(e.score == -math.inf for e in unscoreable)
    assert search.best().score > -math.inf
    assert make().evaluated.keys() == search.evaluated.keys()


def test_fine_tuning_that_ends_with_non_finite_weights_is_refused():
    class Model(torch.nn.Module):  # a finite loss whose gradient is infinite: sqrt at 0
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return type("Out", (), {"loss": torch.sqrt(self.w * x).sum()})

    with pytest.raises(TrainingDiverged, match="w is not finite"):
        fit(Model(), lambda e: iter([{"x": torch.ones(1)}]), 1, lr=1e-3)
