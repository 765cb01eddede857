"""Measurements that steer the search: PCA scores (Sec. III-B), CKA head merging (Sec. III-C,
Algorithm 1) and block similarity (Figs. 3b and 6).

    acc = PCAAccumulator(); acc.update(ffn_hidden, mask); acc.score(0.99)   # components for 99% variance
    q = MinibatchCKA(); q.update(head_outputs, mask); head_number(q.matrix(), eta=0.9, width=528)

All three stream over mini-batches, so memory does not grow with the number of tokens.
"""
from __future__ import annotations

import time

import torch


def _rows(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, N, ...) token features -> (tokens, ...) keeping only unpadded tokens."""
    x = x.flatten(0, 1)
    return x if mask is None else x[mask.flatten().bool()]


class PCAAccumulator:
    """Streaming covariance of a block's FFN activations; the PCA score is the number of principal
    components needed to explain ``threshold`` of their variance (W-PCA's definition, Wang 2025;
    ELM does not define it further). Higher = the FFN uses more of its dimensions."""

    def __init__(self):
        self.n, self.sum, self.outer = 0, None, None

    def update(self, activations: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        x = _rows(activations.detach(), mask).double()
        if self.sum is None:
            self.sum, self.outer = x.new_zeros(x.shape[1]), x.new_zeros(x.shape[1], x.shape[1])
        self.n += x.shape[0]
        self.sum += x.sum(0)
        self.outer += x.T @ x

    def eigenvalues(self) -> torch.Tensor:
        if self.n < 2:
            raise ValueError("PCAAccumulator needs at least 2 tokens before scoring")
        mean = self.sum / self.n
        cov = (self.outer - self.n * torch.outer(mean, mean)) / (self.n - 1)
        return torch.linalg.eigvalsh(cov).clamp_min(0).flip(0)

    def score(self, threshold: float = 0.99) -> int:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold={threshold} is not allowed; expected a share of variance in (0, 1]")
        eig = self.eigenvalues()
        total = eig.sum()
        if total <= 0:
            return 0
        explained = eig.cumsum(0) / total
        return int((explained < threshold - 1e-12).sum().item()) + 1


def pca_score(activations: torch.Tensor, threshold: float = 0.99, mask: torch.Tensor | None = None) -> int:
    acc = PCAAccumulator()
    acc.update(activations if activations.dim() == 3 else activations[None], mask)
    return acc.score(threshold)


class MinibatchCKA:
    """Linear CKA (Kornblith et al. ICML 2019) between every pair of heads of one layer.

    Mini-batch estimator (Nguyen et al. ICLR 2021): HSIC is computed per batch over its tokens
    (linear kernel, centred features: HSIC = ||Y^T X||_F^2 / (n-1)^2) and averaged over batches;
    CKA_ij = HSIC_ij / sqrt(HSIC_ii HSIC_jj)."""

    def __init__(self):
        self.hsic, self.batches = None, 0

    def update(self, head_outputs: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """``head_outputs``: (B, H, N, d) per-head attention context of one layer."""
        x = _rows(head_outputs.detach().transpose(1, 2), mask).double()  # (tokens, H, d)
        x = x - x.mean(0, keepdim=True)
        cross = torch.einsum("nid,nje->ijde", x, x)  # (H, H, d, d) cross-covariances
        hsic = cross.square().sum((-1, -2)) / (x.shape[0] - 1) ** 2
        self.hsic = hsic if self.hsic is None else self.hsic + hsic
        self.batches += 1

    def matrix(self) -> torch.Tensor:
        if self.hsic is None:
            raise ValueError("MinibatchCKA has seen no batch")
        diag = self.hsic.diagonal()
        return (self.hsic / torch.sqrt(torch.outer(diag, diag)).clamp_min(1e-30)).float()


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between two (examples, features) matrices (Kornblith et al. 2019, Eq. for linear HSIC)."""
    x, y = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    return float((y.T @ x).square().sum() / (torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y)))


def head_number(cka: torch.Tensor, eta: float = 0.9, width: int | None = None) -> int:
    """Algorithm 1: drop every head j > i whose CKA with a kept head i exceeds ``eta``; then lower
    the count until it divides the attention ``width``."""
    heads = cka.shape[0]
    removed: set[int] = set()
    for i in range(heads):
        if i in removed:
            continue
        for j in range(i + 1, heads):
            if cka[i, j] > eta:
                removed.add(j)
    kept = heads - len(removed)
    while width is not None and width % kept:
        kept -= 1
    return kept


def block_similarity(features: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cosine similarity between the token features of every pair of blocks fed the same input
    (Figs. 3b and 6): ``features[k]`` is block k's output (B, N, C); returns a (K, K) matrix."""
    rows = torch.stack([torch.nn.functional.normalize(_rows(f.detach().float(), mask), dim=-1) for f in features])
    return torch.einsum("ind,jnd->ij", rows, rows) / rows.shape[1]


def centroid_cosine(features: torch.Tensor) -> float:
    """Mean cosine similarity of the rows of ``features`` (n, C), one per input, to their mean row.

    A collapse check: near 1 when every input gets nearly the same feature vector, so a head on top
    sees almost nothing of the input; lower the more the features vary between inputs. The teacher's
    mean-pooled layer outputs on rotten_tomatoes give 0.47-0.85 (measured)."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"features of shape {tuple(features.shape)} are not allowed; expected (n >= 2, C)")
    x = features.detach().double()
    return float(torch.nn.functional.cosine_similarity(x, x.mean(0, keepdim=True)).mean())


@torch.no_grad()
def latency_ms(model: torch.nn.Module, device: torch.device | str = "cpu", seq_len: int = 128, repeats: int = 50,
               warmup: int = 5, cpu_threads: int = 1) -> float:
    """Median latency of batch 1 at ``seq_len`` tokens after warm-up, in ms (the same procedure for
    every model of every table; CUDA timings are synchronised). On CPU it runs on ``cpu_threads``
    threads (then restores the setting), so other jobs on the machine do not stall OpenMP workers
    (docs/implementation.md, "Latency")."""
    device = torch.device(device)
    was_training = model.training
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads)
    model.eval()
    ids = torch.randint(1000, 2000, (1, seq_len), generator=torch.Generator().manual_seed(0)).to(device)
    times = []
    try:
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(ids)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
    return float(torch.tensor(times).median()) * 1000
