import pytest
import torch
from scipy.stats import pearsonr

from elmlib.nas import losses
from elmlib.nas.losses import DistillationLoss, kl_logits, mse, relational_loss, uniform_layer_map

SHAPES = [(4, 7), (3, 5, 8), (2, 3, 5, 5)]


def _rand(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", SHAPES)
def test_losses_are_zero_when_student_equals_teacher(shape):
    t = _rand(shape, 0)
    assert relational_loss(t.clone(), t).abs() < 1e-6
    assert mse(t.clone(), t) == 0
    assert kl_logits(t.clone(), t).abs() < 1e-6


@pytest.mark.parametrize("shape", SHAPES)
def test_relational_loss_ignores_positive_scale_and_shift(shape):
    s, t = _rand(shape, 0), _rand(shape, 1)
    base = relational_loss(s, t)
    assert base > 0.5  # unrelated tensors: clearly non-zero
    assert torch.allclose(relational_loss(3.7 * s - 2.0, t), base, atol=1e-5)
    assert torch.allclose(relational_loss(s, 0.2 * t + 5.0), base, atol=1e-5)
    assert not torch.allclose(mse(3.7 * s - 2.0, t), mse(s, t))


def test_relational_loss_is_one_minus_row_pearson():
    s, t = _rand((5, 9), 2), _rand((5, 9), 3)
    want = sum(1 - pearsonr(s[i].numpy(), t[i].numpy())[0] for i in range(5)) / 5
    assert abs(relational_loss(s, t).item() - want) < 1e-5


def test_constant_rows_give_finite_gradients():
    s = torch.zeros(3, 6, requires_grad=True)
    t = _rand((3, 6), 0)
    loss = relational_loss(s, t) + losses.intra_class_loss(s, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


def test_kl_and_intra_class_terms():
    s, t = _rand((6, 4), 0), _rand((6, 4), 1)
    p_t = t.softmax(-1)
    want = (p_t * (p_t.log() - s.log_softmax(-1))).sum(-1).mean()
    assert torch.allclose(kl_logits(s, t), want, atol=1e-6)
    assert torch.allclose(kl_logits(s, t, temperature=2.0), 4 * kl_logits(s, t, temperature=2.0, scale_t2=False))
    ps, pt = s.softmax(-1), t.softmax(-1)
    want = sum(1 - pearsonr(ps[:, c].numpy(), pt[:, c].numpy())[0] for c in range(4)) / 4
    assert abs(losses.intra_class_loss(s, t).item() - want) < 1e-5


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"student shape \(2, 3\) != teacher shape \(2, 4\)"):
        relational_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_uniform_layer_map():
    assert uniform_layer_map(6, 12) == [1, 3, 5, 7, 9, 11]
    assert uniform_layer_map(12, 6) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert uniform_layer_map(4, 6) == [1, 2, 4, 5]


@pytest.mark.parametrize("kind", ["relational", "classical"])
def test_distillation_loss_combines_layers_and_trains_the_projections(kind):
    kd = DistillationLoss(student_layers=2, teacher_layers=4, student_hidden=8, teacher_hidden=12, kind=kind)
    s_hidden = [_rand((2, 5, 8), i).requires_grad_() for i in range(2)]
    t_hidden = [_rand((2, 5, 12), 10 + i) for i in range(4)]
    s_attn = [_rand((2, 2, 5, 5), 20 + i).softmax(-1) for i in range(2)]
    t_attn = [_rand((2, 4, 5, 5), 30 + i).softmax(-1) for i in range(4)]  # different head numbers
    parts = kd(s_hidden, t_hidden, s_attn, t_attn, _rand((2, 3), 40), _rand((2, 3), 41))
    assert set(parts) == {"logits", "attention", "hidden", "total"}
    assert torch.allclose(parts["total"], parts["logits"] + parts["attention"] + parts["hidden"])
    parts["total"].backward()
    assert kd.projections[0].weight.grad.abs().sum() > 0 and s_hidden[1].grad is not None
    with pytest.raises(ValueError, match="nothing to compare"):
        kd()
    with pytest.raises(ValueError, match="kind='mse' is not allowed"):
        DistillationLoss(2, 4, 8, 12, kind="mse")


def test_binary_relational_logit_loss_is_the_batchwise_term_with_bounded_gradients():
    """With 2 classes the per-sample correlation is a +-1 step whose gradient explodes near a tie;
    the relational logit loss uses DIST's intra-class (batch-wise) correlation instead."""
    from elmlib.nas.losses import DistillationLoss, intra_class_loss

    kd = DistillationLoss(2, 2, 8, 8)
    teacher = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    student = (1e-6 * torch.randn(16, 2, generator=torch.Generator().manual_seed(1))).requires_grad_()
    loss = kd.logits(student, teacher)
    torch.testing.assert_close(loss, intra_class_loss(student, teacher))
    loss.backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().max() < 1e4
    three = torch.randn(16, 3, generator=torch.Generator().manual_seed(2))
    assert kd.logits(three, three) < 1e-4  # 3+ classes: Eq. 4 as before
