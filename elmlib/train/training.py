"""Resumable training loops with checkpoints, step logs and progress bars (paper Appendix A:
Adam(0.9, 0.999), weight decay 0.01, linear decay with 10% warm-up).

One loop serves every stage (supernet pretraining and fine-tuning, retraining): the caller gives a
step function and per-epoch batches; the loop owns the optimizer schedule, checkpoints (modules,
optimizer, scheduler, RNG states, position, caller state such as grown FFN sizes), the JSON-lines
step log and resumption. Killing the process at any moment and rerunning resumes from the last
checkpoint and ends, on CPU, with the same result as an uninterrupted run.

    loop = TrainLoop("stage1", run_dir, modules={"net": net}, optimizer=opt, epochs=2, steps_per_epoch=100,
                     checkpoint_every=50, config_digest=cfg.digest())
    loop.run(batches_for_epoch, step_fn, end_of_epoch=grow)
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import json
import math
import random
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from elmlib.errors import TrainingDiverged, UserError
from elmlib.io.files import atomic_write
from elmlib.train.runtime import derived_seed, path_rng  # noqa: F401 (path_rng re-exported)

CHECKPOINT_FORMAT = "elmlib-checkpoint-v1"

# Simulated kills for tests: loop name -> the step after which a `TrainLoop` of that name raises
# `Interrupted` (its ``stop_at`` default). Empty, as production leaves it; tests fill it through a
# fixture (``monkeypatch.setitem(training.STOP_AT, "squad", 7)``) to kill loops they do not build.
STOP_AT: dict[str, int] = {}


class Interrupted(KeyboardInterrupt):
    """A simulated kill (``stop_at``): the loop stops as ``kill`` would stop it, after a step."""


def adamw(modules: Iterable[nn.Module], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW(0.9, 0.999); biases and norm weights get no weight decay (BERT practice)."""
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for name, p in module.named_parameters():
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            (no_decay if p.dim() < 2 else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.999))


def _warmup_then(decay: Callable[[int, int, int], float]):
    """A schedule: linear warm-up over ``warmup_ratio`` of the steps, then ``decay(step, warmup, total)``."""
    def schedule(optimizer, total_steps: int, warmup_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
        warmup = max(1, int(total_steps * warmup_ratio))

        def factor(step: int) -> float:
            return (step + 1) / warmup if step < warmup else decay(step, warmup, total_steps)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return schedule


# BERT's schedule: warm-up, then linear decay to 0 (every encoder stage, Appendix A).
linear_warmup_decay = _warmup_then(lambda step, warmup, total: max(0.0, (total - step) / max(1, total - warmup)))
# Warm-up, then cosine decay to 0 (the paper's causal-LM pretraining, Sec. V).
cosine_warmup_decay = _warmup_then(
    lambda step, warmup, total: 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup)))))


def fit(model: nn.Module, batches_for_epoch: Callable[[int], Iterable[dict]], steps: int, *, lr: float,
        weight_decay: float = 0.01, warmup_ratio: float = 0.1, log_every: int = 0) -> list[float]:
    """A plain (not resumable) fine-tuning loop for short jobs such as the task teachers: ``steps``
    AdamW updates of ``model(**batch).loss`` with linear warm-up/decay and gradient clipping at 1.0,
    over ``batches_for_epoch(0)``, ``(1)``, ... Returns the loss of every step."""
    optimizer = adamw([model], lr, weight_decay)
    schedule = linear_warmup_decay(optimizer, steps, warmup_ratio)
    losses: list[float] = []
    model.train()
    for epoch in itertools.count():
        if len(losses) >= steps:
            break
        before = len(losses)
        for batch in batches_for_epoch(epoch):
            if len(losses) >= steps:
                break
            loss = model(**batch).loss
            if not math.isfinite(loss.item()):
                raise TrainingDiverged(f"fine-tuning diverged at step {len(losses) + 1} (loss={loss.item()}); "
                                       f"lower the learning rate (now {lr:g}, e.g. teacher_lr)")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if log_every and len(losses) % log_every == 0:
                print(f"step {len(losses)}/{steps}: loss {sum(losses[-log_every:]) / log_every:.4f}", flush=True)
        if len(losses) == before:
            raise ValueError(f"epoch {epoch} yielded no batches; fit needs a non-empty training set")
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:  # a finite last loss can still leave NaN weights (e.g. an infinite gradient clipped)
        raise TrainingDiverged(f"fine-tuning diverged: {bad[0]} is not finite after {len(losses)} steps; lower the "
                               f"learning rate (now {lr:g}, e.g. teacher_lr)")
    return losses


PRECISIONS = ("fp32", "bf16")


def autocast(precision: str, device: str | torch.device = "cpu") -> contextlib.AbstractContextManager:
    """The context of a training step: ``"bf16"`` is ``torch.autocast`` to bfloat16 on ``device``'s type
    (no loss scaling: bfloat16 has float32's range), ``"fp32"`` changes nothing."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    raise ValueError(f"precision={precision!r} is not allowed; expected one of {PRECISIONS}")


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_write(path, "wb") as f:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, f)


def load_tensors(path: Path, fmt: str | None = None) -> dict:
    """Load a file elmlib saved with ``torch.save`` under ``weights_only=True``: tensors, numbers,
    strings and containers only, so a planted pickle runs no code and fails here. ``fmt``: the
    ``format`` entry it must carry."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (PermissionError, FileNotFoundError, MemoryError):  # not the file's content: never "delete it"
        raise
    except OSError as err:
        if err.errno in (errno.EIO, errno.ENOSPC):  # the disk, not the file's content
            raise
        raise UserError(f"{path} is not an elmlib checkpoint (torn: {err.strerror}); delete it to restart "
                        "this stage") from None
    except Exception as err:  # UnpicklingError for a foreign pickle, RuntimeError/EOFError for torn files
        raise UserError(f"{path} is not an elmlib checkpoint ({type(err).__name__}); delete it to restart "
                        "this stage") from None
    if not isinstance(state, dict) or (fmt is not None and state.get("format") != fmt):
        raise UserError(f"{path} is not an elmlib checkpoint (no {fmt or 'state'} entry); delete it to restart "
                        "this stage")
    return state


def load_checkpoint(path: Path, config_digest: str) -> dict:
    """Load a checkpoint of this run; a corrupt or foreign file fails with a clear message."""
    state = load_tensors(path, CHECKPOINT_FORMAT)
    if state.get("config_digest") != config_digest:
        raise UserError(f"checkpoint {path} belongs to another config ({state.get('config_digest')} != "
                        f"{config_digest}); use another run folder or --overwrite")
    return state


class TrainLoop:
    def __init__(self, name: str, run_dir: str | Path, *, modules: dict[str, nn.Module], optimizer,
                 epochs: int, steps_per_epoch: int, warmup_ratio: float = 0.1, checkpoint_every: int = 200,
                 config_digest: str = "", is_main: bool = True, progress: bool = True, seed: int = 0,
                 precision: str = "fp32", device: str | torch.device = "cpu",
                 on_save: Callable[[], None] | None = None, lr_setting: str = "the learning rate",
                 schedule: Callable[[torch.optim.Optimizer, int, float], torch.optim.lr_scheduler.LRScheduler]
                 = linear_warmup_decay, stop_at: int | None = None):
        """``schedule(optimizer, total_steps, warmup_ratio)``: the learning-rate schedule (default:
        linear decay with warm-up, Appendix A). ``stop_at``: raise `Interrupted` after that global step,
        a simulated kill for tests (default: ``STOP_AT`` of this loop's name; None: never)."""
        if steps_per_epoch < 1:
            raise ValueError(f"{name}: steps_per_epoch={steps_per_epoch} is not allowed; expected >= 1 "
                             "(is the training split empty?)")
        self.name, self.dir = name, Path(run_dir)
        self.modules, self.optimizer = modules, optimizer
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.total_steps = epochs * steps_per_epoch
        self.scheduler = schedule(optimizer, self.total_steps, warmup_ratio)
        self.checkpoint_every, self.digest = checkpoint_every, config_digest
        self.is_main, self.progress, self.seed = is_main, progress, seed
        autocast(precision, device)  # a bad precision fails here, before any step
        self.precision, self.device = precision, device
        self.on_save = on_save  # called after every checkpoint (the search records its stage's wall time)
        self.lr_setting = lr_setting  # named in the divergence error: the setting to lower
        self.stop_at = STOP_AT.get(name) if stop_at is None else stop_at
        self.step = 0  # global steps done
        self.extra: dict = {}  # caller state saved with the checkpoint (e.g. grown FFN sizes)
        self.ckpt_path = self.dir / f"{name}.ckpt"
        self.log_path = self.dir / f"{name}.log.jsonl"

    # --- checkpoints -----------------------------------------------------------------------------
    def diverged(self, what: str) -> TrainingDiverged:
        lr = self.optimizer.param_groups[0].get("initial_lr", self.optimizer.param_groups[0]["lr"])
        return TrainingDiverged(f"training diverged at step {self.step} of stage {self.name} ({what}); lower "
                                f"{self.lr_setting} (now {lr:g}) or use precision=fp32; nothing was exported")

    def check_step(self, metrics: dict) -> None:
        """Stop at a non-finite loss or gradient norm, before the optimizer applies it."""
        bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
        if bad:
            raise self.diverged(", ".join(f"{k}={v}" for k, v in bad.items()))
        grads = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        if not math.isfinite(norm):
            raise self.diverged(f"gradient norm={norm}")

    def check_weights(self) -> None:
        """Every weight finite: a checkpoint or a finished stage never holds a NaN model."""
        for key, module in self.modules.items():
            for name, tensor in module.state_dict().items():
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    raise self.diverged(f"{key}.{name} is not finite")

    def save(self) -> None:
        self.check_weights()
        if not self.is_main:
            return
        save_checkpoint(self.ckpt_path, {
            "config_digest": self.digest, "step": self.step, "extra": self.extra,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        })
        if self.on_save:
            self.on_save()

    def resume(self, before_load: Callable[[dict], None] | None = None) -> bool:
        """Restore the last checkpoint if there is one; ``before_load(extra)`` may resize modules first.

        Without one, the global RNGs (dropout) are seeded from (seed, loop name), so a loop's result
        does not depend on what ran before it in the process (e.g. a cache hit or a miss)."""
        if not self.ckpt_path.exists():
            derived = derived_seed(self.seed, sum(map(ord, self.name)))
            torch.manual_seed(derived)
            random.seed(derived)
            if self.is_main:
                self.log_path.unlink(missing_ok=True)  # a fresh start: no lines from an earlier attempt
            return False
        state = load_checkpoint(self.ckpt_path, self.digest)
        self.extra = state["extra"]
        if before_load:
            before_load(self.extra)
        for key, module in self.modules.items():
            module.load_state_dict(state["modules"][key])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step = state["step"]
        self._truncate_log()
        return True

    def _truncate_log(self) -> None:
        """Drop log lines of steps after the checkpoint (the resumed run writes them again), and a last
        line torn by a kill mid-write (with a warning); a damaged line elsewhere is an error."""
        if not self.is_main or not self.log_path.exists():
            return
        lines = [line for line in self.log_path.read_text().splitlines() if line.strip()]
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append((json.loads(line), line))
            except json.JSONDecodeError:
                if number < len(lines):
                    raise UserError(f"{self.log_path}: line {number} is not valid JSON; the log was edited or "
                                    "damaged: delete it and the stage's .ckpt to restart the stage") from None
                warnings.warn(f"{self.log_path}: dropped a torn last line (the run was killed while writing it)")
        keep = [line for record, line in records if record.get("step", 0) <= self.step]
        with atomic_write(self.log_path) as f:
            f.write("".join(line + "\n" for line in keep))

    # --- the loop --------------------------------------------------------------------------------
    def run(self, batches_for_epoch: Callable[[int], Iterator], step_fn: Callable[[object, int], dict],
            end_of_epoch: Callable[[int], None] | None = None) -> None:
        bar = None
        if self.progress and self.is_main:
            bar = tqdm(total=self.total_steps, initial=self.step, desc=self.name, dynamic_ncols=True, leave=False)
        log = open(self.log_path, "a") if self.is_main else None
        try:
            while self.step < self.total_steps:
                epoch, offset = divmod(self.step, self.steps_per_epoch)
                batches = itertools.islice(batches_for_epoch(epoch), offset, self.steps_per_epoch)
                for batch in batches:
                    start = time.perf_counter()
                    # Floats at once: holding loss tensors would keep the step's autograd graph (and
                    # its cached grad accumulators) alive into FFN growth, which resizes parameters.
                    with autocast(self.precision, self.device):  # forward and backward of the step
                        parts = step_fn(batch, self.step)
                    metrics = {k: float(v.detach() if torch.is_tensor(v) else v) for k, v in parts.items()}
                    del parts
                    self.check_step(metrics)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.step += 1
                    record = {"step": self.step, "epoch": epoch, "lr": self.scheduler.get_last_lr()[0],
                              "seconds": time.perf_counter() - start,
                              **metrics}
                    if log:
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                    if bar:
                        bar.update(1)
                        bar.set_postfix({k: f"{v:.3g}" for k, v in record.items()
                                         if k not in ("step", "epoch", "lr", "seconds")})
                    if self.stop_at is not None and self.step == self.stop_at:
                        raise Interrupted(f"{self.name}: simulated kill after step {self.step}")
                    epoch_done = self.step % self.steps_per_epoch == 0
                    if epoch_done and end_of_epoch:
                        end_of_epoch(epoch)
                    if epoch_done or self.step % self.checkpoint_every == 0:
                        self.save()
                if self.step % self.steps_per_epoch:  # the batches ran out before the epoch's steps
                    raise ValueError(f"{self.name}: epoch {epoch} yielded fewer than {self.steps_per_epoch} "
                                     "batches; lower the steps per epoch or use more data")
        finally:
            if log:
                log.close()
            if bar:
                bar.close()
