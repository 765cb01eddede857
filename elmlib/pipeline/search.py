"""The ELM search end to end (paper Algorithm 2), resumable, one stage after another.

    python -m elmlib search --scale smoke --task boolq --run-dir runs/boolq-smoke
    run_search(resolve_config("smoke", task="boolq"), "runs/boolq-smoke")      # what notebooks call

Stages, each writing into the run folder and skipped once its ``<stage>.done.json`` exists:
1. ``pretrain``: supernet masked-LM pretraining with KD from the teacher, one uniformly sampled path
   per step; after every epoch the PCA score of every block's FFN activations and growth of the
   top-K blocks by one FFN step within the parameter cap -> pca_scores.csv, growth.csv,
   block_similarity.csv (Figs. 2, 3b, 6).
2. ``finetune``: supernet fine-tuning on the task's 90% split with KD from the task teacher.
3. ``search``: evolutionary search scoring paths on the 10% search split under the budget ->
   search_history.csv, pareto_front.csv, arch_searched.json.
4. ``heads``: linear CKA between the heads of every layer of the found architecture, Algorithm 1
   -> cka.csv and the final arch.json.
5. ``retrain``: the found architecture as a standalone model: pretraining with KD, fine-tuning with
   KD, dev evaluation -> final_metrics.csv (with latency) and model/ (save_pretrained); `elmlib.pipeline.retrain`.

Beyond the paper: ``importance=true`` sorts every block's FFN units by first-order importance after
each pretraining epoch and after fine-tuning (EFTNAS; `ImportanceTracker`), and ``elastic_widths=n``
lets the search take FFN prefixes up to n-1 steps below the grown sizes (docs/importance.md).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from elmlib.nas.analysis import MinibatchCKA, PCAAccumulator, block_similarity, head_number
from elmlib.pipeline.config import SearchConfig, parse_sets, resolve_config
from elmlib.train.distributed import Distributed
from elmlib.errors import UserError
from elmlib.nas.evolution import EvolutionarySearch, EvolutionSettings
from elmlib.io.files import workspace, write_csv, write_json
from elmlib.nas.growth import blocks_per_epoch, grow_ffn, growth_score, select_growth
from elmlib.nas.importance import ImportanceAccumulator, reorder_
from elmlib.nas.losses import DistillationLoss
from elmlib.model.modeling_elm import ElmClassificationHead, sdpa_mask
from elmlib.pipeline.preflight import STAGES, check_stages, preflight
from elmlib.nas.objective import Objective, TaskBatches, predict, subset, to_device
from elmlib.pipeline.runfolder import claim_run_folder
from elmlib.pipeline.retrain import retrain, retrain_architecture  # noqa: F401 (re-exported)
from elmlib.nas.space import CANDIDATES, Architecture, LayerChoice, SearchSpace
from elmlib.nas.supernet import Supernet, init_weights
from elmlib.train.runtime import path_rng, resolve_device, seeded_generator
from elmlib.train.training import TrainLoop, adamw, load_tensors

SUPERNET_FORMAT = "elmlib-supernet-v1"
# The learning-rate setting of each training loop (named when a loop diverges).
LR_SETTINGS = {"pretrain": "pretrain_lr", "finetune": "finetune_lr", "retrain_pretrain": "pretrain_lr",
               "retrain_finetune": "retrain_lr"}


# --------------------------------------------------------------------------- small helpers

def device_for(cfg: SearchConfig) -> torch.device:
    return resolve_device(cfg.device)


def candidates_of(cfg: SearchConfig) -> tuple[tuple[str, str], ...]:
    return CANDIDATES if cfg.candidates == "all" else (("bert", "none"), ("mobilebert", "none"))


def budget_bounds(cfg: SearchConfig, space: SearchSpace) -> tuple[int, int]:
    """Smallest and largest architecture the search could produce (budget sanity check)."""
    counts = [space.num_params(Architecture.uniform(space.num_layers, b, s, f, space.num_heads))
              for b, s in candidates_of(cfg) for f in (space.ffn_init if not cfg.dynamic_ffn else space.ffn_min,
                                                        space.ffn_init if not cfg.dynamic_ffn else space.ffn_max)]
    return min(counts), max(counts)


def build_supernet(cfg: SearchConfig, space: SearchSpace) -> Supernet:
    return Supernet(space, candidates=candidates_of(cfg), seed=cfg.seed,
                    hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)


def kd_loss(cfg: SearchConfig, space: SearchSpace, student_layers: int, teacher, with_logits: bool) -> DistillationLoss:
    """The stage's KD loss (``cfg.kd``: relational Eqs. 4-5 or classical Eqs. 1-3), its projections
    initialised from ``cfg.seed`` without touching the global RNG stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return DistillationLoss(student_layers, teacher.config.num_hidden_layers, space.hidden_size,
                                teacher.config.hidden_size, kind=cfg.kd,
                                weights=(cfg.kd_logit_weight if with_logits else 0.0, cfg.kd_attn_weight,
                                         cfg.kd_hidden_weight))


def load_supernet(cfg: SearchConfig, space: SearchSpace, path: str | Path) -> tuple[Supernet, dict]:
    """A saved supernet (``supernet_pretrain.pt`` / ``supernet_finetune.pt``) at its grown FFN sizes,
    on the CPU, and the saved state (``head``: the fine-tuned task head, or None)."""
    state = load_tensors(Path(path))
    if not {"ffn", "supernet", "head"} <= set(state):  # files from before SUPERNET_FORMAT lack "format"
        raise UserError(f"{path} is not an elmlib supernet (no ffn/supernet/head entries); delete it to restart "
                        "this stage")
    net = build_supernet(cfg, space)
    net.grow_to(state["ffn"])
    net.load_state_dict(state["supernet"])
    return net, state


def saved_head(cfg: SearchConfig, space: SearchSpace, net: Supernet, state: dict,
               num_labels: int) -> ElmClassificationHead:
    """The fine-tuned task head saved with ``supernet_finetune.pt``, in eval mode."""
    head = ElmClassificationHead(space.config(net.uniform_path(*net.candidates[0]), num_labels=num_labels,
                                              classifier_pooling=cfg.classifier_pooling))
    head.load_state_dict(state["head"])
    return head.eval()


# --------------------------------------------------------------------------- the run

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


class SearchRun:
    def __init__(self, cfg: SearchConfig, run_dir: str | Path, overwrite: bool = False, progress: bool = True):
        from elmlib.data.tasks import resolve_task

        self.cfg, self.dir, self.progress = cfg, Path(run_dir), progress
        preflight(cfg)  # machine, data and teacher checks: all before the run folder is touched
        self.spec = resolve_task(cfg)  # a data file -> its content-named task (file-<stem>-<digest>)
        self.kind = "regression" if self.spec.is_regression else "classification"
        self.space = cfg.search_space()
        low, high = budget_bounds(cfg, self.space)
        if not low <= cfg.budget <= high:
            raise UserError(f"budget={cfg.budget:.4g} is not allowed for the {self.space.name!r} space: "
                            f"architectures have {low:,} to {high:,} parameters")
        self.dist = Distributed()
        self.folder = claim_run_folder(self.dir, cfg.to_dict(), cfg.digest(), overwrite) if self.dist.is_main else None
        try:
            if self.dist.is_main and self.spec.source == "file":
                self.keep_data_split()
            self.dist.barrier()
            if not self.dist.is_main and json.loads((self.dir / "config.json").read_text()) != cfg.to_dict():
                raise UserError(f"rank {self.dist.rank}: run folder {self.dir} holds another config")
            self.device = self.dist.device(device_for(cfg))
        except BaseException:
            self.close()  # a failed start never keeps the folder locked
            raise
        self.times: dict[str, float] = {}
        self.clock: tuple[str, float, float] | None = None  # (running stage, its start, earlier attempts' s)

    def keep_data_split(self) -> None:
        """Store a data file's split beside the run (data_split.json); a rerun on a changed file stops."""
        from elmlib.data.filetask import split_record

        record, path = split_record(self.spec.name), self.dir / "data_split.json"
        if path.exists() and json.loads(path.read_text())["task"] != record["task"]:
            raise UserError(f"data file {self.cfg.task} changed since run folder {self.dir} was made (it now "
                            f"reads as {record['task']}); restore the file, or use another --run-dir")
        if not path.exists():
            write_json(record, path)

    def close(self) -> None:
        """Release the run folder's lock (also done when the object is collected or the process ends)."""
        if self.folder is not None:
            self.folder.release()

    # --- bookkeeping -------------------------------------------------------------------------------
    def done(self, stage: str) -> bool:
        return (self.dir / f"{stage}.done.json").exists()

    def mark_done(self, stage: str, seconds: float, **info) -> None:
        write_json({"stage": stage, "seconds": seconds, **info}, self.dir / f"{stage}.done.json")

    def earlier_seconds(self, stage: str) -> float:
        """Wall time that interrupted attempts of ``stage`` spent up to their last checkpoint."""
        path = self.dir / f"{stage}.elapsed.json"
        return float(json.loads(path.read_text())["seconds"]) if path.exists() else 0.0

    def record_elapsed(self) -> None:
        """At every checkpoint: the running stage's wall time so far, earlier attempts included, so that
        a stage resumed after a kill reports the time of all the work it kept, not of its last attempt."""
        if self.clock and self.dist.is_main:
            stage, start, earlier = self.clock
            write_json({"stage": stage, "seconds": earlier + time.time() - start},
                       self.dir / f"{stage}.elapsed.json")

    def loop(self, name: str, modules: dict, optimizer, epochs: int, steps: int, folder: Path | None = None,
             digest: str | None = None) -> TrainLoop:
        """A resumable loop of this run; ``digest`` (default: the config's) must match its checkpoint."""
        return TrainLoop(name, folder or self.dir, modules=modules, optimizer=optimizer, epochs=epochs, steps_per_epoch=steps,
                         warmup_ratio=self.cfg.warmup_ratio, checkpoint_every=self.cfg.checkpoint_every,
                         config_digest=digest or self.cfg.digest(), progress=self.progress, seed=self.cfg.seed,
                         is_main=self.dist.is_main, precision=self.cfg.precision, device=self.device,
                         on_save=self.record_elapsed, lr_setting=LR_SETTINGS[name])

    def tokenizer(self):
        from elmlib.data.tokenization import load_tokenizer

        return load_tokenizer("teacher" if self.cfg.teacher == "teacher" else self.cfg.teacher)

    def task_split(self, split: str, limit: int):
        from elmlib.data.tokenization import tokenize_task

        return subset(tokenize_task(self.spec.name, split, self.tokenizer(), self.cfg.max_length), limit, self.cfg.seed)

    def task_teacher(self):
        from elmlib.data.teachers import finetune_teacher

        c = self.cfg
        model, _ = finetune_teacher(self.spec.name, c.teacher, epochs=c.teacher_epochs, lr=c.teacher_lr,
                                    batch_size=c.finetune_batch_size, max_length=c.max_length,
                                    max_steps=c.teacher_max_steps or None, seed=c.seed,
                                    train_limit=c.train_limit or None, eval_limit=c.dev_limit or None)
        model.set_attn_implementation("eager")  # attention maps for KD
        model.config.output_hidden_states = True
        model.config.output_attentions = True
        return model.eval().to(self.device)

    def kd_loss(self, student_layers: int, teacher, with_logits: bool) -> DistillationLoss:
        return kd_loss(self.cfg, self.space, student_layers, teacher, with_logits)

    def save_supernet(self, net: Supernet, name: str, head: nn.Module | None = None) -> None:
        from elmlib.io.files import atomic_write

        with atomic_write(self.dir / name, "wb") as f:
            torch.save({"format": SUPERNET_FORMAT, "ffn": net.ffn_sizes(), "supernet": net.state_dict(),
                        "head": None if head is None else head.state_dict()}, f)

    def load_supernet(self, name: str) -> tuple[Supernet, dict]:
        return load_supernet(self.cfg, self.space, self.dir / name)

    # --- stage 1 -----------------------------------------------------------------------------------
    def stage_pretrain(self) -> None:
        from elmlib.data.corpus import mlm_batches
        from elmlib.data.teachers import load_teacher

        c = self.cfg
        net = build_supernet(c, self.space).to(self.device)
        teacher = load_teacher(c.teacher).to(self.device)
        kd = self.kd_loss(len(net.layers), teacher, with_logits=False).to(self.device)
        objective = Objective(net, net.predictions, kd, "mlm", c.mlm_weight, self.dist.denominator)
        wrapped = [self.dist.wrap(objective)]
        train, heldout = self.dist.main_first(lambda: (
            mlm_batches(self.tokenizer(), c.max_length, c.pretrain_batch_size, "train", c.seed, source=c.corpus,
                        max_documents=c.corpus_documents or None),
            mlm_batches(self.tokenizer(), c.max_length, c.eval_batch_size, "heldout", c.seed, source=c.corpus,
                        max_documents=c.corpus_documents or None)))
        pca_batches = [b for _, b in zip(range(c.pca_batches), heldout)]
        loop = self.loop("pretrain", {"net": net, "kd": kd}, adamw([net, kd], c.pretrain_lr, c.weight_decay),
                         c.pretrain_epochs, c.pretrain_steps or len(train))
        k = blocks_per_epoch(c.growth_k, sharing_blocks=c.candidates != "no_sharing")
        limit = c.growth_limit or self.growth_cap(net)
        loop.extra["ffn"] = net.ffn_sizes()
        importance = self.importance_tracker(net, loop)

        def step(batch, index):
            batch = self.dist.shard(to_device(batch, self.device))
            with torch.no_grad():
                t = teacher(batch["input_ids"], attention_mask=batch["attention_mask"],
                            token_type_ids=batch["token_type_ids"])
            parts = wrapped[0](batch, t, arch=net.sample(path_rng(c.seed, index)))
            parts["loss"].backward()
            importance.update()
            return self.dist.mean(parts)

        def end_of_epoch(epoch):
            # DDP's reducer holds the parameters' gradient accumulators: release it before growth
            # resizes them, and wrap again afterwards (its buckets were sized for the old shapes).
            wrapped[0] = objective
            gc.collect()
            # Before growth: this epoch's scores cover the units that exist now; new units go last.
            importance.reorder(loop.optimizer)
            # Every rank scores the same batches and so grows the same blocks.
            start = time.perf_counter()
            rows = self.pca_scores(net, pca_batches, epoch)
            loop.extra["pca_seconds"] = loop.extra.get("pca_seconds", 0.0) + time.perf_counter() - start
            grown = self.grow(net, rows, k, limit, epoch, loop.optimizer) if c.dynamic_ffn else []
            if self.dist.is_main:
                self.upsert(self.dir / "pca_scores.csv", rows, epoch)
                self.upsert(self.dir / "growth.csv", grown, epoch)
            loop.extra["ffn"] = net.ffn_sizes()
            wrapped[0] = self.dist.wrap(objective)

        if loop.resume(lambda extra: net.grow_to(extra["ffn"])):
            wrapped[0] = self.dist.wrap(objective)
            importance.restore()
        loop.run(lambda e: train.set_epoch(e) or iter(train), step, end_of_epoch)
        if self.dist.is_main:
            start = time.perf_counter()
            self.block_similarity(net, pca_batches)
            write_json({"pca_seconds": loop.extra.get("pca_seconds", 0.0),
                        "block_similarity_seconds": time.perf_counter() - start,
                        "train_step_seconds": sum(json.loads(line)["seconds"]
                                                  for line in loop.log_path.read_text().splitlines())},
                       self.dir / "pretrain_timings.json")
            self.save_supernet(net, "supernet_pretrain.pt")
            loop.ckpt_path.unlink(missing_ok=True)

    def importance_tracker(self, net: Supernet, loop: TrainLoop) -> "ImportanceTracker":
        return ImportanceTracker(net, loop, enabled=self.cfg.importance)

    def growth_cap(self, net: Supernet) -> int:
        """Default cap: the supernet's size when every block's FFN equals the hidden size (paper: the
        mean FFN dimension ends near the hidden size)."""
        s = self.space
        per_layer = sum(s.layer_params(LayerChoice(b, sh, s.hidden_size, s.num_heads)) for b, sh in net.candidates)
        return s.embedding_params() + s.num_layers * per_layer

    @torch.no_grad()
    def pca_scores(self, net: Supernet, batches, epoch: int) -> list[dict]:
        """Score every block on the same held-out batches, running each candidate as a uniform path."""
        net.eval()
        rows = []
        for b, s in net.candidates:
            arch = net.uniform_path(b, s)
            accs = [PCAAccumulator() for _ in arch.layers]
            for batch in batches:
                batch = to_device(batch, self.device)
                out = net(batch["input_ids"], attention_mask=batch["attention_mask"], arch=arch, output_ffn_hidden=True)
                for acc, act in zip(accs, out.ffn_hidden_states):
                    acc.update(act, batch["attention_mask"])
            counts = [acc.score(self.cfg.pca_threshold) for acc in accs]
            rows += [dict(epoch=epoch, layer=i, block=CANDIDATES.index((b, s)), block_type=b, sharing=s,
                          ffn_dim=layer.ffn_dim, score=n, normalized=growth_score(n, layer.ffn_dim, "normalized"))
                     for i, (layer, n) in enumerate(zip(arch.layers, counts))]
        net.train()
        return rows

    def grow(self, net: Supernet, scores: list[dict], k: int, limit: float, epoch: int, optimizer) -> list[dict]:
        """Grow by one step the top-k blocks by the ``pca_score`` form of their score, skipping those at
        the maximum or over the cap (`elmlib.nas.growth.select_growth`; ties: lower layer, then block)."""
        s, form, grown = self.space, self.cfg.pca_score, []
        generator = seeded_generator(self.cfg.seed, epoch)
        rows = sorted(scores, key=lambda r: (r["layer"], r["block"]))

        def cost(r):  # parameters one step adds to this block
            return (s.layer_params(LayerChoice(r["block_type"], r["sharing"], r["ffn_dim"] + s.ffn_step, s.num_heads))
                    - s.layer_params(LayerChoice(r["block_type"], r["sharing"], r["ffn_dim"], s.num_heads)))
        chosen = select_growth([growth_score(r["score"], r["ffn_dim"], form) for r in rows],
                               [r["ffn_dim"] for r in rows], [cost(r) for r in rows], k=k, step=s.ffn_step,
                               ffn_max=s.ffn_max, params=net.num_params(), cap=limit)
        for row in (rows[i] for i in chosen):
            old = row["ffn_dim"]
            grow_ffn(net.block(row["layer"], row["block_type"], row["sharing"]), old + s.ffn_step,
                     init=self.cfg.growth_init, generator=generator, optimizer=optimizer)
            grown.append(dict(epoch=epoch, layer=row["layer"], block=row["block"], block_type=row["block_type"],
                              sharing=row["sharing"], old_ffn_dim=old, new_ffn_dim=old + s.ffn_step,
                              score=row["score"], supernet_params=net.num_params(),
                              normalized=growth_score(row["score"], old, "normalized"), ranked_by=form))
        return grown

    @torch.no_grad()
    def block_similarity(self, net: Supernet, batches) -> None:
        """Figs. 3b/6: feed each layer's input (along a sampled path) to all its blocks; cosine similarity."""
        net.eval()
        sums: dict[int, torch.Tensor] = {}
        arch = net.sample(path_rng(self.cfg.seed, -1))
        for batch in batches:
            batch = to_device(batch, self.device)
            x = net.embeddings(batch["input_ids"], batch["token_type_ids"])
            mask = sdpa_mask(batch["attention_mask"])
            for i, layer in enumerate(arch.layers):
                outs = [net.block(i, b, s)(x, mask, None, None).hidden for b, s in net.candidates]
                sim = block_similarity(outs, batch["attention_mask"]).cpu()
                sums[i] = sums.get(i, 0) + sim / len(batches)
                x = net.block(i, layer.block, layer.sharing)(x, mask, layer.heads, layer.ffn_dim).hidden
        rows = [dict(layer=i, block_i=CANDIDATES.index(net.candidates[a]), block_j=CANDIDATES.index(net.candidates[b]),
                     similarity=float(m[a, b]), kd=self.cfg.kd)
                for i, m in sums.items() for a in range(len(net.candidates)) for b in range(len(net.candidates))]
        write_csv(pd.DataFrame(rows), self.dir / "block_similarity.csv")
        net.train()

    @staticmethod
    def upsert(path: Path, rows: list[dict], epoch: int) -> None:
        """Replace this epoch's rows (a resumed epoch writes them again), keep the others."""
        try:
            old = pd.read_csv(path) if path.exists() else pd.DataFrame()
        except pd.errors.EmptyDataError:  # an earlier epoch had no rows (no growth: dynamic_ffn=False)
            old = pd.DataFrame()
        if len(old):
            old = old[old["epoch"] != epoch]
        new = pd.concat([old, pd.DataFrame(rows)], ignore_index=True)
        write_csv(new.sort_values(["epoch"] + [c for c in ("layer", "block") if c in new]).reset_index(drop=True)
                  if len(new) else new, path)

    # --- stage 2 -----------------------------------------------------------------------------------
    def stage_finetune(self) -> None:
        c = self.cfg
        net, _ = self.load_supernet("supernet_pretrain.pt")
        net.to(self.device)
        teacher = self.dist.main_first(self.task_teacher)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            head = ElmClassificationHead(self.space.config(net.uniform_path(*net.candidates[0]),
                                                           num_labels=self.spec.num_labels,
                                                           classifier_pooling=c.classifier_pooling,
                                                           hidden_dropout_prob=c.dropout))
            init_weights(head, 0.02)
        head.to(self.device)
        kd = self.kd_loss(len(net.layers), teacher, with_logits=True).to(self.device)
        objective = Objective(net, head, kd, self.kind, c.ce_weight)
        wrapped = self.dist.wrap(objective)
        train = TaskBatches(self.dist.main_first(lambda: self.task_split("train90", c.train_limit)), self.tokenizer(),
                            c.finetune_batch_size, c.seed)
        loop = self.loop("finetune", {"net": net, "head": head, "kd": kd},
                         adamw([net, head, kd], c.finetune_lr, c.weight_decay), c.finetune_epochs,
                         c.finetune_steps or len(train))
        importance = self.importance_tracker(net, loop)

        def step(batch, index):
            batch = self.dist.shard(to_device(batch, self.device))
            with torch.no_grad():
                t = teacher(**batch)
            parts = wrapped(batch, t, arch=net.sample(path_rng(c.seed + 1, index)))
            parts["loss"].backward()
            importance.update()
            return self.dist.mean(parts)

        if loop.resume():
            importance.restore()
        loop.run(train.epoch, step)
        importance.reorder()  # by task importance, so the search's narrower widths keep the best units
        if self.dist.is_main:
            self.save_supernet(net, "supernet_finetune.pt", head)
            loop.ckpt_path.unlink(missing_ok=True)

    # --- stage 3 -----------------------------------------------------------------------------------
    def stage_search(self) -> None:
        from elmlib.data.tasks import compute_metrics

        from elmlib.extensions.proxies import score_architecture

        c = self.cfg
        proxy_only = c.search_mode == "proxy_only"
        if proxy_only:  # no supernet training: blocks keep their starting FFN sizes
            net, head, batches = build_supernet(c, self.space), None, []
        else:
            net, state = self.load_supernet("supernet_finetune.pt")
            net.to(self.device).eval()
            head = saved_head(c, self.space, net, state, self.spec.num_labels).to(self.device)
            batches = list(TaskBatches(self.task_split("search", c.search_limit), self.tokenizer(),
                                       c.eval_batch_size, shuffle=False).epoch())
        metric = "proxy" if proxy_only else self.spec.metrics[0]
        proxy_cache: dict[str, float] = {}

        def proxy(arch):
            key = arch.to_json()
            if key not in proxy_cache:
                proxy_cache[key] = score_architecture(self.space, arch, seed=c.seed)
            return proxy_cache[key]
        interrupt = os.environ.get("ELMLIB_INTERRUPT_AT", "")
        stop_after = int(interrupt.split(":")[1]) if interrupt.startswith("search:") else None
        calls = [0]

        widths = c.elastic_widths  # a gene = (candidate block, how many FFN steps below its grown size)

        def decode(genome):
            layers = []
            for i, g in enumerate(genome):
                block, sharing = net.candidates[g // widths]
                ffn = max(self.space.ffn_min, net.ffn_dim(i, block, sharing) - (g % widths) * self.space.ffn_step)
                layers.append(LayerChoice(block, sharing, ffn, self.space.num_heads))
            return Architecture(tuple(layers))

        def score(arch):
            calls[0] += 1
            if stop_after is not None and calls[0] > stop_after:
                raise KeyboardInterrupt(f"search: simulated kill before evaluation {calls[0]}")
            if proxy_only:
                return proxy(arch)
            logits, labels = predict(net, head, batches, self.device, arch)
            return compute_metrics(self.spec, logits.numpy(), labels.numpy())[metric]

        search = EvolutionarySearch(
            len(net.layers), len(net.candidates) * widths, decode, self.space.num_params, c.budget, score, seed=c.seed,
            settings=EvolutionSettings(population=c.population, generations=c.generations,
                                       crossover_prob=c.crossover_prob, mutation_prob=c.mutation_prob,
                                       parents=c.parents,
                                       proxy_fraction=c.proxy_fraction if c.search_mode == "proxy_assisted" else 1.0),
            state_path=self.dir / "evolution_state.json", proxy=proxy if c.search_mode == "proxy_assisted" else None)

        def table(rows):
            return pd.DataFrame([dict(generation=e.generation, arch=e.arch.to_json(), params=e.params,
                                      non_embedding_params=self.space.num_non_embedding_params(e.arch),
                                      score=e.score, metric=metric) for e in rows])

        def write_history(s):  # after each generation, whose state the search has just saved
            write_csv(table(s.history()), self.dir / "search_history.csv")
            self.record_elapsed()

        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=c.generations, initial=search.generation, desc="search", leave=False)
            on_generation = lambda s: (write_history(s), bar.update(1),  # noqa: E731
                                       bar.set_postfix(best=f"{s.best().score:.4f}"))
        else:
            bar, on_generation = None, write_history
        try:
            search.run(on_generation)
        finally:
            if bar:
                bar.close()
        write_history(search)
        write_csv(table(search.pareto_front()), self.dir / "pareto_front.csv")
        best = search.best()
        write_json({**best.arch.to_dict(), "params": best.params, "score": best.score, "metric": metric,
                    "search_mode": c.search_mode, "evaluated": len(search.evaluated),
                    "proxy_ranked": search.proxy_ranked, "rejected_over_budget": search.rejected_over_budget},
                   self.dir / "arch_searched.json")

    # --- stage 4 -----------------------------------------------------------------------------------
    @torch.no_grad()
    def stage_heads(self) -> None:
        c = self.cfg
        arch = self.read_arch("arch_searched.json")
        if c.search_mode == "proxy_only":  # no trained weights to measure head redundancy on
            write_json({**arch.to_dict(), "params": self.space.num_params(arch), "head_search": False},
                       self.dir / "arch.json")
            return
        net, _ = self.load_supernet("supernet_finetune.pt")
        model = net.extract(arch).to(self.device).eval()
        batches = TaskBatches(self.task_split("search", c.search_limit), self.tokenizer(), c.eval_batch_size,
                              shuffle=False)
        accs = [MinibatchCKA() for _ in arch.layers]
        for _, batch in zip(range(c.cka_batches), batches.epoch()):
            batch = to_device(batch, self.device)
            out = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch["token_type_ids"], output_head_outputs=True)
            for acc, heads in zip(accs, out.head_outputs):
                acc.update(heads, batch["attention_mask"])
        rows, layers = [], []
        for i, (layer, acc) in enumerate(zip(arch.layers, accs)):
            q = acc.matrix()
            rows += [dict(layer=i, head_i=a, head_j=b, cka=float(q[a, b]))
                     for a in range(q.shape[0]) for b in range(q.shape[0])]
            heads = head_number(q, c.cka_eta, self.space.attention_width(layer.block)) if c.head_search else layer.heads
            layers.append(LayerChoice(layer.block, layer.sharing, layer.ffn_dim, heads))
        write_csv(pd.DataFrame(rows), self.dir / "cka.csv")
        final = Architecture(tuple(layers))
        write_json({**final.to_dict(), "params": self.space.num_params(final), "head_search": c.head_search},
                   self.dir / "arch.json")

    # --- stage 5 -----------------------------------------------------------------------------------
    def read_arch(self, name: str) -> Architecture:
        """An architecture file of this run, checked against the space and the budget (it may have been
        edited by hand: the search itself never writes one over the budget)."""
        path = self.dir / name
        try:
            arch = self.space.validate(Architecture.from_dict({"layers": json.loads(path.read_text())["layers"]}))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path} is not a valid architecture of the {self.space.name!r} space ({err}); "
                            "delete it and the stage's .done.json to recompute it") from None
        params = self.space.num_params(arch)
        if params > self.cfg.budget:
            raise UserError(f"{path} has {params:,} parameters, over budget={self.cfg.budget:.4g}; it was edited or "
                            "comes from another search: delete it and the stage's .done.json to recompute it")
        return arch

    def stage_retrain(self) -> None:
        arch = self.read_arch("arch.json")
        self.retrain(arch, self.dir, self.cfg.inherit_weights and self.cfg.search_mode != "proxy_only")

    def retrain(self, arch: Architecture, folder: Path, inherit: bool) -> pd.DataFrame:
        """Retrain ``arch`` standalone into ``folder`` (`elmlib.pipeline.retrain.retrain`)."""
        return retrain(self, arch, folder, inherit)

    # --- driver ------------------------------------------------------------------------------------
    def run(self, stages=STAGES) -> Path:
        """Run the stages not done yet. Under torchrun, stages 1-2 run data-parallel on every rank;
        the later ones (evaluation-bound) run on rank 0 while the others leave."""
        todo = [s for s in check_stages(stages) if not self.done(s)]
        if todo and self.folder is not None and self.folder.read_only:
            raise UserError(f"run folder {self.dir} is read-only and stages {todo} are not done yet; "
                            "copy it somewhere writable or use another --run-dir")
        for stage in stages:
            if self.done(stage):
                continue
            if stage not in ("pretrain", "finetune") and not self.dist.is_main:
                break
            if stage in ("pretrain", "finetune") and self.cfg.search_mode == "proxy_only":
                continue  # the proxy ranks untrained architectures
            earlier = self.earlier_seconds(stage)
            start = time.time()
            self.clock = (stage, start, earlier)
            getattr(self, f"stage_{stage}")()
            self.clock = None
            self.times[stage] = earlier + time.time() - start
            if self.dist.is_main:
                self.mark_done(stage, self.times[stage], **({"earlier_attempts_seconds": earlier} if earlier else {}))
                (self.dir / f"{stage}.elapsed.json").unlink(missing_ok=True)
            if stage in ("pretrain", "finetune"):
                self.dist.barrier()
        return self.dir


def run_search(cfg: SearchConfig, run_dir: str | Path, overwrite: bool = False, progress: bool = True,
               stages=STAGES) -> Path:
    """Run (or resume) the whole search; returns the run folder."""
    stages = check_stages(stages)
    run = SearchRun(cfg, run_dir, overwrite, progress)
    try:
        return run.run(stages)
    finally:
        run.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", default="smoke", help="smoke | small | paper")
    parser.add_argument("--task", default="boolq", help="a task name, or a data file (.csv/.tsv/.jsonl/.parquet) "
                        "with columns text, [text_pair], label (see docs/running.md)")
    parser.add_argument("--dev", default=None, metavar="PATH", help="a data file task's official dev file "
                        "(the setting dev_file; default: a seeded, stratified 20%% of the file)")
    parser.add_argument("--budget", default=None, help="parameter ceiling, e.g. 15.7M (default: the scale's)")
    parser.add_argument("--run-dir", default=None, help="default: runs/<task>-<scale>")
    parser.add_argument("--config", default=None, help="JSON file of settings")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    parser.add_argument("--overwrite", action="store_true", help="discard a run folder made with another config")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    """Errors the user can fix reach ``elmlib.__main__`` as one line (exit 2) before anything is written."""
    stages = check_stages(s for s in args.stages.split(",") if s)
    from elmlib.data.filetask import is_file_task

    sets = {**parse_sets(args.set), **({"dev_file": args.dev} if args.dev else {})}
    cfg = resolve_config(args.scale, args.task, args.budget, sets, args.config)
    task = Path(cfg.task).stem if is_file_task(cfg.task) else cfg.task
    run_dir = args.run_dir or workspace() / "runs" / f"{task}-{cfg.scale}"
    run = SearchRun(cfg, run_dir, args.overwrite, not args.no_progress)
    try:
        run.run(stages)
    finally:
        run.close()
        run.dist.close()
    if not run.dist.is_main:
        return 0
    print((Path(run_dir) / "final_metrics.csv").read_text() if (Path(run_dir) / "final_metrics.csv").exists() else
          f"stages done in {run_dir}")
    return 0
