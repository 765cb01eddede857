"""`training.fit`, the plain loop behind the task teachers and the importance measurement."""
import pytest
import torch
from torch import nn

from elmlib.training import fit


class Regression(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, x, y):
        return type("Out", (), {"loss": nn.functional.mse_loss(self.linear(x).squeeze(-1), y)})()


def test_fit_takes_exactly_the_steps_across_epochs_and_learns():
    torch.manual_seed(0)
    x = torch.randn(12, 3)
    data = [dict(x=x[i:i + 4], y=x[i:i + 4] @ torch.tensor([1.0, -2.0, 0.5])) for i in range(0, 12, 4)]
    epochs = []
    losses = fit(Regression(), lambda e: epochs.append(e) or data, 61, lr=0.1, weight_decay=0.0)
    assert len(losses) == 61 and epochs == list(range(21))  # 3 batches an epoch: the 21st epoch is cut short
    assert sum(losses[-3:]) < 0.1 * sum(losses[:3])


def test_fit_refuses_an_empty_training_set_instead_of_spinning():
    with pytest.raises(ValueError, match="no batches"):
        fit(Regression(), lambda e: [], 5, lr=0.1)


def test_autocast_contexts():
    from elmlib.training import autocast

    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with autocast("bf16", "cpu"):
        assert layer(x).dtype == torch.bfloat16
    with autocast("fp32", torch.device("cpu")):
        assert layer(x).dtype == torch.float32
    with pytest.raises(ValueError, match=r"precision='fp16' is not allowed; expected one of \('fp32', 'bf16'\)"):
        autocast("fp16")
