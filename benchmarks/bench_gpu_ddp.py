"""elmlib's DistributedDataParallel path on a GPU: step time with and without DDP, and whether the
losses agree, with the pretraining step of ``elmlib.pipeline.stages.supernet`` (stage 1) built from elmlib's own classes.

    python -m torch.distributed.run --standalone --nproc_per_node 1 benchmarks/bench_gpu_ddp.py single --json X
    python -m torch.distributed.run --standalone --nproc_per_node 2 benchmarks/bench_gpu_ddp.py pair --backend gloo --json Y
    python benchmarks/bench_gpu_ddp.py summarize OUT_DIR X Y.rank0 ...      # -> OUT_DIR/ddp.json, summary.md

What runs is stage 1's step, piece for piece (``pretrain_supernet``): ``build_supernet``, the
packaged teacher (``load_teacher``), ``kd_loss`` (relational KD), ``Objective(net, net.predictions, kd,
"mlm", ..., dist.denominator)``, ``Distributed.wrap`` (DDP, find_unused_parameters=True),
``Distributed.shard``/``mean``, ``adamw`` and ``TrainLoop`` (warm-up/decay schedule, autocast), the
paths from ``path_rng(seed, step)`` and the first K batches of the pipeline's ``mlm_batches``. The
loop runs with ``is_main=False`` (no step log, no checkpoint on disk); losses come from the step itself.

elmlib's ``Distributed`` turns itself on only when WORLD_SIZE > 1 and then puts rank r on cuda:r, so
on a one-GPU machine it can never start NCCL. ``GroupDistributed`` below is elmlib's class (its
wrap/shard/denominator/mean methods, unchanged) on a process group this script initialises, active
at any world size and with every rank on cuda:0.

``single`` (world size 1, NCCL): per precision, K steps without DDP (elmlib's inactive Distributed,
exactly the single-GPU pipeline), again for fp32 (run-to-run determinism in one process), then K
steps through DDP over NCCL (real NCCL all-reduces of the gradients, denominators and metrics, world
size 1). Reports step periods (mean after the warm-up), DDP overhead, whether the losses and the final
supernet weights are bit-identical, and peak GPU memory.

``pair`` (world size 2, both ranks on cuda:0; dropout=0 so that sharding cannot change dropout masks):
rank 0 first runs the K steps alone (reference), then both ranks run them through DDP, each on its
half of the global batch; rank 0 reports the largest relative loss difference (elmlib's CPU test asks
1e-5 with gloo). With ``--backend nccl`` NCCL (>= 2.5) is expected to refuse two ranks on one GPU
("Duplicate GPU detected"); the error is recorded. With gloo the all-reduces go through the host,
so its time says nothing about NCCL.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path


def summarize(out_dir: Path, files: list[str]) -> None:
    """Merge the result files into OUT/ddp.json and append a few lines to OUT/summary.md."""
    merged, lines = {}, ["", "## DDP (benchmarks/bench_gpu_ddp.py)", ""]
    for f in files:
        name = Path(f).name
        try:
            r = json.loads(Path(f).read_text())
        except Exception as err:  # noqa: BLE001 (a part that never wrote)
            merged[name] = {"error": f"no result file ({err!r})"}
            lines.append(f"- {name}: no result file (part skipped, killed before writing, or failed to start)")
            continue
        merged[name] = r
        for run in r.get("runs", []):
            lines.append(f"- {name} {run.get('name')}: world {run.get('world')}, {run.get('steps')} steps, period mean "
                         f"{run.get('period_mean_s')} s, global tokens/s {run.get('tokens_per_s_global')}, "
                         f"peak {run.get('peak_mem_GiB')} GiB")
        for key, cmp in r.get("comparisons", {}).items():
            lines.append(f"- {name} {key}: {json.dumps(cmp)}")
        for err in r.get("errors", []):
            lines.append(f"- {name} ERROR in {err.get('run')}: `{str(err.get('error'))[:400]}`")
    (out_dir / "ddp.json").write_text(json.dumps(merged, indent=1))
    with open(out_dir / "summary.md", "a") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["summarize"]:  # summarize OUT_DIR FILE...: no torch needed
    summarize(Path(sys.argv[2]), sys.argv[3:])
    sys.exit(0)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from elmlib.pipeline.config import resolve_config  # noqa: E402
from elmlib.data.corpus import mlm_batches  # noqa: E402
from elmlib.train.distributed import Distributed  # noqa: E402
from elmlib.nas.objective import Objective, to_device  # noqa: E402
from elmlib.pipeline.context import build_supernet, kd_loss  # noqa: E402
from elmlib.data.teachers import load_teacher  # noqa: E402
from elmlib.data.tokenization import load_tokenizer  # noqa: E402
from elmlib.train.training import TrainLoop, adamw, path_rng  # noqa: E402


class GroupDistributed(Distributed):
    """elmlib's Distributed over the process group already initialised here, active at any world size,
    every rank on ``device`` (its __init__ is skipped: it would initialise the group itself, only for
    WORLD_SIZE > 1, and put rank r on cuda:r)."""

    def __init__(self, device: torch.device):  # noqa: D107 (no super().__init__ on purpose)
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.local_rank = device.index or 0  # wrap() passes device_ids=[local_rank]
        self.reduce_device = device if dist.get_backend() == "nccl" else torch.device("cpu")

    @property
    def active(self) -> bool:
        return True


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def start_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def inactive() -> Distributed:
    """elmlib's Distributed as a single process sees it (every method a no-op)."""
    d = Distributed.__new__(Distributed)
    d.world, d.rank, d.local_rank, d.reduce_device = 1, 0, 0, torch.device("cpu")
    return d


def setup(cfg, device, steps):
    tokenizer = load_tokenizer("teacher")
    teacher = load_teacher(cfg.teacher).to(device)
    train = mlm_batches(tokenizer, cfg.max_length, cfg.pretrain_batch_size, "train", cfg.seed, source=cfg.corpus)
    train.set_epoch(0)
    batches = [b for _, b in zip(range(steps), train)]  # the pipeline's first K batches, masks included
    return teacher, batches


def train(cfg, teacher, batches, d: Distributed, device, precision: str, use_ddp: bool, warmup: int) -> dict:
    """K steps of stage 1 (pretrain_supernet's step) with ``d``; returns losses, times, weights."""
    space = cfg.search_space()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    net = build_supernet(cfg, space).to(device)
    kd = kd_loss(cfg, space, len(net.layers), teacher, with_logits=False).to(device)
    objective = Objective(net, net.predictions, kd, "mlm", cfg.mlm_weight, d.denominator)
    wrapped = d.wrap(objective) if use_ddp else objective
    with tempfile.TemporaryDirectory() as folder:
        loop = TrainLoop("pretrain", folder, modules={"net": net, "kd": kd},
                         optimizer=adamw([net, kd], cfg.pretrain_lr, cfg.weight_decay), epochs=1,
                         steps_per_epoch=len(batches), warmup_ratio=cfg.warmup_ratio, checkpoint_every=10**9,
                         config_digest=cfg.digest(), is_main=False, progress=False, seed=cfg.seed,
                         precision=precision, device=device)
        loop.resume()  # no checkpoint: seeds torch/random from (seed, loop name), as the pipeline does
        starts, losses = [], []

        def step(batch, index):
            starts.append(time.perf_counter())
            batch = d.shard(to_device(batch, device))
            with torch.no_grad():
                t = teacher(batch["input_ids"], attention_mask=batch["attention_mask"],
                            token_type_ids=batch["token_type_ids"])
            parts = wrapped(batch, t, arch=net.sample(path_rng(cfg.seed, index)))
            parts["loss"].backward()
            metrics = d.mean(parts)
            losses.append(metrics)
            return metrics

        loop.run(lambda epoch: iter(batches), step)
    sync(device)
    end = time.perf_counter()
    periods = [b - a for a, b in zip(starts, starts[1:] + [end])][min(warmup, max(len(starts) - 1, 0)):]
    result = {"precision": precision, "ddp": use_ddp, "world": d.world, "steps": len(losses),
              "period_mean_s": statistics.fmean(periods) if periods else None,
              "period_median_s": statistics.median(periods) if periods else None,
              "tokens_per_s_global": (cfg.pretrain_batch_size * cfg.max_length / statistics.fmean(periods)
                                      if periods else None),
              "peak_mem_GiB": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
              "losses": losses}
    weights = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    del wrapped, objective, net, kd, loop
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result, weights


def compare(a: dict, b: dict, wa=None, wb=None) -> dict:
    la, lb = a["losses"], b["losses"]
    n = min(len(la), len(lb))
    first, rel = None, 0.0
    for i in range(n):
        for k in la[i]:
            x, y = la[i][k], lb[i].get(k)
            if x != y:
                first = first or {"step": i + 1, "key": k, "a": x, "b": y}
                rel = max(rel, abs(x - y) / max(abs(x), abs(y), 1e-30))
    out = {"steps_compared": n, "losses_bit_identical": first is None and n > 0, "first_difference": first,
           "max_relative_loss_difference": rel}
    if wa is not None and wb is not None:
        diffs = [(k, (wa[k].double() - wb[k].double()).abs().max().item()) for k in wa if wa[k].is_floating_point()]
        worst = max(diffs, key=lambda kv: kv[1])
        out.update(weights_bit_identical=all(torch.equal(wa[k], wb[k]) for k in wa),
                   weights_max_abs_difference=worst[1], weights_worst_tensor=worst[0],
                   weights_tensors_differing=sum(1 for _, v in diffs if v > 0))
    return out


def single(args, out: dict) -> None:
    device = start_device(args.device)
    if not dist.is_initialized():  # NCCL on a GPU (gloo only for a CPU try-out of this script)
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    out["backend"], out["world_size"] = dist.get_backend(), dist.get_world_size()
    out["nccl_version"] = ".".join(map(str, torch.cuda.nccl.version())) if device.type == "cuda" else None
    cfg = resolve_config(args.scale, overrides={"device": str(device), **dict(s.split("=", 1) for s in args.set)})
    out["config"] = {k: getattr(cfg, k) for k in ("space", "pretrain_batch_size", "max_length", "kd", "dropout",
                                                  "pretrain_lr", "seed")}
    t0 = time.time()
    teacher, batches = setup(cfg, device, args.steps)
    out["setup_s"] = time.time() - t0
    group = GroupDistributed(device)
    for precision in args.precisions.split(","):
        runs = {}
        # plain first, DDP, then plain again (fp32): the last two both run on a warmed-up process
        for name, d, ddp in [("plain", inactive(), False), ("ddp", group, True)] + \
                ([("plain_again", inactive(), False)] if precision == "fp32" else []):
            t1 = time.time()
            try:
                res, w = train(cfg, teacher, batches, d, device, precision, ddp, args.warmup)
                res["wall_s"] = time.time() - t1
                runs[name] = (res, w)
                out["runs"].append({"name": f"{precision}_{name}", **res})
                print(f"[ddp] {precision} {name}: period {res['period_mean_s']} s, peak {res['peak_mem_GiB']} GiB, "
                      f"last loss {res['losses'][-1]['loss']!r}", flush=True)
            except Exception as err:  # noqa: BLE001
                out["errors"].append({"run": f"{precision}_{name}", "error": f"{type(err).__name__}: {err}",
                                      "traceback": traceback.format_exc()[-3000:]})
                print(f"[ddp] {precision} {name} FAILED: {err!r}", flush=True)
            _write(args.json, out)
        cmp = {}
        if "plain" in runs and "plain_again" in runs:
            cmp["plain_vs_plain_again"] = compare(runs["plain"][0], runs["plain_again"][0], runs["plain"][1],
                                                  runs["plain_again"][1])
        if "plain" in runs and "ddp" in runs:
            cmp["plain_vs_ddp"] = compare(runs["plain"][0], runs["ddp"][0], runs["plain"][1], runs["ddp"][1])
            base, with_ddp = runs.get("plain_again", runs["plain"])[0]["period_mean_s"], runs["ddp"][0]["period_mean_s"]
            cmp["ddp_overhead"] = with_ddp / base - 1 if base and with_ddp else None  # vs the later plain run if any
        out["comparisons"][precision] = cmp
        print(f"[ddp] {precision}: {json.dumps(cmp)}", flush=True)
        _write(args.json, out)


def pair(args, out: dict) -> None:
    device = start_device(args.device)  # both ranks on the one GPU
    t0 = time.time()
    if args.backend == "nccl":
        dist.init_process_group("nccl", device_id=device)  # eager: a refusal shows here
        x = torch.ones(1, device=device)
        dist.all_reduce(x)
        out["nccl_allreduce_value"] = x.item()
    else:
        dist.init_process_group("gloo")
    out["init_s"] = time.time() - t0
    rank = dist.get_rank()
    out["backend"], out["world_size"], out["rank"] = dist.get_backend(), dist.get_world_size(), rank
    cfg = resolve_config(args.scale, overrides={"device": str(device), "dropout": 0.0,
                                             **dict(s.split("=", 1) for s in args.set)})
    teacher, batches = setup(cfg, device, args.steps)
    ref = None
    if rank == 0:
        ref, _ = train(cfg, teacher, batches, inactive(), device, "fp32", False, args.warmup)
        out["runs"].append({"name": "fp32_one_process", **ref})
        _write(args.json, out)
    dist.barrier()
    res, _ = train(cfg, teacher, batches, GroupDistributed(device), device, "fp32", True, args.warmup)
    out["runs"].append({"name": f"fp32_ddp_2ranks_{args.backend}", **res})
    if rank == 0:
        cmp = compare(ref, res)
        cmp["within_1e-5"] = cmp["max_relative_loss_difference"] <= 1e-5
        out["comparisons"]["one_process_vs_2ranks"] = cmp
        print(f"[ddp-pair] {args.backend}: {json.dumps(cmp)}", flush=True)


def _write(path, out) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["single", "pair"])
    parser.add_argument("--json", required=True, help="result file (pair: rank r writes <json>.rank<r>)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    parser.add_argument("--scale", default="paper")
    parser.add_argument("--device", default="cuda:0", help="every rank's device (cpu: a try-out with gloo)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511", "WORLD_SIZE": "1", "RANK": "0",
                       "LOCAL_RANK": "0"}.items():
        os.environ.setdefault(key, value)  # without torchrun: a world of one
    if args.mode == "pair":
        args.json = f"{args.json}.rank{os.environ['RANK']}"
    out = {"mode": args.mode, "argv": sys.argv, "steps": args.steps, "warmup": args.warmup, "runs": [],
           "comparisons": {}, "errors": [], "torch": torch.__version__,
           "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "env": {k: os.environ.get(k) for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "NCCL_DEBUG")}}
    rc = 0
    try:
        (single if args.mode == "single" else pair)(args, out)
    except BaseException as err:  # noqa: BLE001 (record everything, also a KeyboardInterrupt from timeout)
        out["errors"].append({"run": args.mode, "error": f"{type(err).__name__}: {err}",
                              "traceback": traceback.format_exc()[-3000:]})
        print(f"[ddp] {args.mode} FAILED: {err!r}", flush=True)
        rc = 1
    finally:
        _write(args.json, out)
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001
                pass
    return rc or (1 if out["errors"] else 0)


if __name__ == "__main__":
    import signal

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    sys.exit(main())
