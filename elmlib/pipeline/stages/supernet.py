"""Stages 1 and 2 of the ELM search (paper Algorithm 2, Sec. III-B): the supernet's masked-LM
pretraining with KD from the teacher and PCA-guided FFN growth, then its fine-tuning on the task's
90% split with KD from the task teacher. Both sample one uniform path per step and resume from
their checkpoints.

    pretrain_supernet(ctx)   # -> supernet_pretrain.pt, pca_scores.csv, growth.csv, block_similarity.csv
    finetune_supernet(ctx)   # -> supernet_finetune.pt (with the task head)

Beyond the paper: ``importance=true`` sorts every block's FFN units by first-order importance after
each pretraining epoch and after fine-tuning (EFTNAS; `ImportanceTracker`; docs/importance.md).
"""
from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from elmlib.data.corpus import mlm_batches
from elmlib.data.teachers import load_teacher, teacher_inputs
from elmlib.io.files import write_csv, write_json
from elmlib.model.modeling_elm import ElmClassificationHead
from elmlib.nas.growth import blocks_per_epoch
from elmlib.nas.growth_policy import grow_blocks, growth_cap, pca_scores
from elmlib.nas.importance import ImportanceAccumulator, reorder_
from elmlib.nas.objective import Objective, TaskBatches, to_device
from elmlib.nas.similarity import measure_block_similarity
from elmlib.nas.supernet import Supernet, init_weights
from elmlib.pipeline.context import RunContext, build_supernet
from elmlib.train.runtime import path_rng, seeded_generator
from elmlib.train.training import TrainLoop, adamw


class ImportanceTracker:
    """EFTNAS-style importance inside a supernet stage (``importance=true``): ``update()`` after each
    backward accumulates |w * dL/dw| per FFN unit (under DDP the gradients are already averaged, so
    every rank holds the same scores); ``reorder()`` sorts every block's FFN units by it, in place and
    function-preserving, then starts afresh. Its state rides in the loop's checkpoint (``restore()``
    after a resume), so a killed run ends as if it had not been. Disabled, every call does nothing."""

    def __init__(self, net: Supernet, loop: TrainLoop, enabled: bool):
        self.net, self.loop, self.enabled = net, loop, enabled
        self.acc = ImportanceAccumulator(net) if enabled else None

    def update(self) -> None:
        if self.enabled:
            self.acc.update()
            self.loop.extra["importance"] = self.acc.state_dict()

    def restore(self) -> None:
        if self.enabled and "importance" in self.loop.extra:
            self.acc.load_state_dict(self.loop.extra["importance"])

    def reorder(self, optimizer=None) -> None:
        if not self.enabled:
            return
        # Heads stay: their order is function-preserving only at the head number it was scored with,
        # and the CKA head search later merges them.
        reorder_(self.net, self.acc.scores(), heads=False, optimizer=optimizer)
        self.acc = ImportanceAccumulator(self.net)
        self.loop.extra["importance"] = self.acc.state_dict()


def upsert_epoch_rows(path: Path, rows: list[dict], epoch: int) -> None:
    """Replace this epoch's rows of a CSV table (a resumed epoch writes them again), keep the others."""
    try:
        old = pd.read_csv(path) if path.exists() else pd.DataFrame()
    except pd.errors.EmptyDataError:  # an earlier epoch had no rows (no growth: dynamic_ffn=False)
        old = pd.DataFrame()
    if len(old):
        old = old[old["epoch"] != epoch]
    new = pd.concat([old, pd.DataFrame(rows)], ignore_index=True)
    write_csv(new.sort_values(["epoch"] + [c for c in ("layer", "block") if c in new]).reset_index(drop=True)
              if len(new) else new, path)


# --------------------------------------------------------------------------- stage 1

def pretrain_supernet(ctx: RunContext) -> None:
    """Stage 1: masked-LM pretraining with KD, one uniformly sampled path per step; after every epoch
    the PCA scores and growth (`growth_after_epoch`); at the end, block similarity (Figs. 3b/6)."""
    c = ctx.cfg
    net = build_supernet(c, ctx.space).to(ctx.device)
    teacher = load_teacher(c.teacher).to(ctx.device)
    kd = ctx.kd_loss(len(net.layers), teacher, with_logits=False).to(ctx.device)
    objective = Objective(net, net.predictions, kd, "mlm", c.mlm_weight, ctx.dist.denominator)
    wrapped = [ctx.dist.wrap(objective)]
    train, heldout = ctx.dist.main_first(lambda: (
        mlm_batches(ctx.tokenizer(), c.max_length, c.pretrain_batch_size, "train", c.seed, source=c.corpus,
                    max_documents=c.corpus_documents or None),
        mlm_batches(ctx.tokenizer(), c.max_length, c.eval_batch_size, "heldout", c.seed, source=c.corpus,
                    max_documents=c.corpus_documents or None)))
    pca_batches = [b for _, b in zip(range(c.pca_batches), heldout)]
    loop = ctx.loop("pretrain", {"net": net, "kd": kd}, adamw([net, kd], c.pretrain_lr, c.weight_decay),
                    c.pretrain_epochs, c.pretrain_steps or len(train))
    loop.extra["ffn"] = net.ffn_sizes()
    importance = ImportanceTracker(net, loop, enabled=c.importance)
    end_of_epoch = growth_after_epoch(ctx, net, loop, objective, wrapped, importance, pca_batches)

    def step(batch, index):
        batch = ctx.dist.shard(to_device(batch, ctx.device))
        with torch.no_grad():
            t = teacher(**teacher_inputs(teacher, batch))
        parts = wrapped[0](batch, t, arch=net.sample(path_rng(c.seed, index)))
        parts["loss"].backward()
        importance.update()
        return ctx.dist.mean(parts)

    if loop.resume(lambda extra: net.grow_to(extra["ffn"])):
        wrapped[0] = ctx.dist.wrap(objective)
        importance.restore()
    loop.run(lambda e: train.set_epoch(e) or iter(train), step, end_of_epoch)
    if ctx.dist.is_main:
        finish_pretraining(ctx, net, loop, pca_batches)


def growth_after_epoch(ctx: RunContext, net: Supernet, loop: TrainLoop, objective, wrapped: list,
                       importance: ImportanceTracker, pca_batches: list) -> Callable[[int], None]:
    """The end of a pretraining epoch (Sec. III-B): reorder by importance, score every block
    (`pca_scores`), grow the top-K within the cap (`grow_blocks`), upsert pca_scores.csv and
    growth.csv. ``wrapped[0]``: the objective as the steps call it (DDP-wrapped again after growth)."""
    c = ctx.cfg
    k = blocks_per_epoch(c.growth_k, sharing_blocks=c.candidates != "no_sharing")
    cap = c.growth_limit or growth_cap(ctx.space, net.candidates)

    def end_of_epoch(epoch: int) -> None:
        # DDP's reducer holds the parameters' gradient accumulators: release it before growth
        # resizes them, and wrap again afterwards (its buckets were sized for the old shapes).
        wrapped[0] = objective
        gc.collect()
        # Before growth: this epoch's scores cover the units that exist now; new units go last.
        importance.reorder(loop.optimizer)
        # Every rank scores the same batches and so grows the same blocks.
        start = time.perf_counter()
        rows = pca_scores(net, pca_batches, c.pca_threshold, epoch, ctx.device)
        loop.extra["pca_seconds"] = loop.extra.get("pca_seconds", 0.0) + time.perf_counter() - start
        grown = grow_blocks(net, rows, k=k, cap=cap, form=c.pca_score, init=c.growth_init,
                            generator=seeded_generator(c.seed, epoch), optimizer=loop.optimizer,
                            epoch=epoch) if c.dynamic_ffn else []
        if ctx.dist.is_main:
            upsert_epoch_rows(ctx.dir / "pca_scores.csv", rows, epoch)
            upsert_epoch_rows(ctx.dir / "growth.csv", grown, epoch)
        loop.extra["ffn"] = net.ffn_sizes()
        wrapped[0] = ctx.dist.wrap(objective)

    return end_of_epoch


def finish_pretraining(ctx: RunContext, net: Supernet, loop: TrainLoop, pca_batches: list) -> None:
    """block_similarity.csv (along one sampled path), pretrain_timings.json, supernet_pretrain.pt."""
    c = ctx.cfg
    start = time.perf_counter()
    rows = measure_block_similarity(net, pca_batches, net.sample(path_rng(c.seed, -1)), ctx.device)
    write_csv(pd.DataFrame([{**row, "kd": c.kd} for row in rows]), ctx.dir / "block_similarity.csv")
    write_json({"pca_seconds": loop.extra.get("pca_seconds", 0.0),
                "block_similarity_seconds": time.perf_counter() - start,
                "train_step_seconds": sum(json.loads(line)["seconds"]
                                          for line in loop.log_path.read_text().splitlines())},
               ctx.dir / "pretrain_timings.json")
    ctx.save_supernet(net, "supernet_pretrain.pt")
    loop.ckpt_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- stage 2

def finetune_supernet(ctx: RunContext) -> None:
    """Stage 2: fine-tuning of the pretrained supernet and a fresh task head on the task's 90% split
    with KD from the task teacher, one sampled path per step."""
    c = ctx.cfg
    net, _ = ctx.load_supernet("supernet_pretrain.pt")
    net.to(ctx.device)
    teacher = ctx.dist.main_first(ctx.task_teacher)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(c.seed)
        head = ElmClassificationHead(ctx.space.config(net.uniform_path(*net.candidates[0]),
                                                      num_labels=ctx.spec.num_labels,
                                                      classifier_pooling=c.classifier_pooling,
                                                      hidden_dropout_prob=c.dropout))
        init_weights(head, 0.02)
    head.to(ctx.device)
    kd = ctx.kd_loss(len(net.layers), teacher, with_logits=True).to(ctx.device)
    wrapped = ctx.dist.wrap(Objective(net, head, kd, ctx.kind, c.ce_weight))
    train = TaskBatches(ctx.dist.main_first(lambda: ctx.task_split("train90", c.train_limit)), ctx.tokenizer(),
                        c.finetune_batch_size, c.seed)
    loop = ctx.loop("finetune", {"net": net, "head": head, "kd": kd},
                    adamw([net, head, kd], c.finetune_lr, c.weight_decay), c.finetune_epochs,
                    c.finetune_steps or len(train))
    importance = ImportanceTracker(net, loop, enabled=c.importance)

    def step(batch, index):
        batch = ctx.dist.shard(to_device(batch, ctx.device))
        with torch.no_grad():
            t = teacher(**teacher_inputs(teacher, batch))
        parts = wrapped(batch, t, arch=net.sample(path_rng(c.seed + 1, index)))
        parts["loss"].backward()
        importance.update()
        return ctx.dist.mean(parts)

    if loop.resume():
        importance.restore()
    loop.run(train.epoch, step)
    importance.reorder()  # by task importance, so the search's narrower widths keep the best units
    if ctx.dist.is_main:
        ctx.save_supernet(net, "supernet_finetune.pt", head)
        loop.ckpt_path.unlink(missing_ok=True)
