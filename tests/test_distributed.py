"""Data-parallel supernet training: 2 gloo processes with the same global batch compute the same
losses (and grow the same blocks, and reorder the same units) as 1 process."""
import json
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest

SETTINGS = dict(max_length=32, pretrain_steps=4, pretrain_batch_size=8, finetune_steps=3, finetune_batch_size=8,
                train_limit=48, teacher_max_steps=2, dropout=0, checkpoint_every=3, pca_batches=1,
                eval_batch_size=16, growth_k=3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _search(run_dir, tmp_path, nproc, settings):
    args = ["-m", "elmlib", "search", "--scale", "smoke", "--run-dir", str(run_dir), "--stages", "pretrain,finetune",
            "--no-progress"] + [f"--set={k}={v}" for k, v in settings.items()]
    if nproc > 1:
        args = ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={_free_port()}",
                "--master_addr=127.0.0.1"] + args
    env = {**os.environ, "ELMLIB_RESULTS": str(tmp_path / "results"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable] + args, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _losses(run_dir, stage):
    return [json.loads(line)["loss"] for line in (run_dir / f"{stage}.log.jsonl").read_text().splitlines()]


# With importance reordering, every rank accumulates the same (all-reduced) gradients and so sorts
# the same units: the losses after the first reorder still match.
@pytest.mark.parametrize("extra", [{}, {"importance": "true"}], ids=["plain", "importance"])
def test_two_gloo_processes_match_one(tmp_path, extra):
    _search(tmp_path / "one", tmp_path, 1, {**SETTINGS, **extra})
    _search(tmp_path / "two", tmp_path, 2, {**SETTINGS, **extra})
    for stage in ("pretrain", "finetune"):
        one, two = _losses(tmp_path / "one", stage), _losses(tmp_path / "two", stage)
        assert len(one) == len(two) > 0
        assert one == pytest.approx(two, rel=1e-5)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "one" / "growth.csv"),
                                  pd.read_csv(tmp_path / "two" / "growth.csv"))
    assert not (tmp_path / "two" / "search.done.json").exists()
