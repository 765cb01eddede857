"""Knowledge-distillation losses (paper Sec. III-D, Eqs. 1-5).

Pure tensor functions, one copy each, plus thin modules that hold only what must be learned
(projections from student to teacher widths) and the layer mapping.

    loss = relational_loss(student_logits, teacher_logits)            # Eq. 4
    loss = relational_loss(student_ffn_out, teacher_ffn_out)          # Eq. 5, rows = B*N tokens

Classical losses (the ones ELM argues against): Eq. 1 KL on logits, Eqs. 2-3 MSE on attention
maps and FFN outputs. Relational losses (ELM; DIST, Huang et al. NeurIPS 2022; PKD, Cao et al.
NeurIPS 2022): one minus the Pearson correlation of each row, which is invariant to a positive
scale and a shift of either side, so the student matches *relations* not magnitudes.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

EPS = 1e-8


def _check_pair(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(f"student shape {tuple(student.shape)} != teacher shape {tuple(teacher.shape)}; "
                         "project or map them first")


def pearson(a: torch.Tensor, b: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Pearson correlation along the last dim, any leading dims. Constant rows give 0, with finite
    gradients (eps sits inside the square root)."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / torch.sqrt((a * a).sum(-1) * (b * b).sum(-1) + eps)


def relational_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Mean over rows of 1 - rho(teacher_row, student_row); a row is the last dim (Eqs. 4 and 5).

    2-D (B, classes): Eq. 4, per-sample correlation over the class logits (DIST's inter-class term).
    3-D (B, N, C): Eq. 5 over the B*N token rows of FFN outputs. 4-D (B, H, N, N): Eq. 5 over the
    attention rows of every head.
    """
    _check_pair(student, teacher)
    return (1 - pearson(student.float(), teacher.float(), eps)).mean()


def _global_batch(x: torch.Tensor) -> torch.Tensor:
    """Under data parallelism, the rows of every rank (differentiable), so a correlation across the
    batch is the global batch's, as in one process; otherwise ``x``. Every rank then computes the same
    loss; all_gather's backward sums the ranks' gradients and DDP's mean undoes the factor."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather  # optional: torch.distributed.nn, only under DDP

    return torch.cat(all_gather(x.contiguous()), 0)


def intra_class_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
                     eps: float = EPS) -> torch.Tensor:
    """DIST's intra-class term: per class, correlation of the softmax probabilities across the batch."""
    _check_pair(student_logits, teacher_logits)
    student_logits, teacher_logits = _global_batch(student_logits), _global_batch(teacher_logits.detach())
    p_s = (student_logits.float() / temperature).softmax(-1)
    p_t = (teacher_logits.float() / temperature).softmax(-1)
    return relational_loss(p_s.transpose(0, 1), p_t.transpose(0, 1), eps)


def kl_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
              scale_t2: bool = True) -> torch.Tensor:
    """Eq. 1: KL(teacher || student) of the softened distributions, averaged over the batch.

    ``scale_t2`` multiplies by T^2 (Hinton et al. 2015) so gradient magnitudes do not shrink with T;
    at T=1 the two agree. Leading dims other than the last are flattened into the batch.
    """
    _check_pair(student_logits, teacher_logits)
    s = F.log_softmax(student_logits.float().flatten(0, -2) / temperature, -1)
    t = F.log_softmax(teacher_logits.float().flatten(0, -2) / temperature, -1)
    loss = F.kl_div(s, t, log_target=True, reduction="batchmean")
    return loss * temperature ** 2 if scale_t2 else loss


def mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Eqs. 2-3: mean squared error of attention maps (B, H, N, N) or FFN outputs (B, N, C)."""
    _check_pair(student, teacher)
    return F.mse_loss(student.float(), teacher.float())


def head_mean(attn: torch.Tensor) -> torch.Tensor:
    """Average attention maps over heads, so maps of models with different head numbers compare."""
    return attn.mean(1)


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Student layer i learns from teacher layer ceil((i+1) * T / S) - 1 (TinyBERT's uniform mapping)."""
    return [-(-(i + 1) * teacher_layers // student_layers) - 1 for i in range(student_layers)]


class DistillationLoss(nn.Module):
    """Layer-wise KD on logits, attention maps and hidden (FFN-output) features.

    ``kind="relational"`` uses Eqs. 4-5 (ELM), ``kind="classical"`` Eqs. 1-3. Hidden features
    of the student are projected to the teacher width by one learned linear map per student
    layer (ELM does not specify the projection; this is TinyBERT's). Attention maps are compared
    after averaging over heads, since head numbers differ after the CKA head search.
    """

    KINDS = ("relational", "classical")

    def __init__(self, student_layers: int, teacher_layers: int, student_hidden: int, teacher_hidden: int,
                 kind: str = "relational", temperature: float = 1.0, weights=(1.0, 1.0, 1.0),
                 intra_class_weight: float = 0.0):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind={kind!r} is not allowed; expected one of {self.KINDS}")
        self.kind, self.temperature, self.intra_class_weight = kind, temperature, intra_class_weight
        self.logit_weight, self.attn_weight, self.hidden_weight = weights
        self.layer_map = uniform_layer_map(student_layers, teacher_layers)
        self.projections = nn.ModuleList(nn.Linear(student_hidden, teacher_hidden) for _ in range(student_layers))

    def logits(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.kind == "classical":
            return kl_logits(student, teacher, self.temperature)
        if student.shape[-1] == 1:  # regression: a single output has no row to correlate; use the batch
            loss = relational_loss(student.reshape(1, -1), teacher.reshape(1, -1))
        elif student.shape[-1] == 2:
            # Two classes: the correlation of two 2-vectors is +-1, the sign of (l0 - l1) times the
            # teacher's, a step whose gradient near a tie grows like 1/sqrt(eps). That inflates Adam's
            # second moments and stalls learning (measured: rotten_tomatoes at micro stays at chance
            # with it, 69% without KD), so binary tasks use DIST's intra-class term (the correlation of
            # each class's probability across the batch) in its place.
            return intra_class_loss(student, teacher, self.temperature)
        else:
            loss = relational_loss(student, teacher)  # Eq. 4 on raw logits (a temperature would cancel)
        if self.intra_class_weight:
            loss = loss + self.intra_class_weight * intra_class_loss(student, teacher, self.temperature)
        return loss

    def forward(self, student_hidden=(), teacher_hidden=(), student_attn=(), teacher_attn=(),
                student_logits=None, teacher_logits=None) -> dict[str, torch.Tensor]:
        """Hidden tuples exclude the embedding output (one entry per layer); returns the parts and ``total``."""
        feature_loss = relational_loss if self.kind == "relational" else mse
        parts: dict[str, torch.Tensor] = {}
        if student_logits is not None and teacher_logits is not None:
            parts["logits"] = self.logits(student_logits, teacher_logits)
        if student_attn and teacher_attn:
            parts["attention"] = torch.stack([
                feature_loss(head_mean(s), head_mean(teacher_attn[j]))
                for s, j in zip(student_attn, self.layer_map)]).mean()
        if student_hidden and teacher_hidden:
            parts["hidden"] = torch.stack([
                feature_loss(proj(s), teacher_hidden[j])
                for s, j, proj in zip(student_hidden, self.layer_map, self.projections)]).mean()
        if not parts:
            raise ValueError("DistillationLoss got nothing to compare: pass logits, attentions and/or hidden states")
        weights = {"logits": self.logit_weight, "attention": self.attn_weight, "hidden": self.hidden_weight}
        parts["total"] = sum(weights[k] * v for k, v in parts.items())
        return parts
