"""What importance reordering buys a fine-tuned model cut to narrower FFNs (beyond the paper; EFTNAS).

A classifier is fine-tuned, its FFN units are ranked by first-order importance
(`elmlib.nas.importance`), and every FFN is then cut to a fraction of its units without retraining,
keeping the plain prefix ("original"), the importance prefix ("importance") or, as a control, the
least important units first ("reversed"). The model starts from the packaged MiniLM teacher (a BERT;
ELM's BERT blocks share its parameter names), as EFTNAS starts from a fine-tuned BERT.
Results and caveats: docs/importance.md; notebook: ``notebooks/importance_reordering.ipynb``.

    table = run_reordering(scale="smoke", seed=0, task="rotten_tomatoes", run_dir="runs/importance_reordering")
    save(plot_reordering(table), "importance_reordering", "figures")   # elmlib.repro.figures.extensions
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pandas as pd
import torch

from elmlib.data.tasks import compute_metrics, get_task
from elmlib.data.teachers import load_teacher
from elmlib.data.tokenization import load_tokenizer, tokenize_task
from elmlib.io import settings
from elmlib.io.cache import publish_model, published
from elmlib.io.files import atomic_write
from elmlib.model.configuration_elm import ElmConfig
from elmlib.model.modeling_elm import ElmForSequenceClassification
from elmlib.nas.importance import BlockImportance, estimate_importance, narrow, reorder_
from elmlib.nas.objective import TaskBatches, subset
from elmlib.train.training import fit

SCALES = {
    # layers of the teacher kept, fine-tuning steps and peak learning rate, batch, max tokens, train rows, dev rows, importance batches
    "smoke": dict(layers=2, steps=150, lr=2e-4, batch_size=32, max_length=64, train_limit=4800, dev_limit=512,
                  importance_batches=16),
    "micro": dict(layers=4, steps=300, lr=1.5e-4, batch_size=32, max_length=64, train_limit=0, dev_limit=1024,
                  importance_batches=32),
    "small": dict(layers=6, steps=600, lr=1e-4, batch_size=32, max_length=64, train_limit=0, dev_limit=0,
                  importance_batches=64),
    "paper": dict(layers=6, steps=2000, lr=5e-5, batch_size=32, max_length=128, train_limit=0, dev_limit=0,
                  importance_batches=200),
}
ORDERS = ("original", "importance", "reversed")
FRACTIONS = (0.125, 0.25, 0.5, 0.75, 1.0)


def classifier_from_teacher(num_labels: int, layers: int | None = None, teacher: str = "teacher", *,
                            dropout: float = 0.1) -> ElmForSequenceClassification:
    """An `ElmForSequenceClassification` of BERT blocks holding the teacher's first ``layers`` layers
    (embedding projection = identity, so the factorized embeddings equal BERT's); random head."""
    bert = load_teacher(teacher, output_hidden_states=False, output_attentions=False)
    tc, n = bert.config, layers or bert.config.num_hidden_layers
    if not 1 <= n <= tc.num_hidden_layers:
        raise ValueError(f"layers={layers} is not allowed; the teacher has 1..{tc.num_hidden_layers} layers")
    config = ElmConfig(vocab_size=tc.vocab_size, embedding_size=tc.hidden_size, hidden_size=tc.hidden_size,
                       inner_size=tc.hidden_size // 4, max_position_embeddings=tc.max_position_embeddings,
                       type_vocab_size=tc.type_vocab_size, hidden_act=tc.hidden_act, layer_norm_eps=tc.layer_norm_eps,
                       hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, num_labels=num_labels,
                       layers=[dict(block="bert", sharing="none", ffn_dim=tc.intermediate_size,
                                    heads=tc.num_attention_heads)] * n)
    model = ElmForSequenceClassification(config)
    emb, src = model.elm.embeddings, bert.embeddings
    with torch.no_grad():
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"):
            getattr(emb, name).load_state_dict(getattr(src, name).state_dict())
        emb.projection.weight.copy_(torch.eye(tc.hidden_size))
        emb.projection.bias.zero_()
    for block, layer in zip(model.elm.encoder.layer, bert.encoder.layer):
        block.load_state_dict(layer.state_dict())
    return model


def finetune(model, batches, steps: int, *, lr: float = 5e-5, seed: int = 0, freeze_embeddings: bool = True,
             progress: bool = False) -> list[float]:
    """Plain cross-entropy fine-tuning (`training.fit`: AdamW, linear warm-up/decay; dropout seeded in
    a forked RNG). ``freeze_embeddings``: the 30k-row word table stays fixed (most of the CPU time of a
    step otherwise, and irrelevant to FFN importance). Returns the loss per step."""
    if freeze_embeddings:
        model.elm.embeddings.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fit(model, batches.epoch, steps, lr=lr, weight_decay=0.01, warmup_ratio=0.1,
                   log_every=50 if progress else 0)


def _accuracy(model, batches, task: str) -> float:
    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for b in batches:
            logits.append(model(b["input_ids"], attention_mask=b["attention_mask"],
                                token_type_ids=b["token_type_ids"]).logits)
            labels.append(b["labels"])
    return compute_metrics(task, torch.cat(logits).numpy(), torch.cat(labels).numpy())["accuracy"]


def _check(scale: str, task: str, fractions) -> None:
    settings.preset(scale, SCALES)  # an unknown scale is one line naming the allowed ones
    if "accuracy" not in get_task(task).metrics or get_task(task).num_labels < 2:
        raise ValueError(f"task={task!r} is not allowed; expected a classification task scored by accuracy")
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ValueError(f"fractions={bad} are not allowed; expected values in (0, 1]")


def _batches(task: str, s: dict, seed: int) -> tuple[TaskBatches, list[dict]]:
    """Seeded training batches of train90 (at most ``train_limit`` rows) and the dev batches, fixed."""
    tok = load_tokenizer("teacher")
    train = TaskBatches(subset(tokenize_task(task, "train90", tok, s["max_length"]), s["train_limit"], seed), tok,
                        s["batch_size"], seed=seed)
    dev = list(TaskBatches(subset(tokenize_task(task, "dev", tok, s["max_length"]), s["dev_limit"], seed), tok, 64,
                           shuffle=False).epoch())
    return train, dev


def _finetuned(task: str, scale: str, seed: int, train: TaskBatches, run_dir, progress: bool):
    """(model, training seconds): fine-tuned from the teacher, or the copy cached under ``run_dir``."""
    s = SCALES[scale]
    folder = Path(run_dir) / f"{task}_{scale}_seed{seed}" if run_dir else None
    recipe = json.dumps({"task": task, "scale": scale, "seed": seed, "settings": s}, sort_keys=True, default=str)
    if folder is not None and published(folder / "model", recipe) and (folder / "train_time_s.txt").exists():
        return (ElmForSequenceClassification.from_pretrained(folder / "model"),
                float((folder / "train_time_s.txt").read_text()))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the classification head's initialisation
        model = classifier_from_teacher(get_task(task).num_labels, s["layers"])
    t1 = time.perf_counter()
    finetune(model, train, s["steps"], lr=s["lr"], seed=seed, progress=progress)
    train_time = time.perf_counter() - t1
    if folder is not None:  # the time first: a model folder is complete only when published
        with atomic_write(folder / "train_time_s.txt") as f:
            f.write(f"{train_time:.1f}\n")
        publish_model(model, folder / "model", recipe)
    return model, train_time


def _orders(model, scores) -> tuple:
    """The model in each of `ORDERS`: as trained, most important units first, least important first."""
    ordered = copy.deepcopy(model)
    reorder_(ordered, scores, heads=False)
    reverse = copy.deepcopy(model)
    flipped = {k: BlockImportance(tuple(-t for t in v.ffn), -v.heads) for k, v in scores.items()}
    reorder_(reverse, flipped, heads=False)
    return model, ordered, reverse


def run_reordering(*, scale: str = "smoke", seed: int = 0, task: str = "rotten_tomatoes",
                   fractions=FRACTIONS, run_dir=None, progress: bool = True) -> pd.DataFrame:
    """Fine-tune, estimate importance on training batches, and score every FFN width fraction x order
    on dev. Returns a long DataFrame (scale, seed, task, fraction, ffn_dim, order, accuracy, ...);
    ``attrs["wall_time_s"]``. The fine-tuned model is cached in ``run_dir`` (when given)."""
    _check(scale, task, fractions)
    s, t0 = SCALES[scale], time.perf_counter()
    train, dev = _batches(task, s, seed)
    model, train_time = _finetuned(task, scale, seed, train, run_dir, progress)
    # importance on training batches (a fixed, seeded epoch other than the ones trained on), never dev
    scores, _ = estimate_importance(model, train.epoch(10_000 + seed), max_batches=s["importance_batches"])
    sources = _orders(model, scores)
    full = model.config.layers[0]["ffn_dim"]
    rows = []
    for fraction in fractions:
        dim = max(1, round(fraction * full))
        for order, source in zip(ORDERS, sources):
            acc = _accuracy(narrow(source, dim), dev, task)
            rows.append(dict(scale=scale, seed=seed, task=task, layers=s["layers"], fraction=fraction, ffn_dim=dim,
                             ffn_full=full, order=order, accuracy=acc, dev_rows=sum(len(b["labels"]) for b in dev),
                             train_steps=s["steps"], train_time_s=round(train_time, 1)))
            if progress:
                print(f"ffn {dim:5d}/{full} {order:10s} accuracy {acc:.4f}", flush=True)
    table = pd.DataFrame(rows)
    table.attrs["wall_time_s"] = time.perf_counter() - t0
    return table
