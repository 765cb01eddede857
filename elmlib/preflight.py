"""Checks of a resolved search config against this machine, before a run folder is touched.

``SearchConfig`` checks each setting's type and range; ``preflight`` checks what depends on the
machine and the data: the stages named, the device and its precision, the task, corpus and teacher
being reachable (packaged, a local folder, the local hub cache, or the hub itself) and
``max_length`` against the position tables. Each failure is one line naming the setting, the
value and what is allowed.

    preflight(cfg, stages=("pretrain", "finetune"))
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .config import SearchConfig
from .errors import UserError

STAGES = ("pretrain", "finetune", "search", "heads", "retrain")


def check_stages(stages) -> tuple[str, ...]:
    stages = tuple(stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise UserError(f"--stages {','.join(stages) or '(empty)'} is not allowed; expected a comma-separated "
                        f"subset of {','.join(STAGES)}")
    return stages


def check_device(cfg: SearchConfig) -> None:
    """``device`` names a device this machine has; ``precision=bf16`` is supported there."""
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(cfg.device)
        except (RuntimeError, ValueError):
            raise UserError(f"setting device={cfg.device!r} is not allowed; expected auto, cpu, cuda or "
                            "cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"setting device={cfg.device!r} is not allowed: this machine has no CUDA GPU "
                            "(use device=cpu or auto)")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise UserError(f"setting device={cfg.device!r} is not allowed: this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s)")
        if device.type not in ("cpu", "cuda"):
            raise UserError(f"setting device={cfg.device!r} is not allowed; expected auto, cpu, cuda or cuda:N")
    if cfg.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("setting precision='bf16' is not allowed on this GPU (no bfloat16 support); use fp32")


def hub_cached(repo: str, kind: str) -> bool:
    """Whether the local hub cache holds ``repo`` (a model or a dataset) from an earlier download."""
    from huggingface_hub import constants

    return (Path(constants.HF_HUB_CACHE) / f"{kind}s--{repo.replace('/', '--')}").is_dir()


def _hub_usable(repo: str, kind: str) -> bool:
    from .tasks import hub_offline, hub_reachable

    return hub_cached(repo, kind) or (not hub_offline() and hub_reachable())


def check_task(cfg: SearchConfig) -> None:
    from .tasks import get_task, package_dir  # noqa: F401 (package_dir: raised through get_task's files)

    try:
        spec = get_task(cfg.task)
    except KeyError as err:
        raise UserError(str(err).strip("\"'")) from None
    if spec.num_labels < 1:
        raise UserError(f"task={cfg.task!r} is extractive QA; the search scores classification/regression "
                        "tasks (use elmlib.squad for QA fine-tuning)")
    if spec.source == "hub" and not _hub_usable(spec.hub_id[0], "dataset"):
        raise UserError(f"task={cfg.task!r} comes from the hub ({spec.hub_id[0]}), which is out of reach and "
                        f"not in the local cache; use an offline task such as {spec.offline_alternative or 'boolq'!r}")
    if spec.source == "offline":
        from .tasks import source_files

        try:
            source_files(cfg.task)
        except FileNotFoundError as err:
            raise UserError(str(err)) from None


def check_corpus(cfg: SearchConfig) -> None:
    from .corpus import ONLINE

    if cfg.corpus == "offline":
        return
    if cfg.corpus not in ONLINE:
        raise UserError(f"setting corpus={cfg.corpus!r} is not allowed; expected offline or one of "
                        f"{', '.join(ONLINE)}")
    if not _hub_usable(ONLINE[cfg.corpus][0], "dataset"):
        raise UserError(f"setting corpus={cfg.corpus!r} needs the hub ({ONLINE[cfg.corpus][0]}), which is out of "
                        "reach and not in the local cache; use corpus=offline")


def teacher_positions(cfg: SearchConfig) -> int | None:
    """The teacher's position table size, read from its config.json; None for an uncached hub id
    (checked when it downloads). A missing packaged teacher or an unreachable one is an error."""
    from .tokenization import teacher_dir

    if cfg.teacher == "teacher":
        try:
            folder = teacher_dir()
        except FileNotFoundError as err:
            raise UserError(f"setting teacher='teacher': {err}") from None
    elif Path(cfg.teacher).expanduser().is_dir() or cfg.teacher.startswith((".", "/", "~")):
        folder = Path(cfg.teacher).expanduser()
        if not (folder / "config.json").is_file():
            raise UserError(f"setting teacher={cfg.teacher!r} is not allowed: the folder has no config.json "
                            "(expected a transformers model folder, a hub id or 'teacher')")
    else:
        if not _hub_usable(cfg.teacher, "model"):
            raise UserError(f"setting teacher={cfg.teacher!r} is not a local folder and the hub is out of reach "
                            "(and it is not in the local cache); use teacher=teacher (the packaged model)")
        return None
    try:
        return int(json.loads((folder / "config.json").read_text()).get("max_position_embeddings", 0)) or None
    except (OSError, ValueError):
        raise UserError(f"teacher folder {folder}: config.json is not valid JSON") from None


def check_lengths(cfg: SearchConfig) -> None:
    space = cfg.search_space()
    limit = space.max_position_embeddings
    teacher = teacher_positions(cfg)
    if teacher is not None:
        limit = min(limit, teacher)
    if cfg.max_length > limit:
        raise UserError(f"setting max_length={cfg.max_length} is not allowed; expected at most {limit} "
                        f"(the position tables of the {space.name!r} space and the teacher)")


def preflight(cfg: SearchConfig, stages=STAGES) -> tuple[str, ...]:
    """Every check that needs no run folder; returns the stages, validated."""
    stages = check_stages(stages)
    check_device(cfg)
    check_task(cfg)
    check_corpus(cfg)
    check_lengths(cfg)
    return stages
