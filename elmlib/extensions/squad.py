"""Extractive QA (SQuAD v1.1 / v2.0): features with doc stride, span post-processing, EM/F1 (paper, Table III).

The paper reports SQuAD dev EM/F1 for its searched models. Long contexts are cut into overlapping
windows (doc stride); each window predicts start/end logits; the best valid span over all windows
of a question is the answer (v2.0: or no answer, when the [CLS] "null" score wins). EM and F1
follow the official evaluation scripts (SQuAD v1.1 ``evaluate-v1.1.py`` and v2.0
``evaluate-v2.0.py``, Rajpurkar et al.): lowercase, strip punctuation and the articles a/an/the,
collapse whitespace; F1 over bag-of-token overlap; maximum over the gold answers; in percent.

    from elmlib.extensions.squad import read_squad_json, prepare_eval_features, postprocess_predictions, squad_evaluate
    examples = read_squad_json("tests/fixtures/squad.json")
    squad_evaluate(examples, {e["id"]: e["answers"]["text"][0] for e in examples})   # EM = F1 = 100

`finetune_squad` fine-tunes a saved ELM encoder (a run's ``retrain_pretrained/``) as
`ElmForQuestionAnswering` on SQuAD train and scores dev, resumably, with the paper's SQuAD learning
rate (1e-4, Appendix A) and schedules per scale (`SQUAD_SCALES`).
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import random
import re
import string
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from elmlib.data.registry import SEARCH_FRACTION
from elmlib.data.rows import hash_holdout
from elmlib.data.sources import hub_load
from elmlib.data.tasks import get_task
from elmlib.data.tokenization import load_tokenizer
from elmlib.io import settings as validator  # "settings" names the SquadSettings argument below
from elmlib.io.files import write_json, write_result
from elmlib.model.modeling_elm import ElmForQuestionAnswering
from elmlib.nas.objective import to_device
from elmlib.train.runtime import resolve_device, seeded_generator
from elmlib.train.training import TrainLoop, adamw

# --------------------------------------------------------------------------- data


def read_squad_json(path: str | Path) -> list[dict]:
    """Examples of a SQuAD-format file in the hub's layout: id, title, context, question, answers."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if "data" not in data:
        raise ValueError(f"{path}: no 'data' field; expected the SQuAD json layout")
    examples = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = [] if qa.get("is_impossible") else qa["answers"]
                examples.append({
                    "id": qa["id"], "title": article.get("title", ""), "context": paragraph["context"],
                    "question": qa["question"],
                    "answers": {"text": [a["text"] for a in answers], "answer_start": [a["answer_start"] for a in answers]},
                })
    return examples


def load_squad(version: str = "1.1", split: str = "dev") -> list[dict]:
    """SQuAD from the hub (fails fast offline). Splits: train, train90, search (by id hash), dev."""
    name = {"1.1": "squad", "2.0": "squad_v2"}.get(version)
    if name is None:
        raise ValueError(f"version={version!r}; allowed: '1.1', '2.0'")
    if split not in ("train", "train90", "search", "dev"):
        raise ValueError(f"split={split!r}; allowed: train, train90, search, dev")
    spec = get_task(name)
    ds = hub_load(spec.hub_id[0], split="validation" if split == "dev" else "train", alternative=spec.offline_alternative)
    rows = ds.to_list()
    if split in ("train90", "search"):
        held = hash_holdout([r["id"] for r in rows], [0] * len(rows), SEARCH_FRACTION, f"{name}:search")
        rows = [r for r, h in zip(rows, held) if h == (split == "search")]
    return rows


# --------------------------------------------------------------------------- features


def _windows(examples: list[dict], tokenizer, max_length: int, doc_stride: int):
    if doc_stride >= max_length:
        raise ValueError(f"doc_stride={doc_stride} must be smaller than max_length={max_length}")
    # Questions are short; only the context is truncated, into overlapping windows.
    return tokenizer([e["question"].lstrip() for e in examples], [e["context"] for e in examples],
                     truncation="only_second", max_length=max_length, stride=doc_stride,
                     return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length",
                     return_token_type_ids=True)


def prepare_train_features(examples: list[dict], tokenizer, max_length: int = 384, doc_stride: int = 128) -> dict:
    """Windows with start/end token positions; a window that does not hold the whole answer (or a
    v2.0 question without one) points at [CLS] (position 0)."""
    enc = _windows(examples, tokenizer, max_length, doc_stride)
    starts, ends = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        example = examples[enc["overflow_to_sample_mapping"][i]]
        seq = enc.sequence_ids(i)
        ctx = [j for j, s in enumerate(seq) if s == 1]
        answers = example["answers"]
        if not answers["text"]:
            starts.append(0), ends.append(0)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        if offsets[ctx[0]][0] > start_char or offsets[ctx[-1]][1] < end_char:
            starts.append(0), ends.append(0)  # answer not (fully) inside this window
            continue
        starts.append(next(j for j in ctx if offsets[j][1] > start_char))
        ends.append(next(j for j in reversed(ctx) if offsets[j][0] < end_char))
    out = {k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    out.update(start_positions=starts, end_positions=ends)
    return out


def prepare_eval_features(examples: list[dict], tokenizer, max_length: int = 384, doc_stride: int = 128) -> dict:
    """Windows plus, per window, its example id and character offsets (None outside the context)."""
    enc = _windows(examples, tokenizer, max_length, doc_stride)
    out = {k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    out["example_id"] = [examples[s]["id"] for s in enc["overflow_to_sample_mapping"]]
    out["offset_mapping"] = [
        [tuple(o) if s == 1 else None for o, s in zip(offsets, enc.sequence_ids(i))]
        for i, offsets in enumerate(enc["offset_mapping"])
    ]
    return out


def postprocess_predictions(examples: list[dict], features: dict, start_logits, end_logits, n_best: int = 20,
                            max_answer_length: int = 30, version_2: bool = False,
                            null_threshold: float = 0.0) -> dict[str, str]:
    """Answer text per example id: best (start <= end, length <= max) span over all its windows.

    Only the ``n_best`` highest start and end logits per window are paired (the usual pruning).
    v2.0: answer "" when the null score (start+end logit at [CLS], minimum over windows) exceeds
    the best span score by more than ``null_threshold``."""
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    by_example = collections.defaultdict(list)
    for i, ex_id in enumerate(features["example_id"]):
        by_example[ex_id].append(i)
    predictions = {}
    for example in examples:
        best_text, best_score, null_score = "", -np.inf, np.inf
        for i in by_example.get(example["id"], []):
            s_log, e_log, offsets = start_logits[i], end_logits[i], features["offset_mapping"][i]
            null_score = min(null_score, s_log[0] + e_log[0])
            for s in np.argsort(s_log)[::-1][:n_best]:
                for e in np.argsort(e_log)[::-1][:n_best]:
                    if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = s_log[s] + e_log[e]
                    if score > best_score:
                        best_score = score
                        best_text = example["context"][offsets[s][0]:offsets[e][1]]
        if version_2 and (best_score == -np.inf or null_score - best_score > null_threshold):
            best_text = ""
        predictions[example["id"]] = best_text
    return predictions


# --------------------------------------------------------------------------- metrics (official scripts)

_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace (official order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:  # v2.0 rule: both empty -> 1, one empty -> 0
        return float(pred == ref)
    common = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_evaluate(examples: list[dict], predictions: dict[str, str]) -> dict[str, float]:
    """EM and F1 in percent, each the maximum over an example's gold answers (v2.0: none -> "").

    With unanswerable questions present, also has_answer_* and no_answer_* breakdowns."""
    missing = [e["id"] for e in examples if e["id"] not in predictions]
    if missing:
        raise KeyError(f"{len(missing)} examples have no prediction, e.g. id={missing[0]!r}")
    em, f1, has = [], [], []
    for e in examples:
        golds = [a for a in e["answers"]["text"] if normalize_answer(a)] or [""]
        pred = predictions[e["id"]]
        em.append(max(exact_match_score(pred, g) for g in golds))
        f1.append(max(f1_score(pred, g) for g in golds))
        has.append(golds != [""])
    em, f1, has = np.array(em), np.array(f1), np.array(has)
    result = {"exact_match": 100 * em.mean(), "f1": 100 * f1.mean(), "total": len(examples)}
    if not has.all():
        for name, mask in (("has_answer", has), ("no_answer", ~has)):
            if mask.any():
                result.update({f"{name}_exact": 100 * em[mask].mean(), f"{name}_f1": 100 * f1[mask].mean(),
                               f"{name}_total": int(mask.sum())})
    return {k: float(v) if isinstance(v, np.floating) else v for k, v in result.items()}


# --------------------------------------------------------------------------- fine-tuning (Table III)


@dataclass(frozen=True)
class SquadSettings:
    """SQuAD fine-tuning of a found encoder. Paper (Appendix A): lr 1e-4, batch 32, 10 epochs,
    AdamW with weight decay 0.01 and linear decay after 10% warm-up; 384-token windows with stride 128
    are BERT's SQuAD setting. Plain fine-tuning, unlike the paper's per-task fine-tuning with KD (Algorithm 2,
    step 5): a SQuAD teacher would need a SQuAD fine-tuning run of its own."""
    version: str = "1.1"
    max_length: int = 384
    doc_stride: int = 128
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    epochs: int = 10
    steps_per_epoch: int = 0      # 0 = one pass over the training windows
    train_limit: int = 0          # training questions, a seeded sample (0 = all)
    dev_limit: int = 0            # first dev questions (0 = all)
    eval_batch_size: int = 64
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        validator.check(self, _SQUAD_CHOICES, _SQUAD_RANGES)


_SQUAD_CHOICES = {"version": lambda: ("1.1", "2.0")}
_SQUAD_RANGES = ((("max_length", "doc_stride", "batch_size", "epochs", "eval_batch_size", "checkpoint_every"),
                  validator.AT_LEAST_1),
                 (("steps_per_epoch", "train_limit", "dev_limit"), (lambda v: v >= 0, "an integer >= 0 (0 = all)")))


# Schedules per scale, like elmlib.pipeline.config.SCALES: the paper's, then shorter ones on subsets.
SQUAD_SCALES: dict[str, dict] = {
    "paper": {},
    "small": dict(epochs=2, steps_per_epoch=500, train_limit=16000, dev_limit=2000),
    "micro": dict(max_length=256, doc_stride=96, epochs=2, steps_per_epoch=150, train_limit=4000, dev_limit=1000),
    "smoke": dict(max_length=128, doc_stride=48, batch_size=8, epochs=1, steps_per_epoch=12, train_limit=256,
                  dev_limit=64, eval_batch_size=16, checkpoint_every=5),
}


def squad_settings(scale: str, **overrides) -> SquadSettings:
    """The scale's preset, then ``overrides``; errors name the setting, the value and what is allowed."""
    preset = {k: v for k, v in validator.preset(scale, SQUAD_SCALES).items() if k != "scale"}  # not a field
    return validator.build(SquadSettings, {**preset, **overrides})


def _claim(out_dir: Path, record: dict) -> None:
    """A folder holds one fine-tuning: the same encoder and settings, else a clear error."""
    path = out_dir / "squad_settings.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != record:
            changed = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise ValueError(f"{out_dir} holds a SQuAD fine-tuning with other settings (differs in {changed}); "
                             "use another folder")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(record, path)


def _examples(s: SquadSettings, train: list[dict] | None, dev: list[dict] | None) -> tuple[list[dict], list[dict]]:
    """(train, dev) examples: the hub's SQuAD unless given; a seeded sample of ``train_limit`` training
    questions and the first ``dev_limit`` dev ones."""
    train = load_squad(s.version, "train") if train is None else train
    dev = load_squad(s.version, "dev") if dev is None else dev
    if s.train_limit and s.train_limit < len(train):
        train = random.Random(s.seed).sample(train, s.train_limit)
    return train, dev[:s.dev_limit] if s.dev_limit else dev


def _steps_per_epoch(n: int, s: SquadSettings) -> int:
    """Batches per epoch over ``n`` training windows; an error when the windows are too few."""
    steps = s.steps_per_epoch or n // s.batch_size
    if n < s.batch_size or steps > n // s.batch_size:
        raise ValueError(f"{n} training windows give {n // s.batch_size} batches of {s.batch_size} per epoch; "
                         f"steps_per_epoch={s.steps_per_epoch} needs more (raise train_limit or lower it)")
    return steps


def _train(model, feats: dict[str, torch.Tensor], steps: int, s: SquadSettings, out_dir: Path, record: dict, device,
           progress: bool) -> TrainLoop:
    """Fine-tune ``model`` on the training windows with a resumable ``TrainLoop`` in ``out_dir``."""
    n = len(feats["input_ids"])

    def batches(epoch):
        order = torch.randperm(n, generator=seeded_generator(s.seed, epoch))
        for i in range(steps):
            yield {k: v[order[i * s.batch_size:(i + 1) * s.batch_size]] for k, v in feats.items()}

    def step(batch, index):
        loss = model(**to_device(batch, device)).loss
        loss.backward()
        return {"loss": loss}

    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]
    loop = TrainLoop("squad", out_dir, modules={"model": model}, optimizer=adamw([model], s.lr, s.weight_decay),
                     epochs=s.epochs, steps_per_epoch=steps, warmup_ratio=s.warmup_ratio,
                     checkpoint_every=s.checkpoint_every, config_digest=digest, progress=progress, seed=s.seed)
    model.train()
    loop.resume()
    loop.run(batches, step)
    return loop


@torch.no_grad()
def _predict(model, dev: list[dict], tokenizer, s: SquadSettings, device) -> dict[str, str]:
    """Answer text per dev question: start/end logits of every window, then `postprocess_predictions`."""
    model.eval()
    features = prepare_eval_features(dev, tokenizer, s.max_length, s.doc_stride)
    inputs = {k: torch.tensor(features[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}
    starts, ends = [], []
    for i in range(0, len(inputs["input_ids"]), s.eval_batch_size):
        out = model(**to_device({k: v[i:i + s.eval_batch_size] for k, v in inputs.items()}, device))
        starts.append(out.start_logits.float().cpu()), ends.append(out.end_logits.float().cpu())
    return postprocess_predictions(dev, features, torch.cat(starts).numpy(), torch.cat(ends).numpy(),
                                   version_2=s.version == "2.0")


def finetune_squad(model_dir: str | Path, out_dir: str | Path, settings: SquadSettings = SquadSettings(), *,
                   train: list[dict] | None = None, dev: list[dict] | None = None, progress: bool = False) -> dict:
    """Fine-tune the encoder saved in ``model_dir`` for extractive QA and score it on dev.

    ``train``/``dev`` default to SQuAD ``settings.version`` from the hub (`load_squad`); any examples in
    the same layout work (`read_squad_json`). Writes ``squad_metrics.csv`` (EM, F1, and the v2.0
    breakdowns), ``predictions.json`` and ``model/`` into ``out_dir``; a finished folder is returned
    from cache, an interrupted one resumes from its last checkpoint. Returns {metric: value}."""
    s, model_dir, out_dir = settings, Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"model_dir={str(model_dir)!r} holds no saved model (config.json); expected a "
                                "save_pretrained folder such as a run's retrain_pretrained/")
    record = {**dataclasses.asdict(s), "model_dir": str(model_dir.resolve()),
              "train": "squad" if train is None else f"{len(train)} given examples",
              "dev": "squad" if dev is None else f"{len(dev)} given examples"}
    _claim(out_dir, record)
    metrics_path = out_dir / "squad_metrics.csv"
    if metrics_path.exists():
        done = pd.read_csv(metrics_path)
        return dict(zip(done.metric, done.value.astype(float)))
    start = time.time()
    train, dev = _examples(s, train, dev)
    tokenizer = load_tokenizer("teacher")
    feats = {k: torch.tensor(v) for k, v in prepare_train_features(train, tokenizer, s.max_length, s.doc_stride).items()}
    steps = _steps_per_epoch(len(feats["input_ids"]), s)
    device = resolve_device(s.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)  # the new QA head's initialisation
        model = ElmForQuestionAnswering.from_pretrained(model_dir).to(device)
    loop = _train(model, feats, steps, s, out_dir, record, device, progress)
    predictions = _predict(model, dev, tokenizer, s, device)
    metrics = squad_evaluate(dev, predictions)
    model.save_pretrained(out_dir / "model")
    write_json(predictions, out_dir / "predictions.json")
    table = pd.DataFrame([dict(metric=k, value=float(v)) for k, v in metrics.items()]).assign(
        version=s.version, n_train=len(train), n_train_windows=len(feats["input_ids"]), steps=loop.total_steps,
        n_dev=len(dev))
    write_result(table, metrics_path, config=record, seed=s.seed, wall_time_s=time.time() - start)
    loop.ckpt_path.unlink(missing_ok=True)
    return {k: float(v) for k, v in metrics.items()}
