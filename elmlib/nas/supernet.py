"""The weight-sharing supernet (paper Sec. III-A; single-path one-shot, Guo et al. ECCV 2020).

Every layer holds its own weights for each of the six candidate blocks; a forward pass runs one
block per layer (a *path*, an `Architecture`), so only that path's blocks take part in forward and
backward. The API follows once-for-all's (sample / run a sub-network / extract it standalone):

    net = Supernet(SearchSpace.preset("smoke"), seed=0)
    arch = net.sample(random.Random(0))
    h = net(input_ids, attention_mask=mask, arch=arch).last_hidden_state
    model = net.extract(arch)          # ElmModel: a standalone transformers PreTrainedModel
"""
from __future__ import annotations

import random

import torch
from torch import nn

from elmlib.model.blocks import NoNorm, build_block
from elmlib.model.modeling_elm import ElmEmbeddings, ElmMLMHead, ElmModel, ElmModelOutput, run_layers, sdpa_mask
from elmlib.nas.growth import grow_ffn
from elmlib.nas.space import CANDIDATES, Architecture, LayerChoice, SearchSpace
from elmlib.train.runtime import count_parameters


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation (the same as `ElmPreTrainedModel` applies to a standalone model)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()
        if isinstance(m, (nn.LayerNorm, NoNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def candidate_key(block: str, sharing: str) -> str:
    return f"{block}_{sharing}"


def copy_prefix_(dst: torch.Tensor, src: torch.Tensor) -> None:
    """Copy the leading part of ``src`` that fits ``dst`` (an elastic FFN keeps its first units)."""
    with torch.no_grad():
        dst.copy_(src[tuple(slice(0, n) for n in dst.shape)])


class Supernet(nn.Module):
    """Shared embeddings plus ``len(candidates)`` blocks per layer, each with its own FFN dimension."""

    def __init__(self, space: SearchSpace, *, candidates=CANDIDATES, seed: int = 0, **config_overrides):
        super().__init__()
        unknown = [c for c in candidates if tuple(c) not in CANDIDATES]
        if unknown or not candidates:
            raise ValueError(f"candidates={unknown or candidates!r} are not allowed; expected a non-empty subset "
                             f"of {CANDIDATES}")
        self.space = space
        self.candidates = tuple(tuple(c) for c in candidates)
        self.config = space.widths_config(**config_overrides)
        # Seeded initialisation without touching the caller's global RNG state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embeddings = ElmEmbeddings(self.config)
            self.layers = nn.ModuleList(
                nn.ModuleDict({candidate_key(b, s): build_block(self.config, b, s, space.ffn_init, space.num_heads)
                               for b, s in self.candidates})
                for _ in range(space.num_layers)
            )
            # Masked-LM head for supernet pretraining, decoder tied to the word embeddings.
            self.predictions = ElmMLMHead(self.config)
            init_weights(self, self.config.initializer_range)
        self.predictions.decoder.weight = self.embeddings.word_embeddings.weight

    def block(self, layer: int, block: str, sharing: str) -> nn.Module:
        return self.layers[layer][candidate_key(block, sharing)]

    def ffn_dim(self, layer: int, block: str, sharing: str) -> int:
        """The block's current (allocated) FFN dimension."""
        return self.block(layer, block, sharing).intermediate.dense.weight.shape[0]

    def ffn_sizes(self) -> dict[str, int]:
        """Every block's current FFN size, keyed ``"<layer>/<block>_<sharing>"`` (the growth state)."""
        return {f"{i}/{candidate_key(b, s)}": self.ffn_dim(i, b, s)
                for i in range(len(self.layers)) for b, s in self.candidates}

    def grow_to(self, sizes: dict[str, int]) -> None:
        """Grow blocks to recorded sizes, e.g. before loading the state of a grown supernet."""
        for key, size in sizes.items():
            layer, name = key.split("/")
            block = self.layers[int(layer)][name]
            if block.intermediate.dense.weight.shape[0] < size:
                grow_ffn(block, size)

    def uniform_path(self, block: str, sharing: str) -> Architecture:
        """Every layer on the same candidate, at its current FFN size (PCA scoring runs these)."""
        return Architecture(tuple(LayerChoice(block, sharing, self.ffn_dim(i, block, sharing), self.space.num_heads)
                                  for i in range(len(self.layers))))

    def sample(self, rng: random.Random) -> Architecture:
        """A uniformly sampled path with every block at its current FFN dim and the starting head number."""
        if not isinstance(rng, random.Random):
            raise TypeError("sample() needs an explicit random.Random; the global RNG is never used")
        layers = []
        for i in range(self.space.num_layers):
            block, sharing = rng.choice(self.candidates)
            layers.append(LayerChoice(block, sharing, self.ffn_dim(i, block, sharing), self.space.num_heads))
        return Architecture(tuple(layers))

    def check(self, arch: Architecture) -> Architecture:
        """Validate ``arch`` against the space and this supernet's candidates and current FFN sizes."""
        self.space.validate(arch)
        for i, layer in enumerate(arch.layers):
            if (layer.block, layer.sharing) not in self.candidates:
                raise ValueError(f"layer {i}: ({layer.block!r}, {layer.sharing!r}) is not a candidate of this "
                                 f"supernet; expected one of {self.candidates}")
            have = self.ffn_dim(i, layer.block, layer.sharing)
            if layer.ffn_dim > have:
                raise ValueError(f"layer {i}: ffn_dim={layer.ffn_dim} exceeds the {have} units this supernet's "
                                 f"{layer.block}/{layer.sharing} block has grown so far")
        return arch

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, *,
                arch: Architecture, output_hidden_states=False, output_attentions=False,
                output_head_outputs=False, output_ffn_hidden=False) -> ElmModelOutput:
        self.check(arch)
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        blocks = [self.block(i, layer.block, layer.sharing) for i, layer in enumerate(arch.layers)]
        settings = [(layer.heads, layer.ffn_dim) for layer in arch.layers]
        return run_layers(x, blocks, settings, sdpa_mask(attention_mask), output_hidden_states,
                          output_attentions, output_head_outputs, output_ffn_hidden)

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.predictions(hidden)

    def extract(self, arch: Architecture, model_class=ElmModel, **config_overrides):
        """A standalone ``model_class`` (ElmModel or a task model) holding copies of the path's weights;
        an `ElmForMaskedLM` also gets the supernet's masked-LM head."""
        self.check(arch)
        keep = {k: getattr(self.config, k) for k in ("hidden_dropout_prob", "attention_probs_dropout_prob",
                                                     "layer_norm_eps", "hidden_act", "initializer_range")}
        model = model_class(self.space.config(arch, **{**keep, **config_overrides}))
        encoder = model if isinstance(model, ElmModel) else getattr(model, model.base_model_prefix)
        self._copy(self.embeddings, encoder.embeddings)
        for i, layer in enumerate(arch.layers):
            self._copy(self.block(i, layer.block, layer.sharing), encoder.encoder.layer[i])
        if hasattr(model, "predictions"):
            self._copy(self.predictions, model.predictions)
        return model

    @staticmethod
    def _copy(src: nn.Module, dst: nn.Module) -> None:
        source = src.state_dict()
        for name, tensor in dst.state_dict().items():
            copy_prefix_(tensor, source[name])

    def num_params(self) -> int:
        """Parameters of the embeddings and every candidate block now (grows with the FFNs); no MLM head."""
        return count_parameters([*self.embeddings.parameters(), *self.layers.parameters()])
