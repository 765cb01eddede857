import collections
import random

import pytest
import torch

import elmlib
from elmlib.nas.space import CANDIDATES, Architecture, LayerChoice, SearchSpace
from helpers import tiny_space


def test_presets_have_the_papers_widths():
    small = SearchSpace.preset("small")
    assert (small.num_layers, small.hidden_size, small.inner_size, small.num_heads) == (12, 528, 132, 12)
    assert small.ffn_choices == tuple(range(132, 1057, 132))
    micro = SearchSpace.preset("micro")
    assert (micro.num_layers, micro.hidden_size) == (6, 192)
    assert SearchSpace.preset("tiny").budget == 10e6 and micro.budget == 5e6 and small.budget == 15.7e6
    assert set(SearchSpace.presets()) == {"small", "tiny", "micro", "smoke"}
    with pytest.raises(ValueError, match="unknown search-space preset 'huge'.*micro"):
        SearchSpace.preset("huge")


def test_sample_is_uniform_over_the_six_blocks_and_uses_only_the_given_rng():
    space = SearchSpace.preset("small")
    counts = collections.Counter()
    for seed in range(300):
        counts.update(layer.candidate for layer in space.sample(random.Random(seed)).layers)
    total = sum(counts.values())  # 3600 draws; each candidate expects 600 (sd ~22)
    assert set(counts) == set(range(6))
    assert all(abs(c - total / 6) < 6 * (total * (1 / 6) * (5 / 6)) ** 0.5 for c in counts.values())
    random.seed(1)
    a = space.sample(random.Random(7))
    random.seed(2)
    assert space.sample(random.Random(7)) == a
    with pytest.raises(TypeError, match="random.Random"):
        space.sample(7)


def test_json_round_trip():
    space = SearchSpace.preset("small")
    for seed in range(20):
        arch = space.sample(random.Random(seed), uniform_ffn=True)
        assert Architecture.from_json(arch.to_json()) == arch
        assert Architecture.from_dict(arch.to_dict()) == arch
    assert SearchSpace.from_dict(space.to_dict()) == space


@pytest.mark.parametrize("change, message", [
    (dict(block="lstm"), r"layer 1: block='lstm' is not allowed; expected one of \('bert', 'mobilebert'\)"),
    (dict(sharing="qk"), r"layer 1: sharing='qk' is not allowed; expected one of \('none', 'qv', 'kv'\)"),
    (dict(ffn_dim=0), r"layer 1: ffn_dim=0 is not allowed"),
])
def test_architecture_rejects_bad_fields_naming_layer_field_value_and_allowed(change, message):
    base = Architecture.uniform(3, "bert", "none", 8, 4).layers[0]
    with pytest.raises(ValueError, match=message):
        Architecture((base, LayerChoice(**{**base.to_dict(), **change}), base))


@pytest.mark.parametrize("change, message", [
    (dict(ffn_dim=72), r"layer 1: ffn_dim=72 is not allowed; expected a multiple of 8 in \[8, 64\]"),
    (dict(ffn_dim=12), r"layer 1: ffn_dim=12 is not allowed; expected a multiple of 8 in \[8, 64\]"),
    (dict(heads=3), r"layer 1: heads=3 is not allowed for a bert block; expected a divisor of its attention "
                    r"width 32 up to 4"),
    (dict(block="mobilebert", heads=3), r"layer 1: heads=3 .* mobilebert .* width 8"),
])
def test_space_validation_errors(change, message):
    space = tiny_space()
    arch = Architecture.uniform(3, "bert", "none", 8, 4).replace_layer(1, **change)
    with pytest.raises(ValueError, match=message):
        space.validate(arch)


def test_wrong_layer_count_and_malformed_dicts():
    space = tiny_space()
    with pytest.raises(ValueError, match="architecture has 2 layers; the 'tiny-test' space has 3"):
        space.validate(Architecture.uniform(2, "bert", "none", 8, 4))
    with pytest.raises(ValueError, match=r"layer 0: fields \['block'\] do not match"):
        Architecture.from_dict({"layers": [{"block": "bert"}]})
    with pytest.raises(ValueError, match="expected {'layers'"):
        Architecture.from_dict([1, 2])


def test_bad_space_settings_name_the_field():
    with pytest.raises(ValueError, match="SearchSpace.hidden_size=0"):
        tiny_space(hidden_size=0)
    with pytest.raises(ValueError, match="num_heads=3 does not divide the bert attention width 32"):
        tiny_space(num_heads=3)
    with pytest.raises(ValueError, match="ffn_init: ffn_dim=12"):
        tiny_space(ffn_init=12)


@pytest.mark.parametrize("preset", ["small", "tiny", "micro", "smoke"])
def test_num_params_equals_the_exported_models_count(preset):
    space = SearchSpace.preset(preset)
    rng = random.Random(0)
    for _ in range(200):
        arch = space.sample(rng, uniform_ffn=True)
        arch = Architecture(tuple(  # random head numbers too: they must not change the count
            LayerChoice(l.block, l.sharing, l.ffn_dim, rng.choice(space.head_choices(l.block))) for l in arch.layers))
        with torch.device("meta"):  # shapes only: fast, no memory
            model = elmlib.ElmModel(space.config(arch))
        assert space.num_params(arch) == sum(p.numel() for p in model.parameters())
        assert space.num_non_embedding_params(arch) == sum(p.numel() for p in model.encoder.parameters())


def test_a_larger_vocabulary_and_its_padding_id_reach_the_model_and_the_count():
    """A RoBERTa-sized vocabulary (``SearchConfig.vocab_size``) sizes the embedding table and the tied masked-LM
    decoder, and counts against the budget; the padding id (RoBERTa's 1) is the row kept at zero."""
    space = SearchSpace.preset("smoke", vocab_size=50265, pad_token_id=1)
    arch = space.sample(random.Random(0), uniform_ffn=True)
    model = elmlib.ElmForMaskedLM(space.config(arch))
    table = model.elm.embeddings.word_embeddings
    assert table.num_embeddings == model.predictions.decoder.out_features == model.config.vocab_size == 50265
    assert table.padding_idx == model.config.pad_token_id == 1 and not table.weight[1].any()
    assert space.num_params(arch) == sum(p.numel() for p in model.elm.parameters())
    assert space.num_params(arch) - SearchSpace.preset("smoke").num_params(arch) == (50265 - 30522) * 32
    assert space.config(arch, pad_token_id=2).pad_token_id == 2  # an override wins (the causal LM's)
    with pytest.raises(ValueError, match=r"SearchSpace.pad_token_id=50265 is not allowed; expected a token id in "
                                         r"\[0, 50265\)"):
        SearchSpace.preset("smoke", vocab_size=50265, pad_token_id=50265)


def test_budgets_are_meaningful_for_the_paper_spaces():
    for preset in ("small", "tiny", "micro"):
        space = SearchSpace.preset(preset)
        smallest = Architecture.uniform(space.num_layers, "mobilebert", "kv", space.ffn_min, space.num_heads)
        largest = Architecture.uniform(space.num_layers, "bert", "none", space.ffn_max, space.num_heads)
        assert space.num_params(smallest) < space.budget < space.num_params(largest)


def test_candidate_indices_follow_figure_6():
    assert [CANDIDATES.index((b, s)) for b, s in CANDIDATES] == list(range(6))
    assert LayerChoice("mobilebert", "qv", 8, 4).candidate == 4
