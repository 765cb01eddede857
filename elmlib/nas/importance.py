"""First-order importance of FFN units and attention heads, and function-preserving reordering.

EFTNAS (Munoz, Zheng & Jain, LREC-COLING 2024) ranks the FFN neurons and attention heads of a
fine-tuned transformer by first-order weight importance, the movement-pruning score of Sanh, Wolf
& Rush (NeurIPS 2020), and reorders the weights so that every narrower elastic width, which takes
a *prefix* of the units (`elmlib.model.modeling_elm.elastic_ffn`), keeps the most important ones. Here:

- importance of a unit = sum over batches of sum over the unit's weights of |w * dL/dw|
  (`ImportanceAccumulator`; ``update()`` after each backward);
- `reorder_` / `reorder_block_` permute units and heads in place by descending importance; the
  block computes exactly the same function (the permutation is applied to both sides of the unit);
- `narrow` / `shrink_ffn_` keep the first ``ffn_dim`` units (after reordering: the best ones), as a
  standalone model/block or in place (the counterpart of `elmlib.nas.growth.grow_ffn`).

    acc = ImportanceAccumulator(model)                     # any ElmModel / task model / Supernet / block
    for batch in batches: model(**batch).loss.backward(); acc.update(); model.zero_grad()
    reorder_(model, acc.scores()); small = narrow(model, 64)   # keeps the 64 most important units per FFN

Which weights belong to a unit (biases of the *output* projections are shared by all units and so
belong to none): FFN unit j = row j of ``intermediate.dense.weight``, ``intermediate.dense.bias[j]``
and column j of ``output.dense.weight``. A MobileBERT block with stacked FFNs (``block.ffn``) has
one independent set of units per FFN (``block.ffn_layers``; the elastic width takes the same prefix
in each), so each FFN is scored and permuted on its own. Head h (width W, H heads, d = W / H) = rows
h*d..(h+1)*d of the query, key and value weights and biases and the same columns of
``attention.output.dense.weight``. With Q=V ("qv") or K=V ("kv") sharing there is no value weight:
the shared projection is one parameter, its gradient already sums both uses, and it is counted once.
Per-channel sums are kept, so the head grouping is chosen when scores are read (``scores(heads=)``).

Head reordering is function-preserving at the head number it was grouped with (and at any number
of heads H' where the permutation moves whole H'-heads, e.g. the identity); reorder heads with the
number the model will run with. FFN reordering is function-preserving unconditionally.
"""
from __future__ import annotations

import copy
import json
import time
from typing import Callable, Iterable, NamedTuple

import torch
from torch import nn

__all__ = ["BlockImportance", "ImportanceAccumulator", "elastic_blocks", "estimate_importance", "narrow",
           "permute_ffn_", "permute_heads_", "reorder_", "reorder_block_", "shrink_ffn_", "unit_order"]


class BlockImportance(NamedTuple):
    ffn: tuple[torch.Tensor, ...]   # one (ffn_dim,) tensor per FFN, in ``block.ffn_layers`` order
    heads: torch.Tensor             # (heads,)


def elastic_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, block) for every ELM block in ``model`` (``model`` itself when it is a block)."""
    found = [(name, m) for name, m in model.named_modules() if hasattr(m, "ffn_layers") and hasattr(m, "attention")]
    if not found:
        raise ValueError(f"{type(model).__name__} holds no ELM block (a module with `ffn_layers` and `attention`)")
    return found


def _attention_params(block: nn.Module) -> tuple[list[nn.Linear], nn.Linear]:
    """The projections whose output rows are head channels (Q, K and V if not shared) and the output dense."""
    att = block.attention.self
    projections = [att.query, att.key] + ([att.value] if hasattr(att, "value") else [])
    return projections, block.attention.output.dense


def _score(p: nn.Parameter) -> torch.Tensor | None:
    return None if p.grad is None else (p.detach() * p.grad.detach()).abs().float()


class ImportanceAccumulator:
    """Accumulates |w * dL/dw| per FFN unit and per attention channel of every block of ``model``.

    Call ``update()`` after each ``backward()`` and before ``zero_grad()`` (gradients accumulated over
    several backward passes are scored as one batch). Blocks that took no part in a step (a supernet's
    other candidates) have no gradient and gain nothing. A block whose FFN grew since the last update
    (`grow_ffn`) gets zeros for its new units (in ``update`` and ``scores``); after a reorder or shrink,
    start a new accumulator.
    """

    def __init__(self, model: nn.Module):
        self.blocks = elastic_blocks(model)
        self.steps = 0
        self._ffn = {name: [torch.zeros(i.weight.shape[0]) for i, _ in b.ffn_layers] for name, b in self.blocks}
        self._att = {name: torch.zeros(b.attention.self.width) for name, b in self.blocks}

    @torch.no_grad()
    def update(self) -> None:
        for name, block in self.blocks:
            for k, (inter, out) in enumerate(block.ffn_layers):
                parts = [(_score(inter.weight), 1), (_score(inter.bias), None), (_score(out.weight), 0)]
                self._ffn[name][k] = self._add(self._ffn[name][k], parts, f"{name} FFN {k}")
            projections, dense = _attention_params(block)
            parts = [(_score(p.weight), 1) for p in projections] + [(_score(p.bias), None) for p in projections]
            self._att[name] = self._add(self._att[name], parts + [(_score(dense.weight), 0)], f"{name} attention")
        self.steps += 1

    @staticmethod
    def _add(total: torch.Tensor, parts, what: str) -> torch.Tensor:
        for s, dim in parts:
            if s is None:
                continue
            s = (s if dim is None else s.sum(dim)).cpu()
            if s.shape[0] > total.shape[0]:  # grown since the last update: new units start at zero
                total = torch.cat([total, total.new_zeros(s.shape[0] - total.shape[0])])
            elif s.shape[0] < total.shape[0]:
                raise ValueError(f"{what}: {s.shape[0]} units now but {total.shape[0]} accumulated; the block "
                                 "shrank, so start a new ImportanceAccumulator")
            total = total + s
        return total

    def state_dict(self) -> dict:
        """What a training checkpoint keeps so a resumed run accumulates exactly the same scores."""
        return {"steps": self.steps, "ffn": {k: [t.clone() for t in v] for k, v in self._ffn.items()},
                "attention": {k: t.clone() for k, t in self._att.items()}}

    def load_state_dict(self, state: dict) -> None:
        names = sorted(name for name, _ in self.blocks)
        if sorted(state["ffn"]) != names or sorted(state["attention"]) != names:
            raise ValueError(f"importance state is for blocks {sorted(state['ffn'])[:3]}..., not this model's "
                             f"{names[:3]}...")
        self.steps = int(state["steps"])
        self._ffn = {k: [t.clone() for t in v] for k, v in state["ffn"].items()}
        self._att = {k: t.clone() for k, t in state["attention"].items()}

    def scores(self, heads: int | dict[str, int] | None = None) -> dict[str, BlockImportance]:
        """Importance per block name; ``heads`` groups the attention channels (default: each block's own)."""
        out = {}
        for name, block in self.blocks:
            h = heads.get(name) if isinstance(heads, dict) else heads
            h = h or block.attention.self.num_heads
            channels = self._att[name]
            if h < 1 or channels.shape[0] % h:
                raise ValueError(f"{name}: heads={h} is not allowed; it must divide the attention width "
                                 f"{channels.shape[0]}")
            # Units grown since the last update (or never on a sampled path since) have importance 0.
            ffn = tuple(torch.cat([t, t.new_zeros(inter.weight.shape[0] - t.shape[0])])
                        for t, (inter, _) in zip(self._ffn[name], block.ffn_layers))
            out[name] = BlockImportance(ffn, channels.view(h, -1).sum(1))
        return out


def estimate_importance(model: nn.Module, batches: Iterable, loss_fn: Callable | None = None, *,
                        max_batches: int | None = None) -> tuple[dict[str, BlockImportance], ImportanceAccumulator]:
    """Importance of ``model``'s units over ``batches`` without changing its weights.

    ``loss_fn(model, batch)`` returns the loss (default ``model(**batch).loss``, a task model with
    labels). Runs in eval mode (no dropout, so repeatable) and leaves ``.grad`` cleared (None)."""
    loss_fn = loss_fn or (lambda m, b: m(**b).loss)
    acc = ImportanceAccumulator(model)
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            loss_fn(model, batch).backward()
            acc.update()
            model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    if acc.steps == 0:
        raise ValueError("batches is empty; importance needs at least one batch")
    return acc.scores(), acc


# --------------------------------------------------------------------------- permutations

def unit_order(scores: torch.Tensor) -> torch.Tensor:
    """Indices by descending importance; ties keep their current order (stable, deterministic)."""
    return torch.sort(-scores.float(), stable=True).indices


def _check_perm(perm: torch.Tensor, n: int, what: str) -> torch.Tensor:
    perm = torch.as_tensor(perm, dtype=torch.long).cpu()
    if perm.shape != (n,) or not torch.equal(perm.sort().values, torch.arange(n)):
        raise ValueError(f"{what}: permutation of shape {tuple(perm.shape)} is not a permutation of the {n} units")
    return perm


def _index_(param: nn.Parameter, index: torch.Tensor, dim: int, optimizer) -> None:
    """Replace ``param.data`` by its ``index`` selection along ``dim`` (the Parameter object stays, so
    optimizer groups remain valid); gradients and same-shaped optimizer state (Adam's moments) follow."""
    index = index.to(param.device)
    if optimizer is not None:
        for key, value in optimizer.state.get(param, {}).items():
            if torch.is_tensor(value) and value.shape == param.shape:
                optimizer.state[param][key] = value.index_select(dim, index)
    grad = None if param.grad is None else param.grad.index_select(dim, index)
    param.data = param.data.index_select(dim, index).contiguous()
    param.grad = grad


@torch.no_grad()
def permute_ffn_(inter: nn.Linear, out: nn.Linear, perm, optimizer=None) -> None:
    """Reorder one FFN's units: unit ``perm[j]`` becomes unit j (rows of inter, columns of out)."""
    perm = _check_perm(perm, inter.weight.shape[0], "FFN")
    _index_(inter.weight, perm, 0, optimizer)
    _index_(inter.bias, perm, 0, optimizer)
    _index_(out.weight, perm, 1, optimizer)


@torch.no_grad()
def permute_heads_(block: nn.Module, perm, heads: int | None = None, optimizer=None) -> None:
    """Reorder a block's heads: head ``perm[h]`` becomes head h, in Q, K, V (a shared projection once)
    and the input columns of ``attention.output.dense``."""
    projections, dense = _attention_params(block)
    width = block.attention.self.width
    heads = heads or block.attention.self.num_heads
    if width % heads:
        raise ValueError(f"heads={heads} is not allowed; it must divide the attention width {width}")
    perm = _check_perm(perm, heads, "heads")
    channels = (perm[:, None] * (width // heads) + torch.arange(width // heads)).flatten()
    for p in projections:
        _index_(p.weight, channels, 0, optimizer)
        _index_(p.bias, channels, 0, optimizer)
    _index_(dense.weight, channels, 1, optimizer)


def reorder_block_(block: nn.Module, scores: BlockImportance, *, ffn: bool = True, heads: bool = True,
                   optimizer=None) -> BlockImportance:
    """Sort a block's FFN units (each stacked FFN separately) and heads by descending importance, in place.

    Returns the scores in the new order (so they stay valid for the block). ``optimizer``: its state
    for these parameters is permuted too, so training can continue."""
    if len(scores.ffn) != len(block.ffn_layers):
        raise ValueError(f"scores hold {len(scores.ffn)} FFN(s) but the block has {len(block.ffn_layers)}")
    new_ffn = []
    for (inter, out), s in zip(block.ffn_layers, scores.ffn):
        if s.shape[0] != inter.weight.shape[0]:
            raise ValueError(f"scores hold {s.shape[0]} FFN units but the block has {inter.weight.shape[0]}")
        order = unit_order(s) if ffn else torch.arange(s.shape[0])
        permute_ffn_(inter, out, order, optimizer)
        new_ffn.append(s[order])
    order = unit_order(scores.heads) if heads else torch.arange(scores.heads.shape[0])
    permute_heads_(block, order, scores.heads.shape[0], optimizer)
    return BlockImportance(tuple(new_ffn), scores.heads[order])


def reorder_(model: nn.Module, scores: dict[str, BlockImportance], *, ffn: bool = True, heads: bool = True,
             optimizer=None) -> dict[str, BlockImportance]:
    """`reorder_block_` for every block of ``model`` (names as `ImportanceAccumulator.scores` gives them)."""
    blocks = elastic_blocks(model)
    missing = [name for name, _ in blocks if name not in scores]
    if missing:
        raise ValueError(f"scores have no entry for block(s) {missing}; they have {sorted(scores)}")
    return {name: reorder_block_(b, scores[name], ffn=ffn, heads=heads, optimizer=optimizer) for name, b in blocks}


# --------------------------------------------------------------------------- shrinking

@torch.no_grad()
def shrink_ffn_(block: nn.Module, new_dim: int, scores: BlockImportance | None = None, optimizer=None) -> None:
    """Keep ``new_dim`` units of every FFN of ``block``, in place: the most important ones when
    ``scores`` is given (reordered first), else the first ones (the elastic prefix). Counterpart of
    `elmlib.nas.growth.grow_ffn`: Parameter objects stay; gradients and optimizer state are cut too."""
    if scores is not None:
        reorder_block_(block, scores, heads=False, optimizer=optimizer)
    for inter, out in block.ffn_layers:
        old = inter.weight.shape[0]
        if not 1 <= new_dim <= old:
            raise ValueError(f"new_dim={new_dim} is not allowed; expected 1..{old} (the FFN has {old} units)")
        keep = torch.arange(new_dim)
        _index_(inter.weight, keep, 0, optimizer)
        _index_(inter.bias, keep, 0, optimizer)
        _index_(out.weight, keep, 1, optimizer)
        inter.out_features = out.in_features = new_dim


def narrow(model: nn.Module, ffn_dim: int | list[int],
           scores: dict[str, BlockImportance] | BlockImportance | None = None):
    """A standalone copy of ``model`` (an ELM model or a single block) whose FFNs keep ``ffn_dim`` units
    (one int, or one per layer; capped at each layer's size): the most important ones when ``scores`` is
    given, else the first ones. ``model`` is not changed. For an ELM model the config's ``ffn_dim`` is
    updated, so the result saves and loads like any exported model."""
    from elmlib.model.modeling_elm import ElmPreTrainedModel

    new = copy.deepcopy(model)
    blocks = elastic_blocks(new)
    if isinstance(scores, BlockImportance):  # a single block's scores
        if len(blocks) != 1:
            raise ValueError(f"scores: one BlockImportance given for a model of {len(blocks)} blocks; pass the "
                             "dict that ImportanceAccumulator.scores() returns")
        scores = {blocks[0][0]: scores}
    dims = [ffn_dim] * len(blocks) if isinstance(ffn_dim, int) else list(ffn_dim)
    if len(dims) != len(blocks):
        raise ValueError(f"ffn_dim has {len(dims)} entries but the model has {len(blocks)} blocks")
    for (name, block), dim in zip(blocks, dims):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"{name or 'block'}: ffn_dim={dim!r} is not allowed; expected a positive integer")
        dim = min(dim, block.ffn_layers[0][0].weight.shape[0])
        shrink_ffn_(block, dim, None if scores is None else scores[name])
    if isinstance(new, ElmPreTrainedModel):
        encoder = getattr(new, new.base_model_prefix, new)
        for layer, block in zip(new.config.layers, encoder.encoder.layer):
            layer["ffn_dim"] = block.ffn_layers[0][0].weight.shape[0]
        if encoder is not new:
            encoder.config = new.config
    return new


# --------------------------------------------------------------------------- the measurement (notebook)
# A fine-tuned model whose FFNs are then cut to narrower widths without retraining, with the plain
# prefix ("original"), the importance prefix ("importance") and, as a control, the least important
# units first ("reversed"). The model starts from the packaged MiniLM teacher (a BERT; ELM's BERT
# blocks share its parameter names), as EFTNAS starts from a fine-tuned BERT.

SCALES = {
    # layers of the teacher kept, fine-tuning steps and peak learning rate, batch, max tokens, train rows, dev rows, importance batches
    "smoke": dict(layers=2, steps=150, lr=2e-4, batch_size=32, max_length=64, train_limit=4800, dev_limit=512,
                  importance_batches=16),
    "small": dict(layers=6, steps=600, lr=1e-4, batch_size=32, max_length=64, train_limit=0, dev_limit=0,
                  importance_batches=64),
    "paper": dict(layers=6, steps=2000, lr=5e-5, batch_size=32, max_length=128, train_limit=0, dev_limit=0,
                  importance_batches=200),
}
ORDERS = ("original", "importance", "reversed")
FRACTIONS = (0.125, 0.25, 0.5, 0.75, 1.0)


def classifier_from_teacher(num_labels: int, layers: int | None = None, teacher: str = "teacher", *,
                            dropout: float = 0.1):
    """An `ElmForSequenceClassification` of BERT blocks holding the teacher's first ``layers`` layers
    (embedding projection = identity, so the factorized embeddings equal BERT's); random head."""
    from elmlib.model.configuration_elm import ElmConfig
    from elmlib.model.modeling_elm import ElmForSequenceClassification
    from elmlib.data.teachers import load_teacher

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


def _accuracy(model, batches, task: str) -> float:
    from elmlib.data.tasks import compute_metrics

    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for b in batches:
            logits.append(model(b["input_ids"], attention_mask=b["attention_mask"],
                                token_type_ids=b["token_type_ids"]).logits)
            labels.append(b["labels"])
    return compute_metrics(task, torch.cat(logits).numpy(), torch.cat(labels).numpy())["accuracy"]


def finetune(model, batches, steps: int, *, lr: float = 5e-5, seed: int = 0, freeze_embeddings: bool = True,
             progress: bool = False) -> list[float]:
    """Plain cross-entropy fine-tuning (`training.fit`: AdamW, linear warm-up/decay; dropout seeded in
    a forked RNG). ``freeze_embeddings``: the 30k-row word table stays fixed (most of the CPU time of a
    step otherwise, and irrelevant to FFN importance). Returns the loss per step."""
    from elmlib.train.training import fit

    if freeze_embeddings:
        model.elm.embeddings.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fit(model, batches.epoch, steps, lr=lr, weight_decay=0.01, warmup_ratio=0.1,
                   log_every=50 if progress else 0)


def run_reordering(*, scale: str = "smoke", seed: int = 0, task: str = "rotten_tomatoes",
                   fractions=FRACTIONS, run_dir=None, progress: bool = True):
    """Fine-tune, estimate importance on training batches, and score every FFN width fraction x order
    on dev. Returns a long DataFrame (scale, seed, task, fraction, ffn_dim, order, accuracy, ...);
    ``attrs["wall_time_s"]``. The fine-tuned model is cached in ``run_dir`` (when given)."""
    from pathlib import Path

    import pandas as pd

    from elmlib.io.cache import publish_model, published
    from elmlib.io.files import atomic_write
    from elmlib.model.modeling_elm import ElmForSequenceClassification
    from elmlib.nas.objective import TaskBatches, subset
    from elmlib.data.tasks import get_task
    from elmlib.data.tokenization import load_tokenizer, tokenize_task

    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not allowed; expected one of {sorted(SCALES)}")
    if "accuracy" not in get_task(task).metrics or get_task(task).num_labels < 2:
        raise ValueError(f"task={task!r} is not allowed; expected a classification task scored by accuracy")
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ValueError(f"fractions={bad} are not allowed; expected values in (0, 1]")
    s, t0 = SCALES[scale], time.perf_counter()
    tok = load_tokenizer("teacher")
    train = TaskBatches(subset(tokenize_task(task, "train90", tok, s["max_length"]), s["train_limit"], seed), tok,
                        s["batch_size"], seed=seed)
    dev = list(TaskBatches(subset(tokenize_task(task, "dev", tok, s["max_length"]), s["dev_limit"], seed), tok, 64,
                           shuffle=False).epoch())
    folder = Path(run_dir) / f"{task}_{scale}_seed{seed}" if run_dir else None
    recipe = json.dumps({"task": task, "scale": scale, "seed": seed, "settings": s}, sort_keys=True, default=str)
    if folder is not None and published(folder / "model", recipe) and (folder / "train_time_s.txt").exists():
        model = ElmForSequenceClassification.from_pretrained(folder / "model")
        train_time = float((folder / "train_time_s.txt").read_text())
    else:
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
    # importance on training batches (a fixed, seeded epoch other than the ones trained on), never dev
    scores, _ = estimate_importance(model, train.epoch(10_000 + seed), max_batches=s["importance_batches"])
    ordered = copy.deepcopy(model)
    reorder_(ordered, scores, heads=False)
    reverse = copy.deepcopy(model)
    flipped = {k: BlockImportance(tuple(-t for t in v.ffn), -v.heads) for k, v in scores.items()}
    reorder_(reverse, flipped, heads=False)
    full = model.config.layers[0]["ffn_dim"]
    rows = []
    for fraction in fractions:
        dim = max(1, round(fraction * full))
        for order, source in zip(ORDERS, (model, ordered, reverse)):
            acc = _accuracy(narrow(source, dim), dev, task)
            rows.append(dict(scale=scale, seed=seed, task=task, layers=s["layers"], fraction=fraction, ffn_dim=dim,
                             ffn_full=full, order=order, accuracy=acc, dev_rows=sum(len(b["labels"]) for b in dev),
                             train_steps=s["steps"], train_time_s=round(train_time, 1)))
            if progress:
                print(f"ffn {dim:5d}/{full} {order:10s} accuracy {acc:.4f}", flush=True)
    table = pd.DataFrame(rows)
    table.attrs["wall_time_s"] = time.perf_counter() - t0
    return table


def plot_reordering(table, path) -> None:
    """Accuracy vs FFN width, one line per order; writes ``path`` (.png) and the same name as .pdf."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    sns.lineplot(data=table, x="fraction", y="accuracy", hue="order", style="order", markers=True, dashes=False,
                 hue_order=list(ORDERS), ax=ax, errorbar=None)
    ax.set(xlabel="FFN width kept (fraction of units)", ylabel="dev accuracy",
           title=f"{table['task'].iloc[0]}, {table['layers'].iloc[0]} layers ({table['scale'].iloc[0]})")
    ax.set_ylim(min(0.45, table["accuracy"].min() - 0.02), None)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    for ext in (".png", ".pdf"):
        fig.savefig(path.with_suffix(ext), dpi=150)
    plt.close(fig)
