"""The students of Table IV (paper Sec. V): the found architecture in a causal-LM space and the
all-BERT / all-MobileBERT paths with the same parameter count, built as fresh ``ElmForCausalLM``.

The ELM row's architecture comes from a search folder's ``arch.json`` (a GLUE search run folder, or
``causal_search``'s); without one it is a documented mix of all six blocks (not a search result), and
says so in its source.

    space = clm_space(cfg, vocab_size=len(tokenizer))
    archs = student_architectures(cfg, space, search_dir=None)   # {name: (architecture, where from)}
    model = build_student(space, archs["elm_found"][0], tokenizer, seed=0)
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from elmlib.extensions.causal_lm.config import ClmConfig
from elmlib.model.modeling_elm import ElmForCausalLM
from elmlib.nas.space import CANDIDATES, Architecture, LayerChoice, SearchSpace


def clm_space(cfg: ClmConfig, vocab_size: int) -> SearchSpace:
    """The students' space: the preset's widths with the teacher's vocabulary and a longer context."""
    return dataclasses.replace(SearchSpace.preset(cfg.space), vocab_size=vocab_size, type_vocab_size=1,
                               max_position_embeddings=cfg.max_position_embeddings)


def documented_architecture(space: SearchSpace) -> Architecture:
    """Used when no search run folder is given: a fixed mix of all six blocks (NOT a search result).

    Layer i takes candidate (2, 3, 0, 4, 1, 5, ...)[i % 6] -- BERT/K=V, MobileBERT, BERT, MobileBERT/Q=V,
    BERT/Q=V, MobileBERT/K=V -- at the middle FFN choice, all heads."""
    order = (2, 3, 0, 4, 1, 5)
    ffn = space.ffn_choices[len(space.ffn_choices) // 2]
    layers = [LayerChoice(*CANDIDATES[order[i % 6]], ffn, space.num_heads) for i in range(space.num_layers)]
    return space.validate(Architecture(tuple(layers)))


def found_architecture(space: SearchSpace, search_dir: str | Path | None) -> tuple[Architecture, str]:
    """(architecture, where from): ``arch.json`` of a search run folder (a GLUE search, or ``causal_search``,
    whose ``source`` field then leads the description), else the documented fallback."""
    if search_dir is None:
        return documented_architecture(space), "documented fallback (no search run folder)"
    path = Path(search_dir) / "arch.json"
    if not path.exists():
        raise ValueError(f"search_dir={str(search_dir)!r} has no arch.json; run `python -m elmlib search ... "
                         f"--run-dir {search_dir}` first, or pass search_dir=None for the documented fallback")
    record = json.loads(path.read_text())
    arch = Architecture.from_dict({"layers": record["layers"]})
    # a causal search's own description names its folder, not the machine's path to it
    return space.validate(arch), (f"{record['source']}: {path.parent.name}/{path.name}" if "source" in record
                                  else str(path))


def matched_uniform(space: SearchSpace, block: str, target: int) -> Architecture:
    """Every layer the same ``block`` with all heads; the FFN size (a multiple of the space's step, beyond
    the space's range if needed) and sharing (none, else Q=V when even the smallest FFN is too big)
    whose parameter count is closest to ``target`` (ties: no sharing)."""
    choices = range(space.ffn_step, 16 * space.ffn_max + 1, space.ffn_step)
    wide = dataclasses.replace(space, ffn_min=space.ffn_step, ffn_max=choices[-1])
    candidates = [Architecture.uniform(space.num_layers, block, sharing, f, space.num_heads)
                  for sharing in ("none", "qv") for f in choices]
    return min(candidates, key=lambda a: abs(wide.num_params(a) - target))  # min keeps the first of ties


def student_architectures(cfg: ClmConfig, space: SearchSpace, search_dir=None) -> dict[str, tuple[Architecture, str]]:
    """{name: (architecture, where from)} of Table IV's students: the found one and the all-BERT and
    all-MobileBERT paths matched to its parameter count."""
    found, source = found_architecture(space, search_dir)
    target = space.num_params(found)
    return {"elm_found": (found, source),
            "all_bert": (matched_uniform(space, "bert", target), f"uniform BERT, parameters matched to {target}"),
            "all_mobilebert": (matched_uniform(space, "mobilebert", target),
                               f"uniform MobileBERT, parameters matched to {target}")}


def build_student(space: SearchSpace, arch: Architecture, tokenizer, seed: int) -> ElmForCausalLM:
    """A fresh causal student; initialisation seeded without touching the caller's global RNG state."""
    wide = dataclasses.replace(space, ffn_min=space.ffn_step,  # matched baselines may leave the FFN range
                               ffn_max=max(space.ffn_max, *(l.ffn_dim for l in arch.layers)))
    config = wide.config(arch, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ElmForCausalLM(config)
