"""Checks of a resolved search config against this machine, before a run folder is touched.

``SearchConfig`` checks each setting's type and range; ``preflight`` checks what depends on the
machine and the data: the stages named, the device and its precision, the task, corpus and teacher
being reachable (packaged, a local folder, the local hub cache, or the hub itself), ``max_length``
against the position tables (RoBERTa-family teachers lose ``pad_token_id + 1`` rows to their offset)
and the teacher's tokenizer against the students' vocabulary (``vocab_size``). Each failure is one line
naming the setting, the value and what is allowed.

    preflight(cfg, stages=("pretrain", "finetune"))
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from elmlib.data.corpus import ONLINE, corpus_sources
from elmlib.data.registry import SUITES
from elmlib.data.sources import hub_cached, hub_offline, hub_reachable
from elmlib.data.tasks import resolve_task, source_files
from elmlib.data.tokenization import load_tokenizer, teacher_dir
from elmlib.errors import UserError
from elmlib.nas.space import SearchSpace
from elmlib.pipeline.config import SearchConfig
from elmlib.train.runtime import resolve_device

STAGES = ("pretrain", "finetune", "search", "heads", "retrain", "suite")


def active_stages(cfg: SearchConfig, stages=STAGES) -> tuple[str, ...]:
    """The stages of ``stages`` that ``cfg`` runs: ``suite`` only when a suite is set."""
    return tuple(s for s in stages if s != "suite" or cfg.suite)


def check_stages(stages) -> tuple[str, ...]:
    stages = tuple(stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise UserError(f"--stages {','.join(stages) or '(empty)'} is not allowed; expected a comma-separated "
                        f"subset of {','.join(STAGES)}")
    return stages


def check_device(cfg: SearchConfig) -> None:
    """``device`` names a device this machine has; ``precision=bf16`` is supported there."""
    try:
        device = resolve_device(cfg.device)
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


def _hub_usable(repo: str, kind: str) -> bool:
    return hub_cached(repo, kind) or (not hub_offline() and hub_reachable())


def check_task(cfg: SearchConfig) -> None:
    """A known, scoreable task whose packaged files are installed (hub tasks: see ``hub_needs``); with a
    suite, the task is one of its members and every member is checked too."""
    if cfg.suite:
        members = SUITES[cfg.suite]
        if cfg.task not in members:
            raise UserError(f"setting task={cfg.task!r} is not allowed with suite={cfg.suite!r}; expected the suite "
                            f"task whose search split the search scores: one of {', '.join(members)}")
        for task in members:
            _check_one_task(dataclasses.replace(cfg, task=task, suite=""))
    _check_one_task(cfg)


def _check_one_task(cfg: SearchConfig) -> None:
    try:
        spec = resolve_task(cfg)  # a data file is read and checked here, before any folder is made
    except KeyError as err:
        raise UserError(str(err).strip("\"'")) from None
    if spec.num_labels < 1:
        raise UserError(f"task={cfg.task!r} is extractive QA; the search scores classification/regression "
                        "tasks (use elmlib.extensions.squad for QA fine-tuning)")
    if spec.source == "offline":
        try:
            source_files(cfg.task)
        except FileNotFoundError as err:
            raise UserError(str(err)) from None


def _teacher_is_hub_id(teacher: str) -> bool:
    return teacher != "teacher" and not Path(teacher).expanduser().is_dir() and not teacher.startswith((".", "/", "~"))


def hub_needs(cfg: SearchConfig) -> list[str]:
    """The settings that need the hub and find it neither reachable nor in the local cache."""
    missing = {}  # task -> hub dataset, the run's task first, then the other suite members
    for task in dict.fromkeys((cfg.task,) + SUITES.get(cfg.suite, ())):
        spec = resolve_task(dataclasses.replace(cfg, task=task, suite=""))
        if spec.source == "hub" and not _hub_usable(spec.hub_id[0], "dataset"):
            missing[task] = spec.hub_id[0]
    needs = [f"task={cfg.task!r} ({missing.pop(cfg.task)})"] if cfg.task in missing else []
    if missing:
        needs.append(f"suite={cfg.suite!r} (tasks {', '.join(missing)}: {', '.join(sorted(set(missing.values())))})")
    try:
        parts = corpus_sources(cfg.corpus)
    except ValueError as err:
        raise UserError(f"setting {err}") from None
    needs += [f"corpus={part!r} ({ONLINE[part][0]})" for part in parts
              if part != "offline" and not _hub_usable(ONLINE[part][0], "dataset")]
    if _teacher_is_hub_id(cfg.teacher) and not _hub_usable(cfg.teacher, "model"):
        needs.append(f"teacher={cfg.teacher!r}")
    if cfg.tokenizer and _teacher_is_hub_id(cfg.tokenizer) and not _hub_usable(cfg.tokenizer, "model"):
        needs.append(f"tokenizer={cfg.tokenizer!r}")
    return needs


def check_hub(cfg: SearchConfig) -> None:
    """One line naming every hub item that cannot be had, and the offline substitutes."""
    needs = hub_needs(cfg)
    if needs:
        raise UserError(f"setting {', '.join(needs)} needs the hub, which is out of reach (and not in the local "
                        "cache); offline, run the same widths with --set teacher=teacher --set corpus=offline "
                        f"{'--set suite=offline ' if cfg.suite == 'glue' else ''}and an offline task "
                        f"({', '.join(SUITES['offline'])})")


# Model types whose position ids start after the padding index (RoBERTa's create_position_ids_from_input_ids):
# a table of P rows holds P - pad_token_id - 1 tokens.
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "roberta-prelayernorm", "data2vec-text", "xmod",
                    "longformer", "ibert")


def teacher_config(cfg: SearchConfig) -> tuple[Path, dict] | None:
    """The teacher's folder and config.json; None for a hub id (checked when it downloads). A missing
    packaged teacher or a folder without a valid config.json is an error."""
    if _teacher_is_hub_id(cfg.teacher):
        return None
    if cfg.teacher == "teacher":
        try:
            folder = teacher_dir()
        except FileNotFoundError as err:
            raise UserError(f"setting teacher='teacher': {err}") from None
    else:
        folder = Path(cfg.teacher).expanduser()
        if not (folder / "config.json").is_file():
            raise UserError(f"setting teacher={cfg.teacher!r} is not allowed: no model folder with a config.json "
                            "there (expected a transformers model folder, a hub id or 'teacher')")
    try:
        return folder, json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"teacher folder {folder}: config.json is not valid JSON") from None


def usable_positions(config: dict) -> int | None:
    """Tokens a checkpoint's position table holds: ``max_position_embeddings``, less the padding offset of
    RoBERTa-family models (positions start at ``pad_token_id + 1``); None where the config has no table."""
    table = int(config.get("max_position_embeddings", 0) or 0)
    if not table:
        return None
    if config.get("model_type") in OFFSET_POSITIONS:
        table -= int(config.get("pad_token_id") or 0) + 1
    return table


def check_teacher(cfg: SearchConfig) -> None:
    """``max_length`` fits the position tables of the space and the teacher, and the teacher's tokenizer
    (the students' too) fits the students' vocabulary (`check_tokenizer`)."""
    space, found = cfg.search_space(), teacher_config(cfg)
    limit = space.max_position_embeddings
    teacher = usable_positions(found[1]) if found else None
    if teacher is not None:
        limit = min(limit, teacher)
    if cfg.max_length > limit:
        raise UserError(f"setting max_length={cfg.max_length} is not allowed; expected at most {limit} "
                        f"(the position tables of the {space.name!r} space and the teacher)")
    folder = tokenizer_folder(cfg, found[0] if found else None)
    if folder:
        check_tokenizer(cfg, load_run_tokenizer(cfg, folder))


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")
# What the students' training reads of the tokenizer: packing ([CLS] ... [SEP]), masking, padding.
SPECIAL_TOKENS = ("cls_token", "sep_token", "mask_token", "pad_token")


def tokenizer_folder(cfg: SearchConfig, teacher_folder: Path | None) -> Path | None:
    """The folder of the tokenizer the run uses (``tokenizer``, else the teacher's); None for a hub id."""
    if not cfg.tokenizer:
        return teacher_folder
    if cfg.tokenizer == "teacher":
        return teacher_dir()
    if Path(cfg.tokenizer).expanduser().is_dir():
        return Path(cfg.tokenizer).expanduser()
    if _teacher_is_hub_id(cfg.tokenizer):
        return None
    raise UserError(f"setting tokenizer={cfg.tokenizer!r} is not allowed: no such folder (expected a tokenizer "
                    "folder, a hub id, or '' for the teacher's)")


def _tokenizer_setting(cfg: SearchConfig) -> str:
    return f"tokenizer={cfg.tokenizer!r}" if cfg.tokenizer else f"teacher={cfg.teacher!r}"


def load_run_tokenizer(cfg: SearchConfig, folder: Path):
    """The run's tokenizer in ``folder`` (the students read its ids); none there is an error."""
    setting = _tokenizer_setting(cfg)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"setting {setting} is not allowed: {folder} holds no tokenizer (none of "
                        f"{', '.join(TOKENIZER_FILES)}); save one there (tokenizer.save_pretrained) or name one "
                        "with --set tokenizer=<folder or hub id>")
    try:
        return load_tokenizer(str(folder))
    except (OSError, ValueError) as err:
        raise UserError(f"setting {setting}: the tokenizer in {folder} cannot be loaded ({type(err).__name__})") from None


def check_tokenizer(cfg: SearchConfig, tokenizer) -> None:
    """Every id of ``tokenizer`` has a row in the students' embedding table (``vocab_size``; a larger
    tokenizer names the setting that fits it and what its table costs), and it has the special tokens
    the students' training reads (`SPECIAL_TOKENS`)."""
    space, size, setting = cfg.search_space(), len(tokenizer), _tokenizer_setting(cfg)
    default = SearchSpace.preset(space.name).vocab_size
    if size > space.vocab_size and cfg.vocab_size:
        zero = f" (or 0: the {space.name!r} space's {default:,})" if size <= default else ""
        raise UserError(f"setting vocab_size={cfg.vocab_size} is not allowed with {setting}; expected at least its "
                        f"tokenizer's {size:,} tokens{zero}")
    if size > space.vocab_size:
        extra = (size - space.vocab_size) * space.embedding_size
        raise UserError(f"setting {setting} is not allowed with the {space.name!r} space: its tokenizer has "
                        f"{size:,} tokens, more than the students' vocabulary of {space.vocab_size:,}; pass "
                        f"--set vocab_size={size} (the larger embedding table adds {extra:,} parameters at the "
                        f"space's embedding size {space.embedding_size}, counted against the budget)")
    missing = [name for name in SPECIAL_TOKENS if getattr(tokenizer, f"{name}_id", None) is None]
    if missing:
        raise UserError(f"setting {setting} is not allowed: its tokenizer has no {', '.join(missing)}, which the "
                        "students' masked-LM pretraining and padding need (BERT's WordPiece and RoBERTa's BPE "
                        "have them)")


def preflight(cfg: SearchConfig, stages=STAGES) -> tuple[str, ...]:
    """Every check that needs no run folder; returns the stages, validated."""
    stages = check_stages(stages)
    check_device(cfg)
    check_task(cfg)
    check_hub(cfg)
    check_teacher(cfg)
    return stages
