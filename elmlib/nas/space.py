"""The ELM search space and its architectures (paper Sec. III-A and Appendix A).

Every layer picks one of six blocks, {BERT, MobileBERT} x {no sharing, Q=V, K=V}, with its own
FFN dimension (grown during supernet training, Sec. III-B) and head number (set by CKA, Alg. 1).

    space = SearchSpace.preset("small")
    arch = space.sample(random.Random(0))
    space.num_params(arch)            # encoder + embeddings, no task head
"""
from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field

from elmlib.io.settings import POSITIVE_INT, check
from elmlib.model.configuration_elm import BLOCK_TYPES, NORMS, SHARINGS, ElmConfig

CANDIDATES = tuple((b, s) for b in BLOCK_TYPES for s in SHARINGS)  # index = 3 * block + sharing (paper Fig. 6)


@dataclass(frozen=True)
class LayerChoice:
    """One layer of an architecture."""

    block: str
    sharing: str
    ffn_dim: int
    heads: int

    @property
    def candidate(self) -> int:
        """Index 0-5 of (block, sharing): 0-2 BERT, 3-5 MobileBERT; mod 3 = none, qv, kv."""
        return CANDIDATES.index((self.block, self.sharing))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Architecture:
    """Per-layer choices; validates its own field values, and a `SearchSpace` validates widths."""

    layers: tuple[LayerChoice, ...]

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LayerChoice):
                raise TypeError(f"layer {i}: expected a LayerChoice, got {type(layer).__name__}")
            if layer.block not in BLOCK_TYPES:
                raise ValueError(f"layer {i}: block={layer.block!r} is not allowed; expected one of {BLOCK_TYPES}")
            if layer.sharing not in SHARINGS:
                raise ValueError(f"layer {i}: sharing={layer.sharing!r} is not allowed; expected one of {SHARINGS}")
            for name in ("ffn_dim", "heads"):
                value = getattr(layer, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"layer {i}: {name}={value!r} is not allowed; expected a positive integer")

    def __len__(self) -> int:
        return len(self.layers)

    def to_dict(self) -> dict:
        return {"layers": [layer.to_dict() for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: dict) -> "Architecture":
        if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
            raise ValueError(f"architecture: expected {{'layers': [...]}}, got {str(data)[:80]!r}")
        layers = []
        for i, layer in enumerate(data["layers"]):
            expected = {f.name for f in dataclasses.fields(LayerChoice)}
            if not isinstance(layer, dict) or set(layer) != expected:
                got = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
                raise ValueError(f"layer {i}: fields {got} do not match the expected {sorted(expected)}")
            layers.append(LayerChoice(**layer))
        return cls(tuple(layers))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        return cls.from_dict(json.loads(text))

    def replace_layer(self, index: int, **changes) -> "Architecture":
        layers = list(self.layers)
        layers[index] = dataclasses.replace(layers[index], **changes)
        return Architecture(tuple(layers))

    @classmethod
    def uniform(cls, num_layers: int, block: str, sharing: str, ffn_dim: int, heads: int) -> "Architecture":
        return cls(tuple(LayerChoice(block, sharing, ffn_dim, heads) for _ in range(num_layers)))


_PRESETS: dict[str, dict] = {
    # Appendix A: hidden 528, 12 heads, FFN 132..1056 in steps of 132, MobileBERT inner 132.
    "small": dict(num_layers=12, hidden_size=528, inner_size=132, num_heads=12, ffn_min=132, ffn_step=132,
                  ffn_max=1056, budget=15.7e6),
    "tiny": dict(num_layers=12, hidden_size=528, inner_size=132, num_heads=12, ffn_min=132, ffn_step=132,
                 ffn_max=1056, budget=10e6),
    # ELM-Micro: hidden 192, 6 layers; same ratios (inner and FFN step = hidden / 4, FFN max = 2 x hidden).
    "micro": dict(num_layers=6, hidden_size=192, inner_size=48, num_heads=12, ffn_min=48, ffn_step=48,
                  ffn_max=384, budget=5e6),
    # Tiny widths for tests and CPU demos; the real 30,522-token WordPiece vocabulary (every preset's; a
    # search's ``vocab_size`` setting replaces it).
    "smoke": dict(num_layers=4, hidden_size=64, inner_size=16, num_heads=4, ffn_min=16, ffn_step=16,
                  ffn_max=128, embedding_size=32, max_position_embeddings=128, budget=1.05e6),
}


_SPACE_RANGES = ((("num_layers", "hidden_size", "inner_size", "num_heads", "ffn_min", "ffn_step", "ffn_max",
                   "embedding_size", "vocab_size", "max_position_embeddings", "type_vocab_size",
                   "mobilebert_num_ffn"), POSITIVE_INT),)


@dataclass(frozen=True)
class SearchSpace:
    """Fixed widths of the space; an `Architecture` fills in the per-layer choices."""

    num_layers: int
    hidden_size: int
    inner_size: int
    num_heads: int
    ffn_min: int
    ffn_step: int
    ffn_max: int
    budget: float | None = None            # the paper's parameter ceiling for this preset
    ffn_init: int | None = None            # supernet's starting FFN dim (default ffn_min, Sec. III-B)
    embedding_size: int = 128
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    mobilebert_num_ffn: int = 1
    mobilebert_norm: str = "layer_norm"
    pad_token_id: int = 0                  # the tokenizer's padding id: the word-embedding row kept at zero
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        check(self, {}, _SPACE_RANGES, owner="SearchSpace")
        if self.ffn_min > self.ffn_max or self.ffn_min % self.ffn_step or self.ffn_max % self.ffn_step:
            raise ValueError(f"SearchSpace FFN range [{self.ffn_min}, {self.ffn_max}] step {self.ffn_step}: "
                             "min and max must be multiples of the step with min <= max")
        if self.ffn_init is None:
            object.__setattr__(self, "ffn_init", self.ffn_min)
        self._check_ffn("ffn_init", self.ffn_init)
        check(self, {"mobilebert_norm": lambda: NORMS}, (), owner="SearchSpace")
        if isinstance(self.pad_token_id, bool) or not isinstance(self.pad_token_id, int) \
                or not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"SearchSpace.pad_token_id={self.pad_token_id!r} is not allowed; expected a token id "
                             f"in [0, {self.vocab_size})")
        for block in BLOCK_TYPES:
            if self.attention_width(block) % self.num_heads:
                raise ValueError(f"SearchSpace.num_heads={self.num_heads} does not divide the {block} "
                                 f"attention width {self.attention_width(block)}")

    @classmethod
    def preset(cls, name: str, **overrides) -> "SearchSpace":
        if name not in _PRESETS:
            raise ValueError(f"unknown search-space preset {name!r}; expected one of {sorted(_PRESETS)}")
        return cls(**{**_PRESETS[name], "name": name, **overrides})

    @staticmethod
    def presets() -> tuple[str, ...]:
        return tuple(_PRESETS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SearchSpace":
        return cls(**data)

    # --- choices -------------------------------------------------------------------------------
    def attention_width(self, block: str) -> int:
        return self.hidden_size if block == "bert" else self.inner_size

    @property
    def ffn_choices(self) -> tuple[int, ...]:
        return tuple(range(self.ffn_min, self.ffn_max + 1, self.ffn_step))

    def head_choices(self, block: str) -> tuple[int, ...]:
        """Head numbers that divide the block's attention width, up to the starting number."""
        width = self.attention_width(block)
        return tuple(h for h in range(1, self.num_heads + 1) if width % h == 0)

    def _check_ffn(self, where: str, value: int) -> None:
        if not self.ffn_min <= value <= self.ffn_max or value % self.ffn_step:
            raise ValueError(f"{where}: ffn_dim={value} is not allowed; expected a multiple of {self.ffn_step} "
                             f"in [{self.ffn_min}, {self.ffn_max}]")

    def validate(self, arch: Architecture) -> Architecture:
        """Raise ValueError naming the layer, field, value and what is allowed; return ``arch``."""
        if not isinstance(arch, Architecture):
            raise TypeError(f"expected an Architecture, got {type(arch).__name__}")
        if len(arch) != self.num_layers:
            raise ValueError(f"architecture has {len(arch)} layers; the {self.name!r} space has {self.num_layers}")
        for i, layer in enumerate(arch.layers):
            self._check_ffn(f"layer {i}", layer.ffn_dim)
            width = self.attention_width(layer.block)
            if width % layer.heads or layer.heads > self.num_heads:
                raise ValueError(f"layer {i}: heads={layer.heads} is not allowed for a {layer.block} block; "
                                 f"expected a divisor of its attention width {width} up to {self.num_heads}: "
                                 f"{self.head_choices(layer.block)}")
        return arch

    def sample(self, rng: random.Random, *, uniform_ffn: bool = False,
               candidates: tuple[tuple[str, str], ...] = CANDIDATES) -> Architecture:
        """Uniform over ``candidates`` per layer (SPOS); FFN dims at ``ffn_init`` or, if asked, uniform."""
        if not isinstance(rng, random.Random):
            raise TypeError("sample() needs an explicit random.Random; the global RNG is never used")
        layers = []
        for _ in range(self.num_layers):
            block, sharing = rng.choice(candidates)
            ffn = rng.choice(self.ffn_choices) if uniform_ffn else self.ffn_init
            layers.append(LayerChoice(block, sharing, ffn, self.num_heads))
        return Architecture(tuple(layers))

    # --- sizes ---------------------------------------------------------------------------------
    def embedding_params(self) -> int:
        e, h = self.embedding_size, self.hidden_size
        tables = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * e
        return tables + 2 * e + e * h + h  # + LayerNorm(e) + projection e -> h

    def layer_params(self, layer: LayerChoice) -> int:
        """Parameters of one block; head numbers do not change it (heads only re-split the width)."""
        h, i, f = self.hidden_size, self.inner_size, layer.ffn_dim
        projections = 3 if layer.sharing == "none" else 2
        if layer.block == "bert":
            attention = projections * (h * h + h) + (h * h + h) + 2 * h
            return attention + (h * f + f) + (f * h + h) + 2 * h
        value_in = h if layer.sharing == "none" else i  # a shared value reads the bottleneck (modeling_elm)
        bottlenecks = 2 * (h * i + i + 2 * i)
        attention = 2 * (i * i + i) + (value_in * i + i if layer.sharing == "none" else 0) + (i * i + i) + 2 * i
        ffn = self.mobilebert_num_ffn * ((i * f + f) + (f * i + i) + 2 * i)
        return bottlenecks + attention + ffn + (i * h + h) + 2 * h

    def num_params(self, arch: Architecture) -> int:
        """Encoder with its embeddings, without task heads: what the paper's budgets count."""
        return self.embedding_params() + self.num_non_embedding_params(arch)

    def num_non_embedding_params(self, arch: Architecture) -> int:
        self.validate(arch)
        return sum(self.layer_params(layer) for layer in arch.layers)

    def config(self, arch: Architecture, **overrides) -> ElmConfig:
        """The `ElmConfig` of a standalone model of ``arch`` in this space."""
        self.validate(arch)
        return ElmConfig(**{
            "vocab_size": self.vocab_size, "embedding_size": self.embedding_size, "hidden_size": self.hidden_size,
            "inner_size": self.inner_size, "layers": [layer.to_dict() for layer in arch.layers],
            "max_position_embeddings": self.max_position_embeddings, "type_vocab_size": self.type_vocab_size,
            "mobilebert_num_ffn": self.mobilebert_num_ffn, "mobilebert_norm": self.mobilebert_norm,
            "pad_token_id": self.pad_token_id, **overrides})

    def widths_config(self, **overrides) -> ElmConfig:
        """An `ElmConfig` holding only the shared widths (layers filled with a placeholder)."""
        arch = Architecture.uniform(self.num_layers, "bert", "none", self.ffn_init, self.num_heads)
        return self.config(arch, **overrides)
