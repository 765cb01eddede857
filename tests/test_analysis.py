import pytest
import torch

from elmlib.nas.analysis import (MinibatchCKA, PCAAccumulator, block_similarity, centroid_cosine, head_number, linear_cka,
                             pca_score)


def _g(seed):
    return torch.Generator().manual_seed(seed)


def test_pca_score_counts_the_components_of_low_rank_data():
    basis = torch.randn(3, 16, generator=_g(0))
    x = torch.randn(4, 50, 3, generator=_g(1)) @ basis + 1e-4 * torch.randn(4, 50, 16, generator=_g(2))
    assert pca_score(x, 0.99) == 3
    assert pca_score(torch.randn(4, 50, 16, generator=_g(3)), 0.99) >= 14  # isotropic: nearly all
    assert pca_score(x, 0.3) == 1


def test_pca_accumulator_streams_and_ignores_padding():
    x = torch.randn(2, 40, 8, generator=_g(0))
    mask = torch.ones(2, 40)
    mask[1, 30:] = 0
    whole, parts = PCAAccumulator(), PCAAccumulator()
    whole.update(x, mask)
    parts.update(x[:1], mask[:1])
    parts.update(x[1:], mask[1:])
    assert torch.allclose(whole.eigenvalues(), parts.eigenvalues())
    kept = x.flatten(0, 1)[mask.flatten().bool()].double()
    assert torch.allclose(whole.eigenvalues(), torch.linalg.eigvalsh(torch.cov(kept.T)).flip(0), atol=1e-10)
    with pytest.raises(ValueError, match="threshold=1.5"):
        whole.score(1.5)


def test_minibatch_cka_matches_linear_cka_and_detects_redundant_heads():
    b, n, d = 2, 64, 8
    base = torch.randn(b, n, d, generator=_g(0))
    heads = torch.stack([base, 2 * base + 1, torch.randn(b, n, d, generator=_g(1)),
                         base @ torch.linalg.qr(torch.randn(d, d, generator=_g(2)))[0]], 1)  # (B, H, N, d)
    acc = MinibatchCKA()
    acc.update(heads)
    q = acc.matrix()
    assert torch.allclose(q.diagonal(), torch.ones(4))
    assert q[0, 1] > 0.999 and q[0, 3] > 0.999  # scaled/shifted and rotated copies are the same head
    assert q[0, 2] < 0.5
    flat = heads.transpose(1, 2).flatten(0, 1)
    assert abs(q[0, 2].item() - linear_cka(flat[:, 0], flat[:, 2])) < 1e-5
    assert torch.allclose(q, q.T)


def test_algorithm_1_head_number():
    q = torch.eye(12)
    assert head_number(q, 0.9, 528) == 12
    q[0, 1] = q[0, 2] = q[3, 4] = 0.95  # heads 1, 2 and 4 are redundant
    assert head_number(q, 0.9, None) == 9
    assert head_number(q, 0.9, 528) == 8  # 9 does not divide 528 = 2^4 * 3 * 11; 8 does
    q = torch.ones(12, 12)
    assert head_number(q, 0.9, 192) == 1
    q = torch.eye(12)
    q[1, 2] = 0.95
    q[2, 3] = 0.95  # 2 is removed by 1, so 2 never removes 3 (Algorithm 1 skips removed heads)
    assert head_number(q, 0.9, None) == 11


def test_centroid_cosine_tells_collapsed_features_from_spread_ones():
    common = torch.randn(1, 32, generator=_g(0))
    collapsed = common + 1e-3 * torch.randn(64, 32, generator=_g(1))
    spread = torch.randn(64, 32, generator=_g(2))
    assert centroid_cosine(collapsed) > 0.999
    assert centroid_cosine(spread) < 0.3
    assert centroid_cosine(common + spread) == pytest.approx(centroid_cosine(2 * (common + spread)))  # scale-free
    with pytest.raises(ValueError, match=r"shape \(32,\) are not allowed; expected \(n >= 2, C\)"):
        centroid_cosine(common[0])


def test_block_similarity():
    a = torch.randn(2, 5, 8, generator=_g(0))
    sim = block_similarity([a, 3 * a, -a, torch.randn(2, 5, 8, generator=_g(1))])
    assert sim.shape == (4, 4)
    assert torch.allclose(sim[0, 1], torch.tensor(1.0)) and torch.allclose(sim[0, 2], torch.tensor(-1.0))
    assert abs(sim[0, 3]) < 0.5


def test_latency_runs_on_one_cpu_thread_and_restores_the_caller_settings():
    from elmlib.nas.analysis import latency_ms

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, ids):
            seen.append((torch.get_num_threads(), torch.is_grad_enabled()))
            return ids.float().sum()

    model, before = Probe().train(), torch.get_num_threads()
    assert latency_ms(model, repeats=3, warmup=1) >= 0
    assert set(seen) == {(1, False)}  # one thread, no autograd graph: inference as deployed
    assert torch.get_num_threads() == before and model.training
