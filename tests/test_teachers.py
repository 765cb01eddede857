"""Teacher loading (hidden states + attention maps for KD) and cached per-task fine-tuning."""
import pandas as pd
import pytest
import torch

from elmlib.data import teachers
from elmlib.data.sources import HubUnavailable
from elmlib.data.tokenization import load_tokenizer


def test_teacher_outputs_hidden_states_and_attentions():
    model = teachers.load_teacher()
    tok = load_tokenizer("teacher")
    batch = tok(["a short sentence", "and another, longer one here"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    n, length = batch["input_ids"].shape
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert len(out.hidden_states) == 7 and out.hidden_states[-1].shape == (n, length, 384)
    assert len(out.attentions) == 6 and out.attentions[0].shape == (n, 12, length, length)
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(n, 12, length), atol=1e-5)


def test_hub_teacher_fails_fast_offline():
    with pytest.raises(HubUnavailable, match="'teacher'"):
        teachers.load_teacher("bert-base-uncased")


def test_finetune_few_steps_caches_and_records(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path / "results"))
    csv = tmp_path / "results" / "teachers.csv"
    csv.parent.mkdir()
    pd.DataFrame([{"teacher": "teacher", "task": "boolq", "metric": "accuracy", "value": 0.7}]).to_csv(csv, index=False)
    state = torch.random.get_rng_state()
    kwargs = dict(epochs=1, max_steps=2, batch_size=4, max_length=32, train_limit=16, eval_limit=64, seed=0)
    model, metrics = teachers.finetune_teacher("trec", **kwargs)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched
    assert set(metrics) == {"accuracy"} and 0.0 <= metrics["accuracy"] <= 1.0
    assert model.config.num_labels == 6
    table = pd.read_csv(csv)
    assert set(zip(table["task"], table["metric"])) == {("boolq", "accuracy"), ("trec", "accuracy")}
    row = table[table["task"] == "trec"].iloc[0]
    assert row["steps"] == 2 and row["n_dev"] == 64 and row["value"] == pytest.approx(metrics["accuracy"])
    assert (csv.parent / "teachers.provenance.json").exists()
    assert len([d for d in (tmp_path / "cache" / "teachers").iterdir() if d.is_dir()]) == 1
    monkeypatch.setattr(teachers, "fit", lambda *a, **k: pytest.fail("trained again despite the cache"))
    _, again = teachers.finetune_teacher("trec", **kwargs)
    assert again == metrics


def test_teachers_of_other_recipes_keep_their_rows(tmp_path, monkeypatch):
    """micro and small fine-tune a task's teacher with different recipes: one row each; the same recipe
    again replaces its row."""
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path))
    record = lambda key, value, limit: teachers.record_teacher_metrics(  # noqa: E731
        "rotten_tomatoes", "teacher", {"accuracy": value}, n_dev=10, steps=1, key=key,
        settings={"seed": 0, "eval_limit": limit}, wall_time_s=0.0)
    record("micro", 0.81, None)
    record("small", 0.85, 1000)
    record("small", 0.86, 1000)
    table = pd.read_csv(tmp_path / "teachers.csv")
    assert sorted(zip(table["cache_key"], table["value"])) == [("micro", 0.81), ("small", 0.86)]
    assert "1000.0" not in (tmp_path / "teachers.csv").read_text()  # integers stay integers beside a blank


def _record_many(worker: int, n: int) -> None:
    for i in range(n):
        teachers.record_teacher_metrics(f"task{worker}-{i}", "teacher", {"accuracy": 0.5}, n_dev=1, steps=1, key="k",
                                        settings={"seed": 0}, wall_time_s=0.0)


def test_concurrent_runs_keep_every_teacher_row(tmp_path, monkeypatch):
    """Parallel runs (seeds, ablations) upsert the shared teachers.csv; none may lose another's row."""
    import multiprocessing

    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path))
    ctx = multiprocessing.get_context("spawn")  # a forked child can inherit a lock held by a thread (tqdm, torch)
    workers = [ctx.Process(target=_record_many, args=(w, 15)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
    assert [p.exitcode for p in workers] == [0] * 4
    table = pd.read_csv(tmp_path / "teachers.csv")
    assert sorted(table["task"]) == sorted(f"task{w}-{i}" for w in range(4) for i in range(15))


def _finetune_counting(marker: str) -> None:
    train = teachers.fit

    def counted(*args, **kwargs):
        with open(marker, "a") as f:
            f.write("trained\n")
        return train(*args, **kwargs)

    teachers.fit = counted
    teachers.finetune_teacher("trec", epochs=1, max_steps=4, batch_size=4, max_length=32, train_limit=16,
                              eval_limit=32, seed=0)


def test_concurrent_runs_train_one_teacher_once(tmp_path, monkeypatch):
    """Run folders of one seed started together (elmlib.repro.schedule) share a teacher: one trains it, the
    others wait on its lock and load it from the cache."""
    import multiprocessing

    monkeypatch.setenv("ELMLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path / "results"))
    marker = tmp_path / "trained.txt"
    ctx = multiprocessing.get_context("spawn")  # a forked child can inherit a lock held by a thread (tqdm, torch)
    workers = [ctx.Process(target=_finetune_counting, args=(str(marker),)) for _ in range(3)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(300)
    assert [p.exitcode for p in workers] == [0] * 3
    assert marker.read_text().splitlines() == ["trained"]
