"""The FlexiBERT design space and its benchmark records: architectures that validate themselves, and
the benchmark files that hold them (Tuli et al., JAIR 2023; records of Serianni & Kalita, ACL 2023).

An architecture is a hidden size plus one ``LayerSpec`` per encoder layer (token-mixing operation,
operation heads, FFN width and depth), parsed from a record's ``model_hparam_overrides``; every error
names the field, the value and the allowed values. ``load_benchmark`` reads the packaged dev file
(300 records, ``elmlib/benchmarks/README.md``); ``benchmark_entries`` reads a user's file for the
``proxy`` command and checks every record before anything is scored.

    from elmlib.extensions.flexibert.benchmark import load_benchmark, benchmark_entries
    entry = load_benchmark()[0]                      # BenchmarkEntry(id, arch: FlexiArchitecture, scores)
    entries = benchmark_entries("subset.json", scores=True)
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from elmlib.io.inputs import one_line, read_json

OPERATIONS = {"SA": ("SDP", "WMA"), "LT": ("DFT", "DCT"), "DSC": (5, 9)}
HIDDEN_SIZES = (128, 256)
HEADS = (2, 4)
FF_DIMS = (512, 1024)
NUM_FF = (1, 3)
NUM_LAYERS = (2, 4)

PACKAGED_DEV = "flexibert_dev.json"


def _check(field: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    # bool is an int subclass: True must not pass for 1
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"FlexiBERT: {field} = {value!r} is not allowed; expected one of {list(allowed)}")


@dataclass(frozen=True)
class LayerSpec:
    """One encoder layer of the FlexiBERT space (field names as in the benchmark file)."""

    operation_type: str
    operation_parameter: str | int
    num_operation_heads: int
    feed_forward_dimension: int
    num_feed_forward: int

    def validate(self, where: str = "layer") -> "LayerSpec":
        _check(f"{where}.operation_type", self.operation_type, OPERATIONS)
        _check(f"{where}.operation_parameter (for {self.operation_type})", self.operation_parameter,
               OPERATIONS[self.operation_type])
        _check(f"{where}.num_operation_heads", self.num_operation_heads, HEADS)
        _check(f"{where}.feed_forward_dimension", self.feed_forward_dimension, FF_DIMS)
        _check(f"{where}.num_feed_forward", self.num_feed_forward, NUM_FF)
        return self


@dataclass(frozen=True)
class FlexiArchitecture:
    """A FlexiBERT architecture: hidden size and a tuple of layers. Round-trips through dicts/JSON."""

    hidden_size: int
    layers: tuple[LayerSpec, ...]

    def validate(self) -> "FlexiArchitecture":
        _check("hidden_size", self.hidden_size, HIDDEN_SIZES)
        _check("number of encoder_layers", len(self.layers), NUM_LAYERS)
        for i, layer in enumerate(self.layers):
            layer.validate(f"encoder_layers[{i}]")
        return self

    def to_dict(self) -> dict:
        """The ``model_hparam_overrides`` form used by the benchmark file."""
        return {"hidden_size": self.hidden_size,
                "nas_config": {"encoder_layers": [asdict(layer) for layer in self.layers]}}

    @classmethod
    def from_dict(cls, overrides: dict) -> "FlexiArchitecture":
        """Parse a ``model_hparam_overrides`` dict; errors name the field, value and allowed values."""
        if not isinstance(overrides, dict):
            raise ValueError(f"FlexiBERT: model_hparam_overrides must be a dict, got {type(overrides).__name__}")
        for key in ("hidden_size", "nas_config"):
            if key not in overrides:
                raise ValueError(f"FlexiBERT: model_hparam_overrides lacks field {key!r}")
        layers_raw = overrides["nas_config"].get("encoder_layers") if isinstance(overrides["nas_config"], dict) else None
        if not isinstance(layers_raw, list):
            raise ValueError("FlexiBERT: nas_config.encoder_layers must be a list of layer dicts")
        layers = []
        for i, raw in enumerate(layers_raw):
            missing = [f for f in LayerSpec.__dataclass_fields__ if f not in raw]
            if missing:
                raise ValueError(f"FlexiBERT: encoder_layers[{i}] lacks field(s) {missing}")
            extra = sorted(set(raw) - set(LayerSpec.__dataclass_fields__))
            if extra:
                raise ValueError(f"FlexiBERT: encoder_layers[{i}] has unknown field(s) {extra}")
            layers.append(LayerSpec(**{f: raw[f] for f in LayerSpec.__dataclass_fields__}))
        return cls(hidden_size=overrides["hidden_size"], layers=tuple(layers)).validate()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FlexiArchitecture":
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class BenchmarkEntry:
    id: int
    arch: FlexiArchitecture
    scores: dict[str, float] | None  # None when the file carries no scores


def parse_record(record: dict, index: int = 0) -> BenchmarkEntry:
    """One benchmark record -> BenchmarkEntry. ``scores`` is optional (unscored candidate files)."""
    if not isinstance(record, dict):
        raise ValueError(f"FlexiBERT: record {index} must be a dict, got {type(record).__name__}")
    if "id" not in record:
        raise ValueError(f"FlexiBERT: record {index} lacks field 'id'")
    try:
        overrides = record["hparams"]["model_hparam_overrides"]
    except (KeyError, TypeError):
        raise ValueError(f"FlexiBERT: record id={record['id']} lacks hparams.model_hparam_overrides") from None
    try:
        arch = FlexiArchitecture.from_dict(overrides)
    except ValueError as err:
        raise ValueError(f"record id={record['id']}: {err}") from None
    scores = record.get("scores")
    if scores is not None and "glue" not in scores:
        raise ValueError(f"FlexiBERT: record id={record['id']} has scores but no 'glue'")
    return BenchmarkEntry(id=record["id"], arch=arch, scores=scores)


def load_benchmark(path: str | Path | None = None) -> list[BenchmarkEntry]:
    """Read a benchmark JSON file (a list of records); ``None`` reads the packaged dev file."""
    if path is None:
        text = resources.files("elmlib.benchmarks").joinpath(PACKAGED_DEV).read_text()
    else:
        text = Path(path).read_text()
    records = json.loads(text)
    if not isinstance(records, list):
        raise ValueError("FlexiBERT: a benchmark file must hold a JSON list of records")
    entries = [parse_record(r, i) for i, r in enumerate(records)]
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise ValueError("FlexiBERT: duplicate record ids in benchmark file")
    return entries


def _glue_score(record: dict, path: Path, where: str) -> float:
    """The record's ``scores.glue`` as a finite float; anything else is an error naming the record."""
    scores = record.get("scores")
    hint = "add its scores or pass --no-scores to score the architectures only"
    if scores is None:
        raise ValueError(f"{path}: {where} has no 'scores'; {hint}")
    if not isinstance(scores, dict) or "glue" not in scores:
        raise ValueError(f"{path}: {where} has scores without a 'glue' value; {hint}")
    glue = scores["glue"]
    if isinstance(glue, bool) or not isinstance(glue, (int, float)) or not math.isfinite(glue):
        raise ValueError(f"{path}: {where} has scores.glue = {glue!r}; it must be a finite number")
    return float(glue)


def benchmark_entries(path: str | os.PathLike | None, *, scores: bool = True) -> list[BenchmarkEntry]:
    """The FlexiBERT records of a user's file ``path`` (None: the packaged dev file) as ``BenchmarkEntry``s.

    Every record is checked before anything is scored: the file must hold a non-empty JSON list of
    records with unique ids; with ``scores`` each needs a finite ``scores.glue`` (no silent NaN
    correlations), without it any scores are dropped."""
    if path is None:
        entries = load_benchmark(None)
        return entries if scores else [replace(e, scores=None) for e in entries]
    path = Path(path)
    records = read_json(path, "benchmark file", "pass --data an existing JSON file, or omit it for the packaged one")
    if not isinstance(records, list):
        raise ValueError(f"{path}: must hold a JSON list of FlexiBERT records, found a {type(records).__name__}")
    if not records:
        raise ValueError(f"{path}: holds an empty list; give at least one FlexiBERT record")
    entries, seen = [], set()
    for i, record in enumerate(records):
        rid = record.get("id") if isinstance(record, dict) else None
        where = f"record {i}" if rid is None else f"record id={rid!r}"
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (int, str))):
            raise ValueError(f"{path}: {where} (index {i}): id must be an integer or a string")
        if rid in seen:
            raise ValueError(f"{path}: {where} appears twice; ids must be unique")
        seen.add(rid)
        body = {k: v for k, v in record.items() if k != "scores"} if isinstance(record, dict) else record
        try:
            entry = parse_record(body, i)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            message = one_line(err)
            if not isinstance(err, ValueError):  # a wrong type deep in the record: say what shape is expected
                message = (f"malformed architecture ({type(err).__name__}: {message}); records follow "
                           "elmlib/benchmarks/flexibert_dev.json (hparams.model_hparam_overrides)")
            raise ValueError(f"{path}: {message if where in message else f'{where}: {message}'}") from err
        glue = _glue_score(record, path, where) if scores else None
        entries.append(replace(entry, scores={**record["scores"], "glue": glue} if scores else None))
    return entries
