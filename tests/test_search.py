"""The search pipeline: settings, fail-fast input checks, and kill-and-resume equality (stages 1 and 3)."""
import json
import math
import shutil

import pandas as pd
import pytest
import torch

from elmlib.pipeline.config import parse_budget, parse_sets, resolve_config
from elmlib.pipeline.run import SearchRun, run_search
from elmlib.train.training import Interrupted, load_checkpoint, save_checkpoint

# A few steps of everything: the whole pipeline in seconds.
TINY = dict(max_length=32, pretrain_epochs=2, pretrain_steps=4, pretrain_batch_size=8, finetune_steps=3,
            finetune_batch_size=8, train_limit=48, teacher_max_steps=2, population=4, generations=2, parents=2,
            search_limit=32, retrain_pretrain_steps=2, retrain_finetune_steps=2, dev_limit=32, checkpoint_every=3,
            latency_repeats=2, eval_batch_size=16, pca_batches=1, cka_batches=1, growth_k=3)


@pytest.fixture(autouse=True)
def _results_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path / "results"))  # teachers.csv must not touch results/


def test_settings_resolve_by_scale_file_and_overrides(tmp_path):
    cfg = resolve_config("smoke", task="trec", overrides={"kd": "classical", "population": "6"})
    assert (cfg.scale, cfg.task, cfg.kd, cfg.population, cfg.space) == ("smoke", "trec", "classical", 6, "smoke")
    (tmp_path / "c.json").write_text(json.dumps({"generations": 7, "population": 9}))
    cfg = resolve_config("small", config_file=tmp_path / "c.json", overrides={"population": 5})
    assert (cfg.generations, cfg.population) == (7, 5)
    assert resolve_config("paper").population == 50 and resolve_config("paper").mutation_prob == 0.1
    assert resolve_config("paper", budget="5M").space == "micro"
    assert parse_budget("15.7M") == 15.7e6 and parse_budget("500k") == 5e5 and parse_sets(["a=b=c"]) == {"a": "b=c"}
    assert resolve_config("smoke", overrides={"head_search": "false"}).head_search is False
    assert cfg.digest() != resolve_config("small").digest()


@pytest.mark.parametrize("kwargs, message", [
    (dict(scale="huge"), r"scale='huge' is not allowed"),
    (dict(overrides={"popsize": 3}), r"unknown setting\(s\) \['popsize'\]"),
    (dict(overrides={"kd": "mse"}), r"setting kd='mse' is not allowed; expected one of \('relational', 'classical'\)"),
    (dict(overrides={"population": "many"}), r"setting population='many' is not allowed; expected an integer"),
    (dict(overrides={"mutation_prob": 2}), r"setting mutation_prob=2.0 is not allowed"),
    (dict(budget="lots"), r"budget='lots' is not allowed"),
    (dict(overrides={"precision": "fp16"}), r"setting precision='fp16' is not allowed; expected one of \('fp32', 'bf16'\)"),
])
def test_bad_settings_name_key_value_and_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resolve_config(**{"scale": "smoke", **kwargs})


def test_bad_input_fails_before_any_training(tmp_path):
    with pytest.raises(ValueError, match="nosuchtask"):
        SearchRun(resolve_config("smoke", task="nosuchtask"), tmp_path / "a")
    with pytest.raises(ValueError, match=r"budget=1e\+05 is not allowed for the 'smoke' space: architectures have"):
        SearchRun(resolve_config("smoke", budget=1e5), tmp_path / "b")
    with pytest.raises(ValueError, match="budget=5e\\+07 is not allowed"):
        SearchRun(resolve_config("smoke", budget="50M"), tmp_path / "c")
    SearchRun(resolve_config("smoke"), tmp_path / "d")
    with pytest.raises(ValueError, match=r"was made with another config \(differs in \['seed'\]\)"):
        SearchRun(resolve_config("smoke", overrides={"seed": 1}), tmp_path / "d")
    SearchRun(resolve_config("smoke", overrides={"seed": 1}), tmp_path / "d", overwrite=True)
    assert json.loads((tmp_path / "d" / "config.json").read_text())["seed"] == 1
    assert not any(p.suffix == ".ckpt" for p in tmp_path.rglob("*"))  # nothing trained


def test_corrupt_or_foreign_checkpoints_are_refused(tmp_path):
    (tmp_path / "x.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not an elmlib checkpoint"):
        load_checkpoint(tmp_path / "x.ckpt", "abc")
    torch.save({"weights": 1}, tmp_path / "y.ckpt")
    with pytest.raises(ValueError, match="is not an elmlib checkpoint"):
        load_checkpoint(tmp_path / "y.ckpt", "abc")
    save_checkpoint(tmp_path / "z.ckpt", {"config_digest": "other"})
    with pytest.raises(ValueError, match="belongs to another config"):
        load_checkpoint(tmp_path / "z.ckpt", "abc")


def _outputs(run_dir):
    read = lambda name: pd.read_csv(run_dir / name)  # noqa: E731
    return {
        "pca": read("pca_scores.csv"), "growth": read("growth.csv"), "history": read("search_history.csv"),
        "cka": read("cka.csv"), "metrics": read("final_metrics.csv").drop(columns=["latency_ms"]),
        "arch": json.loads((run_dir / "arch.json").read_text()),
        "log": [json.loads(l) for l in (run_dir / "pretrain.log.jsonl").read_text().splitlines()],
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("ELMLIB_RESULTS", str(tmp_path_factory.mktemp("results")))
    run_dir = tmp_path_factory.mktemp("full")
    run_search(resolve_config("smoke", overrides=TINY), run_dir, progress=False)
    mp.undo()
    return run_dir


def test_pipeline_writes_every_artifact(uninterrupted):
    out = _outputs(uninterrupted)
    assert set(out["pca"].columns) == {"epoch", "layer", "block", "block_type", "sharing", "ffn_dim", "score",
                                       "normalized"}
    assert len(out["pca"]) == 2 * 4 * 6  # epochs x layers x blocks
    assert len(out["growth"]) == 2 * 3 and (out["growth"].new_ffn_dim - out["growth"].old_ffn_dim == 16).all()
    history = out["history"]
    assert history.arch.is_unique and (history.params <= 1.05e6).all()
    assert set(out["cka"].columns) == {"layer", "head_i", "head_j", "cka"}
    assert out["arch"]["params"] <= 1.05e6 and len(out["arch"]["layers"]) == 4
    metrics = out["metrics"]
    assert list(metrics.metric) == ["accuracy"] and 0 <= metrics.value[0] <= 1
    assert (uninterrupted / "model" / "model.safetensors").exists()
    sim = pd.read_csv(uninterrupted / "block_similarity.csv")
    assert len(sim) == 4 * 36 and sim.similarity.between(-1.0001, 1.0001).all()
    assert not list(uninterrupted.glob("*.ckpt"))  # finished stages drop their checkpoints


def test_feature_collapse_measures_both_saved_supernets(uninterrupted, tmp_path):
    from elmlib.repro.experiments import feature_collapse

    table = feature_collapse(uninterrupted, limit=20)
    assert list(table.stage) == ["pretrain", "finetune"] and (table.rows == 20).all()
    assert table.centroid_cosine.between(-1, 1.0001).all()
    assert math.isnan(table.logit_sd[0]) and table.logit_sd[1] > 0  # only the fine-tuned supernet has a head
    with pytest.raises(FileNotFoundError, match="has no arch_searched.json"):
        feature_collapse(tmp_path)
    # A copy of the run folder's text files (a run record) re-renders from the cache, without weights.
    record = tmp_path / "record"
    record.mkdir()
    for path in uninterrupted.iterdir():
        if path.is_file() and path.suffix != ".pt":
            shutil.copy2(path, record / path.name)
    pd.testing.assert_frame_equal(feature_collapse(record, limit=20), table)
    with pytest.raises(FileNotFoundError, match="neither supernet_pretrain.pt"):
        feature_collapse(record, limit=21)


@pytest.mark.parametrize("stage, kill_at", [("pretrain", 6), ("search", 5)])
def test_killed_run_resumes_to_the_same_result(tmp_path, uninterrupted, stage, kill_at):
    cfg = resolve_config("smoke", overrides=TINY)
    with pytest.raises(Interrupted):  # a simulated kill after pretraining step 6 / search evaluation 5
        run_search(cfg, tmp_path, progress=False, stop_at={stage: kill_at})
    assert not (tmp_path / f"{stage}.done.json").exists()
    elapsed = tmp_path / f"{stage}.elapsed.json"  # written at each checkpoint (pretraining: step 5)
    kept = json.loads(elapsed.read_text())["seconds"] if elapsed.exists() else 0.0
    assert stage != "pretrain" or kept > 0
    run_search(cfg, tmp_path, progress=False)  # the same command again
    done = json.loads((tmp_path / f"{stage}.done.json").read_text())
    assert done.get("earlier_attempts_seconds", 0.0) == kept and done["seconds"] > kept  # both attempts count
    assert not list(tmp_path.glob("*.elapsed.json"))
    got, want = _outputs(tmp_path), _outputs(uninterrupted)
    for key in ("pca", "growth", "history", "cka", "metrics"):
        pd.testing.assert_frame_equal(got[key], want[key])
    assert got["arch"] == want["arch"]
    strip = lambda log: [{k: v for k, v in r.items() if k != "seconds"} for r in log]  # noqa: E731
    assert strip(got["log"]) == strip(want["log"])  # one line per step, no duplicates after the resume


def test_any_architecture_retrains_with_the_same_recipe(uninterrupted, monkeypatch, tmp_path):
    from elmlib.pipeline.retrain import retrain_architecture
    from elmlib.nas.space import Architecture

    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path))
    arch = Architecture.uniform(4, "mobilebert", "none", 32, 4)
    table = retrain_architecture(resolve_config("smoke", overrides=TINY), arch, uninterrupted, "all_mobilebert",
                                 progress=False)
    assert list(table.metric) == ["accuracy"] and table.params[0] == 1008448 and not table.inherit_weights[0]
    assert (uninterrupted / "baselines" / "all_mobilebert" / "model" / "config.json").exists()
    again = retrain_architecture(resolve_config("smoke", overrides=TINY), arch, uninterrupted, "all_mobilebert")
    pd.testing.assert_frame_equal(again, pd.read_csv(uninterrupted / "baselines" / "all_mobilebert" /
                                                     "final_metrics.csv"))


def test_proxy_only_search_skips_supernet_training(tmp_path):
    cfg = resolve_config("smoke", overrides={**TINY, "search_mode": "proxy_only"})
    run_search(cfg, tmp_path, progress=False)
    assert not (tmp_path / "supernet_pretrain.pt").exists() and not (tmp_path / "pretrain.log.jsonl").exists()
    history = pd.read_csv(tmp_path / "search_history.csv")
    assert (history.metric == "proxy").all() and (history.params <= cfg.budget).all()
    searched = json.loads((tmp_path / "arch_searched.json").read_text())
    assert searched["search_mode"] == "proxy_only" and searched["score"] == history.score.max()
    assert not json.loads((tmp_path / "arch.json").read_text())["head_search"]
    metrics = pd.read_csv(tmp_path / "final_metrics.csv")
    assert not metrics.inherit_weights[0] and 0 <= metrics.value[0] <= 1


def test_proxy_assisted_search_reuses_the_trained_supernet(tmp_path, uninterrupted):
    import shutil

    cfg = resolve_config("smoke", overrides={**TINY, "search_mode": "proxy_assisted", "proxy_fraction": 0.5})
    SearchRun(cfg, tmp_path).close()  # an elmlib run folder of this config, into which the trained stages go
    for name in ("supernet_finetune.pt", "pretrain.done.json", "finetune.done.json"):
        shutil.copy(uninterrupted / name, tmp_path / name)
    run_search(cfg, tmp_path, progress=False, stages=("search",))
    searched = json.loads((tmp_path / "arch_searched.json").read_text())
    assert searched["search_mode"] == "proxy_assisted" and searched["proxy_ranked"] >= 2 * searched["evaluated"] - 2
    assert searched["evaluated"] <= 4 * 2


def test_importance_reordering_in_the_search_resumes_to_the_same_result(tmp_path):
    """importance=true reorders FFN units after each pretraining epoch and after fine-tuning; the
    accumulated scores ride in the checkpoint. elastic_widths=3 lets the search take narrower prefixes."""
    cfg = resolve_config("smoke", overrides={**TINY, "importance": True, "elastic_widths": 3})
    run_search(cfg, tmp_path / "full", progress=False)
    # Killed in the middle of epoch 2 (checkpoint at step 6 holds the accumulator mid-epoch), resumed.
    with pytest.raises(Interrupted):
        run_search(cfg, tmp_path / "killed", progress=False, stop_at={"pretrain": 7})
    assert "importance" in torch.load(tmp_path / "killed" / "pretrain.ckpt", weights_only=True)["extra"]
    run_search(cfg, tmp_path / "killed", progress=False)
    got, want = _outputs(tmp_path / "killed"), _outputs(tmp_path / "full")
    for key in ("pca", "growth", "history", "metrics"):
        pd.testing.assert_frame_equal(got[key], want[key])
    a, b = (torch.load(d / "supernet_finetune.pt", weights_only=True)["supernet"] for d in (tmp_path / "full",
                                                                                       tmp_path / "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The search looked at widths below the grown sizes.
    grown = {(r.layer, r.block_type, r.sharing): r.ffn_dim for r in want["pca"].itertuples() if r.epoch == 1}
    final = {k: v + 16 * sum(1 for g in want["growth"].itertuples()
                              if g.epoch == 1 and (g.layer, g.block_type, g.sharing) == k) for k, v in grown.items()}
    widths = [(i, l["block"], l["sharing"], l["ffn_dim"]) for a in want["history"].arch
              for i, l in enumerate(json.loads(a)["layers"])]
    assert any(f < final[(i, b, s)] for i, b, s, f in widths)


def test_importance_tracker_sorts_units_and_preserves_the_function():
    """After reorder(), the same batches give every used FFN descending importance, the same outputs,
    and the accumulator restarts (its state is what the checkpoint carries)."""
    import random
    from types import SimpleNamespace

    from elmlib.nas.importance import ImportanceAccumulator
    from elmlib.pipeline.stages.supernet import ImportanceTracker
    from elmlib.nas.space import SearchSpace
    from elmlib.nas.supernet import Supernet

    net = Supernet(SearchSpace.preset("smoke", ffn_init=48), seed=0).eval()  # no dropout: repeatable
    arch = net.sample(random.Random(0))
    ids = torch.randint(1000, 2000, (4, 12), generator=torch.Generator().manual_seed(0))
    target = torch.randn(4, 12, 64, generator=torch.Generator().manual_seed(1))
    loss = lambda: (net(ids, arch=arch).last_hidden_state * target).sum()  # noqa: E731
    loop = SimpleNamespace(extra={})
    tracker = ImportanceTracker(net, loop, enabled=True)
    loss().backward()
    tracker.update()
    net.zero_grad(set_to_none=True)
    assert loop.extra["importance"]["steps"] == 1
    with torch.no_grad():
        before = loss()
    tracker.reorder()
    with torch.no_grad():
        assert torch.allclose(loss(), before, rtol=1e-5, atol=1e-4)
    assert loop.extra["importance"]["steps"] == 0
    check = ImportanceAccumulator(net)
    loss().backward()
    check.update()
    used = {f"layers.{i}.{l.block}_{l.sharing}" for i, l in enumerate(arch.layers)}
    for name, s in check.scores().items():
        if name in used:
            assert all((f[:-1] >= f[1:] * (1 - 1e-4)).all() for f in s.ffn), name
    off = ImportanceTracker(net, SimpleNamespace(extra={}), enabled=False)
    off.update(), off.reorder()
    assert off.loop.extra == {}


def test_a_setting_added_later_keeps_earlier_run_folders_valid(tmp_path):
    """precision came after the first run folders: at its default it is not in the config (or its
    digest), so a folder made before it still matches; bf16 is another config."""
    fp32, bf16 = resolve_config("smoke"), resolve_config("smoke", overrides={"precision": "bf16"})
    assert "precision" not in fp32.to_dict() and bf16.to_dict()["precision"] == "bf16"
    assert fp32.digest() != bf16.digest()
    (tmp_path / "config.json").write_text(json.dumps(fp32.to_dict()))
    SearchRun(fp32, tmp_path)  # accepted as the same config
    with pytest.raises(ValueError, match=r"differs in \['precision'\]"):
        SearchRun(bf16, tmp_path)


def test_bf16_training_is_deterministic_and_tracks_fp32(tmp_path):
    """precision=bf16: supernet pretraining runs its steps under bf16 autocast, the same seed gives the
    same losses on CPU, and the first step's losses are close to float32's."""
    def pretrain(name, precision):
        cfg = resolve_config("smoke", overrides={**TINY, "pretrain_epochs": 1, "precision": precision})
        run_search(cfg, tmp_path / name, progress=False, stages=("pretrain",))
        return [json.loads(l) for l in (tmp_path / name / "pretrain.log.jsonl").read_text().splitlines()]

    a, b, ref = pretrain("a", "bf16"), pretrain("b", "bf16"), pretrain("fp32", "fp32")
    strip = lambda log: [{k: v for k, v in r.items() if k != "seconds"} for r in log]  # noqa: E731
    assert strip(a) == strip(b)
    assert all(math.isfinite(r["loss"]) for r in a)
    assert a[0]["loss"] != ref[0]["loss"]  # bf16 really ran
    assert a[0]["loss"] == pytest.approx(ref[0]["loss"], rel=0.02)
    state = torch.load(tmp_path / "a" / "supernet_pretrain.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in state["supernet"].values() if v.is_floating_point())


def test_precision_of_every_experiment_is_an_argument(monkeypatch):
    from elmlib.repro import experiments

    monkeypatch.setenv("ELMLIB_PRECISION", "bf16")  # read by `make` and the runs command only
    assert experiments.config("smoke").precision == experiments.config("smoke", precision="").precision == "fp32"
    assert experiments.config("micro", seed=2, precision="bf16").precision == "bf16"
    with pytest.raises(ValueError, match="precision='half' is not allowed"):
        experiments.config("smoke", precision="half")


def test_the_search_cost_needs_no_retrained_model(tmp_path, monkeypatch):
    """The efficiency notebook asks for SEARCH_STAGES only: the run folders stop before retraining, their
    recorded stage times are the ones it plots, and a later full call finishes the same folder."""
    from elmlib.repro import experiments as ex
    from elmlib.repro.figures import efficiency

    def tiny(scale, seed=0, task="boolq", budget=None, precision=None, **overrides):
        return resolve_config(scale, task, budget, {"seed": seed, **TINY, **overrides})

    monkeypatch.setattr(ex, "config", tiny)
    runs = {"dynamic": ex.main_run("smoke", root=tmp_path, stages=ex.SEARCH_STAGES),
            "fixed": ex.ablation_run("dynamic_ffn", "smoke", root=tmp_path, stages=ex.SEARCH_STAGES)}
    for run in runs.values():
        assert set(ex.stage_seconds(run)) == set(ex.SEARCH_STAGES) == {"pretrain", "finetune", "search", "heads"}
        assert (run / "arch.json").exists() and not (run / "final_metrics.csv").exists()
    table = efficiency.efficiency_table(runs, "smoke", 0)
    assert len(table) == 2 * 4 and (table.seconds > 0).all()
    assert json.loads((runs["fixed"] / "config.json").read_text())["dynamic_ffn"] is False
    ex.main_run("smoke", root=tmp_path)
    assert set(ex.stage_seconds(runs["dynamic"])) == set(ex.STAGES) - {"suite"}  # no suite set: no suite stage
    assert pd.read_csv(runs["dynamic"] / "final_metrics.csv").value.between(0, 1).all()
