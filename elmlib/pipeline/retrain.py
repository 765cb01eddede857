"""Stage 5 of the ELM search (paper Algorithm 2, step 5): the found architecture as a standalone
model, pretrained with KD on the corpus, fine-tuned with KD from the task teacher, evaluated on dev.

    retrain_architecture(resolve_config("smoke"), arch, "runs/boolq-smoke", "all_bert")   # a baseline
    retrain_found(ctx)            # stage 5: retrain(ctx, <arch.json>, ctx.dir, inherit=cfg.inherit_weights)

The same recipe retrains the uniform baselines of Tables I/II, so "found vs hand-designed at equal
parameters" compares architectures, not training.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pandas as pd
import torch

from elmlib.data.corpus import mlm_batches
from elmlib.data.tasks import compute_metrics
from elmlib.data.teachers import load_teacher, teacher_inputs
from elmlib.errors import UserError
from elmlib.io.cache import publish_model, published
from elmlib.io.files import device_description, write_result
from elmlib.model.modeling_elm import ElmForMaskedLM, ElmForSequenceClassification
from elmlib.nas.analysis import latency_ms
from elmlib.nas.objective import Objective, TaskBatches, predict, to_device
from elmlib.nas.space import Architecture
from elmlib.nas.supernet import init_weights
from elmlib.pipeline.config import SearchConfig
from elmlib.pipeline.context import RunContext
from elmlib.train.training import adamw


def recipe_digest(run: RunContext, arch: Architecture, inherit: bool) -> str:
    """What a retrained folder depends on: the config, the architecture and the starting weights."""
    # The suite is read only after retraining (pipeline.suite): a suite run and the same run without one
    # share this digest, so either's retrained model serves the other.
    config = dataclasses.replace(run.cfg, suite="").digest()
    blob = json.dumps({"config": config, "arch": arch.to_json(), "inherit": inherit}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _initial_mlm(run: RunContext, arch: Architecture, inherit: bool, keep: dict):
    """The model retraining starts from, and the inherited task head's weights (or None)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.cfg.seed)
        if not inherit:
            return ElmForMaskedLM(run.space.config(arch, **keep)), None
        net, state = run.load_supernet("supernet_finetune.pt")
        return net.extract(arch, ElmForMaskedLM, **keep), state["head"]


def _pretrain(run: RunContext, arch: Architecture, folder: Path, mlm, digest: str):
    """Masked-LM pretraining with KD from the teacher, cached in ``folder/retrain_pretrained`` by digest."""
    c = run.cfg
    pretrained = folder / "retrain_pretrained"
    if published(pretrained, digest):
        return ElmForMaskedLM.from_pretrained(pretrained).to(run.device)
    teacher = load_teacher(c.teacher).to(run.device)
    kd = run.kd_loss(len(arch), teacher, with_logits=False).to(run.device)
    objective = Objective(mlm.elm, mlm.predictions, kd, "mlm", c.mlm_weight)
    corpus = mlm_batches(run.tokenizer(), c.max_length, c.pretrain_batch_size, "train", c.seed, source=c.corpus,
                         max_documents=c.corpus_documents or None)
    loop = run.loop("retrain_pretrain", {"model": mlm, "kd": kd}, adamw([mlm, kd], c.pretrain_lr, c.weight_decay),
                    c.retrain_pretrain_epochs, c.retrain_pretrain_steps or len(corpus), folder, digest=digest)

    def pre_step(batch, index):
        batch = to_device(batch, run.device)
        with torch.no_grad():
            t = teacher(**teacher_inputs(teacher, batch))
        parts = objective(batch, t)
        parts["loss"].backward()
        return parts

    loop.resume()
    loop.run(lambda e: corpus.set_epoch(e) or iter(corpus), pre_step)
    publish_model(mlm, pretrained, digest)
    loop.ckpt_path.unlink(missing_ok=True)
    return mlm


def _finetune(run: RunContext, arch: Architecture, folder: Path, mlm, head_state, keep: dict, digest: str):
    """Task fine-tuning with KD from the task teacher; returns the classifier in eval mode."""
    c = run.cfg
    cls = ElmForSequenceClassification(run.space.config(arch, num_labels=run.spec.num_labels,
                                                         classifier_pooling=c.classifier_pooling, **keep))
    cls.elm.load_state_dict(mlm.elm.state_dict())
    if head_state is not None:
        cls.classifier.load_state_dict(head_state)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            init_weights(cls.classifier, cls.config.initializer_range)
    cls.to(run.device).train()
    task_teacher = run.task_teacher()
    kd = run.kd_loss(len(arch), task_teacher, with_logits=True).to(run.device)
    objective = Objective(cls.elm, cls.classifier, kd, run.kind, c.ce_weight)
    train = TaskBatches(run.task_split("train90", c.train_limit), run.tokenizer(), c.finetune_batch_size, c.seed)
    loop = run.loop("retrain_finetune", {"model": cls, "kd": kd}, adamw([cls, kd], c.retrain_lr, c.weight_decay),
                    c.retrain_finetune_epochs, c.retrain_finetune_steps or len(train), folder, digest=digest)

    def ft_step(batch, index):
        batch = to_device(batch, run.device)
        with torch.no_grad():
            t = task_teacher(**teacher_inputs(task_teacher, batch))
        parts = objective(batch, t)
        parts["loss"].backward()
        return parts

    loop.resume()
    loop.run(train.epoch, ft_step)
    loop.check_weights()
    return cls.eval(), loop


def retrain(run: RunContext, arch: Architecture, folder: str | Path, inherit: bool) -> pd.DataFrame:
    """Retrain ``arch`` standalone (pretraining with KD, then task fine-tuning with KD) and evaluate it
    on dev; writes final_metrics.csv and model/ into ``folder``. ``inherit`` starts from the fine-tuned
    supernet's weights and task head, else from a fresh (seeded) initialisation."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    run.space.validate(arch)
    digest = recipe_digest(run, arch, inherit)
    mlm, head_state = _initial_mlm(run, arch, inherit, dropout_settings(run.cfg))
    mlm = _pretrain(run, arch, folder, mlm.to(run.device).train(), digest)
    return finetune_and_score(run, arch, folder, mlm, head_state, inherit, digest, keep_model=True)


def dropout_settings(cfg: SearchConfig) -> dict:
    return dict(hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)


def pretrained_model(run: RunContext, arch: Architecture, folder: Path, inherit: bool):
    """The model ``retrain`` pretrained into ``folder/retrain_pretrained`` for this recipe, or None."""
    pretrained = folder / "retrain_pretrained"
    if not published(pretrained, recipe_digest(run, arch, inherit)):
        return None
    return ElmForMaskedLM.from_pretrained(pretrained).to(run.device)


def finetune_and_score(run: RunContext, arch: Architecture, folder: Path, mlm, head_state, inherit: bool,
                       digest: str, keep_model: bool) -> pd.DataFrame:
    """Fine-tune the pretrained ``mlm`` on ``run``'s task (with KD) and score it on dev: final_metrics.csv
    (with latency) in ``folder``, and the classifier in ``folder/model`` when ``keep_model``."""
    c = run.cfg
    cls, loop = _finetune(run, arch, folder, mlm, head_state, dropout_settings(c), digest)
    dev = TaskBatches(run.task_split("dev", c.dev_limit), run.tokenizer(), c.eval_batch_size, shuffle=False)
    logits, labels = predict(cls.elm, cls.classifier, dev.epoch(), run.device)  # refuses non-finite logits
    metrics = compute_metrics(run.spec, logits.numpy(), labels.numpy())
    latency = latency_ms(cls, run.device, repeats=c.latency_repeats)
    if keep_model:
        publish_model(cls, folder / "model", digest, run.tokenizer())
    table = pd.DataFrame([dict(task=c.task, metric=m, value=v, params=run.space.num_params(arch),
                               non_embedding_params=run.space.num_non_embedding_params(arch), latency_ms=latency,
                               device=device_description(), n_dev=len(labels), inherit_weights=inherit,
                               arch=arch.to_json(), scale=c.scale, seed=c.seed)
                          for m, v in metrics.items()])
    write_result(table, folder / "final_metrics.csv", config=c.to_dict(), seed=c.seed,
                 wall_time_s=sum(run.times.values()), recipe_digest=digest)
    loop.ckpt_path.unlink(missing_ok=True)
    return table


def retrain_found(ctx: RunContext) -> pd.DataFrame:
    """Stage 5: retrain the found architecture (arch.json, checked) into the run folder, from the
    supernet's weights when ``inherit_weights`` (and the supernet was trained: not ``proxy_only``)."""
    arch = ctx.read_arch("arch.json")
    return retrain(ctx, arch, ctx.dir, ctx.cfg.inherit_weights and ctx.cfg.search_mode != "proxy_only")


def _same_recipe(table: pd.DataFrame, arch: Architecture, inherit: bool) -> bool:
    return (set(table["arch"]) == {arch.to_json()}
            and set(table["inherit_weights"].astype(str).str.lower()) == {str(inherit).lower()})


def retrain_architecture(cfg: SearchConfig, arch: Architecture, run_dir: str | Path, name: str,
                         inherit: bool = False, progress: bool = True) -> pd.DataFrame:
    """Retrain any architecture (e.g. a uniform baseline of the same budget) with the search's recipe,
    into ``run_dir/baselines/<name>``; skipped when its final_metrics.csv holds this architecture,
    refused when it holds another."""
    run = RunContext(cfg, run_dir, progress=progress)
    try:
        folder = run.dir / "baselines" / name
        if (folder / "final_metrics.csv").exists():
            table = pd.read_csv(folder / "final_metrics.csv")
            if not _same_recipe(table, arch, inherit):
                raise UserError(f"{folder} holds the results of another architecture (or other starting weights) "
                                f"than the one asked for; use another name than {name!r} or delete that folder")
            return table
        return retrain(run, arch, folder, inherit)
    finally:
        run.close()
