"""Teachers for knowledge distillation: the pretrained encoder and per-task fine-tuned copies.

ELM distils the supernet from a BERT teacher's hidden states and attention maps, and fine-tunes
with a task teacher (paper, "Training settings": Adam(0.9, 0.999), weight decay 0.01, linear decay
with 10% warm-up, lr 5e-5 for GLUE). Offline the teacher is the packaged all-MiniLM-L6-v2 (BERT,
6 layers, hidden 384, no MLM head); at the ``paper`` scale pass ``bert-base-uncased``.

    from elmlib.data.teachers import load_teacher, finetune_teacher
    encoder = load_teacher()                                   # outputs hidden states + attentions
    model, metrics = finetune_teacher("boolq", epochs=3)       # cached; dev metrics -> results/teachers.csv
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import time
from pathlib import Path

import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from elmlib.data.tasks import compute_metrics, get_task, source_hash
from elmlib.data.tokenization import from_hub, load_tokenizer, task_dataloader, teacher_dir, tokenize_task
from elmlib.io import cache
from elmlib.io.files import cache_dir, locked, shared_results_dir, write_result
from elmlib.io.inputs import read_results_csv
from elmlib.train.training import fit

#: How to mend a corrupt results/teachers.csv: a cached teacher whose row is missing records it again.
_TABLE_FIX = "delete it: every cached teacher records its row again when next loaded"


def _resolve(name_or_path: str) -> str:
    if name_or_path == "teacher":
        return str(teacher_dir())
    return name_or_path


def load_teacher(name_or_path: str = "teacher", output_hidden_states: bool = True, output_attentions: bool = True):
    """A BERT-family encoder (folder or hub id) in eval mode that returns all hidden states and
    attention maps (eager attention: fused kernels do not return the maps)."""
    path = _resolve(name_or_path)
    kwargs = dict(output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                  attn_implementation="eager")
    if Path(path).is_dir():
        model = AutoModel.from_pretrained(path, local_files_only=True, **kwargs)
    else:
        model = from_hub(lambda n: AutoModel.from_pretrained(n, **kwargs), path, "teacher model", "teacher")
    return model.eval()


def takes_token_types(model) -> bool:
    """Whether ``model`` reads segment ids: its forward names ``token_type_ids`` (DistilBERT's does not)
    and its config has two segment types or more (RoBERTa checkpoints have one, so the pair segment's
    ids of 1 would index past their table)."""
    named = "token_type_ids" in inspect.signature(model.forward).parameters
    return named and getattr(model.config, "type_vocab_size", 2) >= 2


def teacher_inputs(model, batch: dict) -> dict:
    """The inputs of a batch that the teacher ``model`` reads: input_ids, attention_mask and, where it
    takes them (`takes_token_types`), token_type_ids; labels and row keys stay behind."""
    keys = ("input_ids", "attention_mask") + (("token_type_ids",) if takes_token_types(model) else ())
    return {k: batch[k] for k in keys if k in batch}


def _settings_key(teacher: str, task: str, settings: dict) -> str:
    blob = json.dumps({"teacher": teacher, "task": task, **settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _cache_inputs(teacher: str, task: str, settings: dict) -> dict:
    """What a fine-tuned teacher is made from, by content: the starting checkpoint's files (a hub id
    by name: its files are not local), the task's source files (hub tasks by id) and every setting."""
    source = _resolve(teacher)
    spec = get_task(task)
    return {"teacher": teacher,
            "teacher_digest": cache.folder_digest(source) if Path(source).is_dir() else f"hub:{source}",
            "task": task, "data": source_hash(task) if spec.source == "offline" or spec.from_table else f"hub:{spec.hub_id}",
            "settings": settings}


def _recorded(teacher: str, task: str, key: str, metrics: dict) -> bool:
    """Whether results/teachers.csv already holds this teacher's metrics under its cache key (True where
    no table is kept: a search outside the repository without ``$ELMLIB_RESULTS``)."""
    if shared_results_dir() is None:
        return True
    table = shared_results_dir() / "teachers.csv"
    if not table.exists():
        return False
    rows = read_results_csv(table, fix=_TABLE_FIX)
    if "cache_key" not in rows:
        return False
    mine = rows[(rows["teacher"] == teacher) & (rows["task"] == task) & (rows["cache_key"] == key)]
    values = dict(zip(mine["metric"], mine["value"]))
    return all(m in values and math.isclose(values[m], v, rel_tol=1e-9, abs_tol=1e-12) for m, v in metrics.items())


def _load_cached(path: Path, teacher: str, task: str, key: str):
    """A published teacher and its metrics; its row in results/teachers.csv is written again if a crash
    between publishing and recording (or a deleted table) left it out."""
    info = json.loads((path / "metrics.json").read_text())
    if not _recorded(teacher, task, key, info["metrics"]):
        record_teacher_metrics(task, teacher, info["metrics"], n_dev=info["n_dev"], steps=info["steps"], key=key,
                               settings=info["settings"], wall_time_s=info["wall_time_s"])
    model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
    return model.eval(), info["metrics"]


def _predict(model, loader) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for batch in loader:
            labels.append(batch.pop("labels"))
            logits.append(model(**teacher_inputs(model, batch)).logits)
    return torch.cat(logits), torch.cat(labels)


def finetune_teacher(task: str, teacher: str = "teacher", *, tokenizer: str | None = None, epochs: int = 3,
                     lr: float = 5e-5, batch_size: int = 32, max_length: int = 128, max_steps: int | None = None, warmup_ratio: float = 0.1,
                     weight_decay: float = 0.01, seed: int = 0, train_limit: int | None = None,
                     eval_limit: int | None = None, force: bool = False):
    """Fine-tune ``teacher`` on the task's train90 split; return (model, dev metrics).

    Cached under ``cache_dir()/teachers`` keyed by teacher, task and every setting; a cache hit
    loads the model and its metrics without training. The cache folder's manifest records the
    digests of the starting checkpoint, the task's data and the settings, and of every file it
    holds: a folder left by an interrupted write, or made from other inputs, is trained again.
    Dev metrics are recorded in ``results/teachers.csv`` right after publishing, and again on a
    cache hit if the row is missing. Randomness (head init, dropout, shuffling) is seeded inside a
    forked RNG, so the caller's global RNG is untouched; CPU runs repeat exactly, GPU kernels may not.
    ``tokenizer`` (a folder or hub id; default the teacher's own) joins the settings only when given, so
    teachers cached before it keep their keys."""
    spec = get_task(task)
    task = spec.name  # a data file path -> its content-named task (cache folders are named by it)
    if spec.num_labels < 1:
        raise ValueError(f"task {task!r} is extractive QA; finetune_teacher handles classification/regression")
    if epochs < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError(f"epochs={epochs}, max_steps={max_steps}; both must be >= 1")
    settings = dict(epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, max_steps=max_steps,
                    warmup_ratio=warmup_ratio, weight_decay=weight_decay, seed=seed, train_limit=train_limit,
                    eval_limit=eval_limit, **({"tokenizer": tokenizer} if tokenizer else {}))
    key = _settings_key(teacher, task, settings)
    path = cache_dir() / "teachers" / f"{task}-{key}"
    inputs = _cache_inputs(teacher, task, settings)
    # Runs of one seed started together (elmlib.repro.schedule) train the teacher once: the others wait here,
    # then load it from the cache.
    with locked(path):
        if not force and cache.problem(path, inputs) is None:
            return _load_cached(path, teacher, task, key)
        model, tokenizer, info = _train(spec, teacher, settings)
        tmp = cache.new_tmp(path)
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / "metrics.json").write_text(json.dumps(info, indent=2))
        except BaseException:
            cache.discard(tmp)
            raise
        cache.discard(path)  # stale, partial or forced: never mixed with the new files
        cache.publish(tmp, path, inputs)
        record_teacher_metrics(task, teacher, info["metrics"], n_dev=info["n_dev"], steps=info["steps"], key=key,
                               settings=settings, wall_time_s=info["wall_time_s"])
        return model.eval(), info["metrics"]


def _train(spec, teacher: str, settings: dict):
    """Fine-tune ``teacher`` on ``spec``'s train90 split and score dev; returns (model, tokenizer, the
    metrics.json record: metrics, settings, steps, sizes, wall time)."""
    s, task, t0 = settings, spec.name, time.perf_counter()
    tokenizer = load_tokenizer(s.get("tokenizer") or teacher)
    train = tokenize_task(task, "train90", tokenizer, s["max_length"])
    dev = tokenize_task(task, "dev", tokenizer, s["max_length"])
    if s["train_limit"]:  # a seeded subset (tests, smoke runs)
        g = torch.Generator().manual_seed(s["seed"])
        train = train.select(torch.randperm(len(train), generator=g)[:s["train_limit"]].tolist())
    if s["eval_limit"]:
        dev = dev.select(range(min(s["eval_limit"], len(dev))))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s["seed"])
        load = lambda name: AutoModelForSequenceClassification.from_pretrained(  # noqa: E731
            name, num_labels=spec.num_labels, local_files_only=Path(name).is_dir(),
            problem_type="regression" if spec.is_regression else "single_label_classification")
        source = _resolve(teacher)
        model = load(source) if Path(source).is_dir() else from_hub(load, source, "teacher model", "teacher")
        loader = task_dataloader(train, tokenizer, s["batch_size"], shuffle=True, seed=s["seed"])
        total = s["epochs"] * len(loader) if s["max_steps"] is None else min(s["max_steps"], s["epochs"] * len(loader))
        batches = lambda epoch: ({**teacher_inputs(model, b), "labels": b["labels"]} for b in loader)  # noqa: E731
        steps = len(fit(model, batches, total, lr=s["lr"], weight_decay=s["weight_decay"],
                        warmup_ratio=s["warmup_ratio"]))
        logits, labels = _predict(model, task_dataloader(dev, tokenizer, 2 * s["batch_size"]))  # DataLoader draws a seed
    metrics = compute_metrics(spec, logits.numpy(), labels.numpy())
    if any(math.isnan(v) for v in metrics.values()):
        raise RuntimeError(f"{task}: dev metrics {metrics} contain NaN (constant predictions on a tiny dev subset?)")
    return model, tokenizer, {"metrics": metrics, "settings": settings, "teacher": teacher, "task": task,
                              "steps": steps, "n_train": len(train), "n_dev": len(dev),
                              "wall_time_s": time.perf_counter() - t0}


def record_teacher_metrics(task: str, teacher: str, metrics: dict, *, n_dev: int, steps: int, key: str,
                           settings: dict, wall_time_s: float) -> Path | None:
    """Upsert one row per (teacher, task, metric, recipe) in results/teachers.csv; other rows are kept.
    The recipe is the cache key: the micro and small scales fine-tune a task's teacher differently
    (sequence length, steps, dev rows), and each scale's figure must stay beside the other.
    Outside the repository without ``$ELMLIB_RESULTS`` nothing is written (returns None): the teacher's
    cache folder keeps its metrics (metrics.json) and a later run inside the repository records them."""
    import pandas as pd  # heavy: pandas, needed only to write the results table

    if shared_results_dir() is None:
        return None
    path = shared_results_dir() / "teachers.csv"
    new = pd.DataFrame([{"teacher": teacher, "task": task, "metric": m, "value": v, "split": "dev", "n_dev": n_dev,
                         "steps": steps, "cache_key": key, **settings, "wall_time_s": round(wall_time_s, 2)}
                        for m, v in metrics.items()])
    with locked(path):  # runs in parallel (seeds, ablations) share this file; without the lock a row can be lost
        old = read_results_csv(path, fix=_TABLE_FIX) if path.exists() else pd.DataFrame()
        if len(old):
            same_recipe = old["cache_key"].isna() | (old["cache_key"] == key) if "cache_key" in old else True
            old = old[~((old["teacher"] == teacher) & (old["task"] == task) & old["metric"].isin(list(metrics))
                        & same_recipe)]
        table = pd.concat([old, new], ignore_index=True).sort_values(["teacher", "task", "metric", "cache_key"])
        for column in ("train_limit", "eval_limit", "max_steps"):  # None in some rows: keep the others integers
            if column in table:
                table[column] = table[column].astype("Int64")
        return write_result(table, path, config={"last_written": {"teacher": teacher, "task": task, **settings}},
                            seed=settings.get("seed"), wall_time_s=wall_time_s)
