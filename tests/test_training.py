"""`training.fit`, the plain loop behind the task teachers and the importance measurement, and
`TrainLoop`'s parameters: a simulated kill (``stop_at``) and the learning-rate ``schedule``."""
import pytest
import torch
from torch import nn

from elmlib.train import training
from elmlib.train.training import Interrupted, TrainLoop, adamw, fit


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


def _loop(folder, model, **kwargs) -> TrainLoop:
    return TrainLoop("regression", folder, modules={"model": model}, optimizer=adamw([model], 0.05, 0.0), epochs=2,
                     steps_per_epoch=3, checkpoint_every=2, progress=False, **kwargs)


def _train(folder, **kwargs) -> tuple[nn.Module, TrainLoop]:
    folder.mkdir(exist_ok=True)
    torch.manual_seed(0)
    x = torch.randn(9, 3)
    data = [dict(x=x[i:i + 3], y=x[i:i + 3].sum(-1)) for i in range(0, 9, 3)]
    model = Regression()
    loop = _loop(folder, model, **kwargs)
    loop.indices = []  # the steps this attempt ran

    def step(batch, index):
        loop.indices.append(index)
        loss = model(**batch).loss
        loss.backward()
        return {"loss": loss}

    loop.resume()
    loop.run(lambda epoch: iter(data), step)
    return model, loop


def test_a_loop_killed_by_stop_at_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    whole, _ = _train(tmp_path / "whole")
    with pytest.raises(Interrupted, match="simulated kill after step 5"):
        _train(tmp_path / "killed", stop_at=5)  # after the checkpoint at step 4: step 5 is done again
    resumed, loop = _train(tmp_path / "killed")
    assert loop.indices == [4, 5] and all(torch.equal(a, b) for a, b in zip(whole.parameters(), resumed.parameters()))
    monkeypatch.setitem(training.STOP_AT, "regression", 1)  # the default of loops built elsewhere
    with pytest.raises(Interrupted, match="after step 1"):
        _train(tmp_path / "elsewhere")
    assert _loop(tmp_path, Regression(), stop_at=3).stop_at == 3


def test_a_loop_takes_its_learning_rate_schedule(tmp_path):
    constant = lambda optimizer, total, warmup: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)  # noqa: E731
    _, loop = _train(tmp_path, schedule=constant)
    assert loop.scheduler.get_last_lr() == [0.05, 0.05]
    assert _loop(tmp_path / "default", Regression()).scheduler.get_last_lr()[0] == pytest.approx(0.05)  # warm-up of 1 step


def test_autocast_contexts():
    from elmlib.train.training import autocast

    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with autocast("bf16", "cpu"):
        assert layer(x).dtype == torch.bfloat16
    with autocast("fp32", torch.device("cpu")):
        assert layer(x).dtype == torch.float32
    with pytest.raises(ValueError, match=r"precision='fp16' is not allowed; expected one of \('fp32', 'bf16'\)"):
        autocast("fp16")


def test_masked_rows_are_padded_only_under_cpu_autocast_and_change_neither_loss_nor_gradients():
    """The masked-LM head sees a few row counts under CPU bf16 autocast (each new matmul shape keeps
    memory there, benchmarks/bench_memory.py) and exactly the masked rows otherwise."""
    from elmlib.nas.objective import pad_rows_under_cpu_autocast

    torch.manual_seed(0)
    head = nn.Linear(8, 50)
    hidden, targets = torch.randn(70, 8), torch.randint(0, 50, (70,))
    same = pad_rows_under_cpu_autocast(hidden, targets)
    assert same[0] is hidden and same[1] is targets  # fp32: untouched, so fp32 runs stay bit-identical

    def loss_and_grad(pad: bool):
        head.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x, t = pad_rows_under_cpu_autocast(hidden, targets, 64 if pad else 1)
            loss = nn.functional.cross_entropy(head(x).float(), t, reduction="sum")
        loss.backward()
        return x.shape[0], t, loss.item(), head.weight.grad.clone()

    rows, padded_targets, padded_loss, padded_grad = loss_and_grad(pad=True)
    assert rows == 128 and (padded_targets[70:] == -100).all() and (padded_targets[:70] == targets).all()
    plain_rows, _, plain_loss, plain_grad = loss_and_grad(pad=False)
    assert plain_rows == 70
    assert padded_loss == pytest.approx(plain_loss, rel=1e-2)  # bf16 matmuls: kernels may differ per shape
    torch.testing.assert_close(padded_grad, plain_grad, rtol=2e-2, atol=2e-2)
    wrong = nn.functional.cross_entropy(head(torch.cat([hidden, torch.zeros(58, 8)])),
                                        torch.cat([targets, torch.zeros(58, dtype=torch.long)]), reduction="sum")
    assert abs(wrong.item() - plain_loss) > 10  # the check above can fail: counted padding moves the loss
