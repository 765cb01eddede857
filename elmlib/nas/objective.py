"""What trains and what is measured in a search stage: dynamic-padding task batches, the combined
task + KD objective (paper Sec. III-D) around a supernet path or a standalone encoder, prediction.

    batches = TaskBatches(tokenized_split, tokenizer, batch_size=32, seed=0)
    objective = Objective(net, head, DistillationLoss(...), "classification", task_weight=1.0)
    parts = objective(batch, teacher_outputs, arch=path); parts["loss"].backward()
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DataCollatorWithPadding

from elmlib.errors import TrainingDiverged
from elmlib.nas.losses import DistillationLoss
from elmlib.nas.space import Architecture
from elmlib.train.runtime import seeded_generator


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}



def subset(ds, limit: int, seed: int):
    """A seeded subset of ``limit`` rows (all rows when limit is 0)."""
    if not limit or limit >= len(ds):
        return ds
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:limit]
    return ds.select(sorted(order.tolist()))


class TaskBatches:
    """Dynamic-padding batches of a tokenized task split; epoch e is shuffled with seed (seed, e)."""

    def __init__(self, ds, tokenizer, batch_size: int, seed: int = 0, shuffle: bool = True):
        cols = ["input_ids", "token_type_ids", "attention_mask", "labels"]
        self.rows = [dict(zip(cols, values)) for values in zip(*(ds[c] for c in cols))]
        self.collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle

    def __len__(self) -> int:
        return len(self.rows) // self.batch_size if self.shuffle else -(-len(self.rows) // self.batch_size)

    def epoch(self, epoch: int = 0):
        if self.shuffle:
            order = torch.randperm(len(self.rows), generator=seeded_generator(self.seed, epoch))
        else:
            order = torch.arange(len(self.rows))
        for i in range(len(self)):
            yield self.collate([self.rows[j] for j in order[i * self.batch_size:(i + 1) * self.batch_size]])


MASKED_ROWS_MULTIPLE = 64


def pad_rows_under_cpu_autocast(hidden: torch.Tensor, targets: torch.Tensor,
                                multiple: int = MASKED_ROWS_MULTIPLE) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad the masked positions to a multiple of ``multiple`` rows (zeros, target -100) under CPU
    autocast; unchanged otherwise. Under bf16 autocast on the CPU every new matmul shape keeps memory
    (torch 2.13: the small MLM head 7.9 MiB per new row count, benchmarks/bench_memory.py), and the
    number of masked tokens differs from batch to batch, so an unpadded small-scale pretraining run grew
    by 60 MB a step until it was killed for memory. Ignored rows add nothing to the summed loss or to
    any gradient."""
    if hidden.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return hidden, targets
    pad = -hidden.shape[0] % multiple
    if not pad:
        return hidden, targets
    return (torch.cat([hidden, hidden.new_zeros(pad, hidden.shape[1])]),
            torch.cat([targets, targets.new_full((pad,), -100)]))


class Objective(nn.Module):
    """What trains in one stage: an encoder (a supernet path or a standalone ElmModel), a head and the
    KD projections; ``forward`` returns the loss parts (everything differentiable runs inside it)."""

    def __init__(self, encoder: nn.Module, head: nn.Module, kd: DistillationLoss, kind: str, task_weight: float,
                 denominator=lambda count: count):
        super().__init__()
        self.encoder, self.head, self.kd, self.kind, self.task_weight = encoder, head, kd, kind, task_weight
        self.denominator = denominator  # data parallel: the global number of masked tokens / world

    def forward(self, batch: dict, teacher_out=None, arch: Architecture | None = None):
        need_attn = teacher_out is not None and self.kd.attn_weight > 0
        kwargs = dict(attention_mask=batch["attention_mask"], token_type_ids=batch.get("token_type_ids"),
                      output_hidden_states=teacher_out is not None, output_attentions=need_attn)
        out = self.encoder(batch["input_ids"], arch=arch, **kwargs) if arch is not None else \
            self.encoder(batch["input_ids"], **kwargs)
        labels = batch["labels"]
        if self.kind == "mlm":
            masked = labels != -100  # decode only masked positions: the vocab projection dominates
            hidden, targets = pad_rows_under_cpu_autocast(out.last_hidden_state[masked], labels[masked])
            logits = self.head(hidden)
            # float32 losses: under bf16 autocast the logits are bfloat16 (a no-op otherwise)
            task = F.cross_entropy(logits.float(), targets, reduction="sum") / self.denominator(masked.sum())
        else:
            logits = self.head(out.last_hidden_state, batch["attention_mask"])
            task = (F.mse_loss(logits.squeeze(-1).float(), labels.float()) if self.kind == "regression"
                    else F.cross_entropy(logits.float(), labels))
        parts = {"task": task}
        total = self.task_weight * task
        if teacher_out is not None:
            kd = self.kd(out.hidden_states[1:], teacher_out.hidden_states[1:],
                         out.attentions or (), (teacher_out.attentions or ()) if need_attn else (),
                         None if self.kind == "mlm" else logits, None if self.kind == "mlm" else teacher_out.logits)
            total = total + kd.pop("total")
            parts.update({f"kd_{k}": v for k, v in kd.items()})
        parts["loss"] = total
        return parts


@torch.no_grad()
def predict(encoder, head, batches, device, arch: Architecture | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels = [], []
    for batch in batches:
        batch = to_device(batch, device)
        kw = dict(attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"])
        out = encoder(batch["input_ids"], arch=arch, **kw) if arch is not None else encoder(batch["input_ids"], **kw)
        logits.append(head(out.last_hidden_state, batch["attention_mask"]).float().cpu())
        labels.append(batch["labels"].cpu())
    logits = torch.cat(logits)
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).any(dim=-1).sum())
        raise TrainingDiverged(f"evaluation refused: {bad} of {len(logits)} rows have non-finite logits (the model "
                               "diverged); lower the learning rates (finetune_lr, retrain_lr)")
    return logits, torch.cat(labels)
