"""What every stage of a search run shares (paper Algorithm 2): the run folder, its lock and
bookkeeping, the device, the data and teachers, KD losses and the saved supernets.

    ctx = RunContext(cfg, "runs/boolq-smoke")        # checks, then claims and locks the folder
    net, state = ctx.load_supernet("supernet_finetune.pt")
    ctx.close()                                        # releases the lock

`RunContext` checks the config against the machine (`preflight`), the tokenizer against the students'
vocabulary and the budget against the space before the folder is touched, claims the folder
(`claim_run_folder`), and then serves the stages (`elmlib.pipeline.stages`, `elmlib.pipeline.retrain`):
resumable training loops whose checkpoints record the stage's wall time, the tokenizer, the task's
splits and teacher, the KD loss, the saved supernets and the found architecture files. The module's
functions build the same objects from a config alone (benchmarks and analyses use them without a run
folder).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path

import torch
from torch import nn

from elmlib.data.filetask import split_record
from elmlib.data.tasks import resolve_task
from elmlib.data.teachers import finetune_teacher
from elmlib.data.tokenization import load_tokenizer, tokenize_task
from elmlib.errors import UserError
from elmlib.io.files import atomic_write, write_json
from elmlib.model.modeling_elm import ElmClassificationHead
from elmlib.nas.losses import DistillationLoss
from elmlib.nas.objective import subset
from elmlib.nas.space import CANDIDATES, Architecture, SearchSpace
from elmlib.nas.supernet import Supernet
from elmlib.pipeline.config import SearchConfig, task_config
from elmlib.pipeline.preflight import check_tokenizer, preflight
from elmlib.pipeline.runfolder import claim_run_folder
from elmlib.train.distributed import Distributed
from elmlib.train.runtime import resolve_device
from elmlib.train.training import TrainLoop, load_tensors

SUPERNET_FORMAT = "elmlib-supernet-v1"
# The learning-rate setting of each training loop (named when a loop diverges).
LR_SETTINGS = {"pretrain": "pretrain_lr", "finetune": "finetune_lr", "retrain_pretrain": "pretrain_lr",
               "retrain_finetune": "retrain_lr"}


# --------------------------------------------------------------------------- from a config alone

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


def student_space(cfg: SearchConfig, tokenizer) -> SearchSpace:
    """``cfg.search_space()`` with ``tokenizer``'s padding id, the word-embedding row the students keep at
    zero (BERT's WordPiece pads with 0, RoBERTa's BPE with 1, whose 0 is ``<s>``)."""
    return dataclasses.replace(cfg.search_space(), pad_token_id=tokenizer.pad_token_id)


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


# --------------------------------------------------------------------------- the run's context

class RunContext:
    """One run folder of one config, claimed and locked (module docstring). ``stop_at`` maps a loop
    name (``pretrain``, ``finetune``, ``retrain_pretrain``, ``retrain_finetune``) or ``search`` to the
    step or evaluation after which the run raises `elmlib.train.training.Interrupted`: a simulated kill
    for tests."""

    def __init__(self, cfg: SearchConfig, run_dir: str | Path, overwrite: bool = False, progress: bool = True,
                 stop_at: dict[str, int] | None = None):
        self.cfg, self.dir, self.progress = cfg, Path(run_dir), progress
        self.stop_at = dict(stop_at or {})
        preflight(cfg)  # machine, data and teacher checks: all before the run folder is touched
        self.spec = resolve_task(cfg)  # a data file -> its content-named task (file-<stem>-<digest>)
        self.kind = "regression" if self.spec.is_regression else "classification"
        tokenizer = self.tokenizer()
        check_tokenizer(cfg, tokenizer)  # again: preflight cannot see a hub tokenizer before it loads
        self.space = student_space(cfg, tokenizer)
        low, high = budget_bounds(cfg, self.space)
        if not low <= cfg.budget <= high:
            raise UserError(f"budget={cfg.budget:.4g} is not allowed for the {self.space.name!r} space: "
                            f"architectures have {low:,} to {high:,} parameters")
        self.dist = Distributed()
        self.folder = claim_run_folder(self.dir, cfg.to_dict(), cfg.digest(), overwrite) if self.dist.is_main else None
        try:
            if self.dist.is_main and self.spec.from_table:
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
        """Store a data file's (or hub dataset's) split beside the run (data_split.json); a rerun on changed
        data stops."""
        record, path = split_record(self.spec.name), self.dir / "data_split.json"
        if path.exists() and json.loads(path.read_text())["task"] != record["task"]:
            what = "hub dataset" if record.get("hub") else "data file"
            raise UserError(f"{what} {self.cfg.task} changed since run folder {self.dir} was made (it now "
                            f"reads as {record['task']}); restore the {what}, or use another --run-dir")
        if not path.exists():
            write_json(record, path)

    def for_task(self, task: str) -> "RunContext":
        """This run seen as a run on ``task`` alone (a suite member, `config.task_config`): the same folder,
        device, clock and stop points, that task's config, splits and teacher. Closing the view releases
        nothing: close the run."""
        view = copy.copy(self)
        view.cfg = task_config(self.cfg, task)
        view.spec = resolve_task(view.cfg)
        view.kind = "regression" if view.spec.is_regression else "classification"
        view.folder = None
        return view

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
                         on_save=self.record_elapsed, lr_setting=LR_SETTINGS[name], stop_at=self.stop_at.get(name))

    # --- data, teachers, losses --------------------------------------------------------------------
    def tokenizer(self):
        return load_tokenizer(self.cfg.tokenizer_source())

    def task_split(self, split: str, limit: int):
        return subset(tokenize_task(self.spec.name, split, self.tokenizer(), self.cfg.max_length), limit, self.cfg.seed)

    def task_teacher(self):
        c = self.cfg
        model, _ = finetune_teacher(self.spec.name, c.teacher, tokenizer=c.tokenizer or None,
                                    epochs=c.teacher_epochs, lr=c.teacher_lr,
                                    batch_size=c.finetune_batch_size, max_length=c.max_length,
                                    max_steps=c.teacher_max_steps or None, seed=c.seed,
                                    train_limit=c.train_limit or None, eval_limit=c.dev_limit or None)
        model.set_attn_implementation("eager")  # attention maps for KD
        model.config.output_hidden_states = True
        model.config.output_attentions = True
        return model.eval().to(self.device)

    def kd_loss(self, student_layers: int, teacher, with_logits: bool) -> DistillationLoss:
        return kd_loss(self.cfg, self.space, student_layers, teacher, with_logits)

    # --- files of the run --------------------------------------------------------------------------
    def save_supernet(self, net: Supernet, name: str, head: nn.Module | None = None) -> None:
        with atomic_write(self.dir / name, "wb") as f:
            torch.save({"format": SUPERNET_FORMAT, "ffn": net.ffn_sizes(), "supernet": net.state_dict(),
                        "head": None if head is None else head.state_dict()}, f)

    def load_supernet(self, name: str) -> tuple[Supernet, dict]:
        return load_supernet(self.cfg, self.space, self.dir / name)

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
