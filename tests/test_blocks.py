import pytest
import torch
from transformers import BertConfig, MobileBertConfig
from transformers.models.bert.modeling_bert import BertLayer
from transformers.models.mobilebert.modeling_mobilebert import MobileBertLayer

from elmlib.model.configuration_elm import ElmConfig
from elmlib.model.blocks import build_block
from elmlib.model.modeling_elm import sdpa_mask


def _config(**kw):
    base = dict(vocab_size=50, hidden_size=64, inner_size=16, embedding_size=16, layer_norm_eps=1e-5,
                layers=[dict(block="bert", sharing="none", ffn_dim=96, heads=4)])
    return ElmConfig(**{**base, **kw})


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(2, 9, 64, generator=g)
    mask = torch.ones(2, 9)
    mask[1, 6:] = 0
    additive = (1.0 - mask[:, None, None, :]) * torch.finfo(torch.float32).min  # transformers' eager form
    return h, mask, additive


def _perturb(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # move LayerNorm/bias off their 1/0 init so the comparison has teeth
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.mark.parametrize("need_attn", [False, True])
def test_bert_block_matches_transformers_bert_layer(need_attn):
    ref = BertLayer(BertConfig(hidden_size=64, num_attention_heads=4, intermediate_size=96, layer_norm_eps=1e-5,
                               attn_implementation="eager")).eval()
    _perturb(ref)
    block = build_block(_config(), "bert", "none", 96, 4).eval()
    block.load_state_dict(ref.state_dict(), strict=True)
    h, mask, additive = _inputs()
    expected = ref(h, attention_mask=additive)
    expected = expected[0] if isinstance(expected, tuple) else expected
    out = block(h, sdpa_mask(mask), need_attn=need_attn)
    assert torch.allclose(out.hidden, expected, atol=1e-5)
    if need_attn:
        assert torch.allclose(out.attn_probs.sum(-1), torch.ones(2, 4, 9), atol=1e-6)
        assert out.attn_probs[1, :, :, 6:].abs().max() == 0  # padded keys get no attention


@pytest.mark.parametrize("norm", ["layer_norm", "no_norm"])
@pytest.mark.parametrize("num_ffn", [1, 2])
def test_mobilebert_block_matches_transformers_mobilebert_layer(norm, num_ffn):
    ref = MobileBertLayer(MobileBertConfig(
        hidden_size=64, intra_bottleneck_size=16, true_hidden_size=16, num_attention_heads=4, intermediate_size=48,
        num_feedforward_networks=num_ffn, normalization_type=norm, layer_norm_eps=1e-5, hidden_act="gelu",
        attn_implementation="eager")).eval()
    _perturb(ref)
    block = build_block(_config(mobilebert_norm=norm, mobilebert_num_ffn=num_ffn), "mobilebert", "none", 48, 4).eval()
    block.load_state_dict(ref.state_dict(), strict=True)
    h, mask, additive = _inputs()
    expected = ref(h, attention_mask=additive)
    expected = expected[0] if isinstance(expected, tuple) else expected
    assert torch.allclose(block(h, sdpa_mask(mask)).hidden, expected, atol=1e-5)


@pytest.mark.parametrize("block_type", ["bert", "mobilebert"])
@pytest.mark.parametrize("sharing", ["qv", "kv"])
def test_sharing_removes_the_value_projection(block_type, sharing):
    cfg = _config()
    shared, plain = (build_block(cfg, block_type, s, 32, 4) for s in (sharing, "none"))
    assert not hasattr(shared.attention.self, "value")
    value_in = cfg.hidden_size  # an unshared value reads the hidden state in both block types
    width = cfg.hidden_size if block_type == "bert" else cfg.inner_size
    removed = sum(p.numel() for p in plain.parameters()) - sum(p.numel() for p in shared.parameters())
    assert removed == value_in * width + width


@pytest.mark.parametrize("sharing, partner", [("qv", "query"), ("kv", "key")])
def test_shared_weight_gets_the_sum_of_both_gradients(sharing, partner):
    """A shared block equals an unshared one whose value weight is a copy of the partner's, and the
    shared weight's gradient equals the sum of the two copies' gradients."""
    cfg = _config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    shared = build_block(cfg, "bert", sharing, 96, 4)
    plain = build_block(cfg, "bert", "none", 96, 4)
    state = shared.state_dict()
    state.update({f"attention.self.value.{k}": v for k, v in
                  shared.attention.self.get_submodule(partner).state_dict().items()})
    plain.load_state_dict(state)
    h, mask, _ = _inputs()
    out_s, out_p = shared(h, sdpa_mask(mask)).hidden, plain(h, sdpa_mask(mask)).hidden
    assert torch.allclose(out_s, out_p, atol=1e-6)
    out_s.square().sum().backward()
    out_p.square().sum().backward()
    got = shared.attention.self.get_submodule(partner).weight.grad
    want = plain.attention.self.get_submodule(partner).weight.grad + plain.attention.self.value.weight.grad
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("block_type, width", [("bert", 64), ("mobilebert", 16)])
def test_head_number_is_settable_per_call(block_type, width):
    block = build_block(_config(), block_type, "none", 32, 4).eval()
    h, mask, _ = _inputs()
    out4 = block(h, sdpa_mask(mask), heads=4, need_heads=True, need_attn=True)
    out2 = block(h, sdpa_mask(mask), heads=2, need_heads=True)
    assert out4.head_outputs.shape == (2, 4, 9, width // 4) and out4.attn_probs.shape == (2, 4, 9, 9)
    assert out2.head_outputs.shape == (2, 2, 9, width // 2)
    assert not torch.allclose(out4.hidden, out2.hidden)  # merging heads changes the attention
    with pytest.raises(ValueError, match="heads=3 does not divide the attention width"):
        block(h, heads=3)


def test_fast_path_equals_explicit_attention_and_ffn_activations_are_returned():
    block = build_block(_config(), "mobilebert", "kv", 32, 4).eval()
    h, mask, _ = _inputs()
    fast = block(h, sdpa_mask(mask))
    slow = block(h, sdpa_mask(mask), need_attn=True, need_ffn=True)
    assert torch.allclose(fast.hidden, slow.hidden, atol=1e-6)
    assert slow.ffn_hidden.shape == (2, 9, 32)


def test_elastic_ffn_uses_a_prefix_of_the_units():
    block = build_block(_config(), "bert", "none", 64, 4).eval()
    small = build_block(_config(), "bert", "none", 32, 4).eval()
    small.load_state_dict({k: v[tuple(slice(0, n) for n in small.state_dict()[k].shape)]
                           for k, v in block.state_dict().items()})
    h, mask, _ = _inputs()
    assert torch.allclose(block(h, sdpa_mask(mask), ffn_dim=32).hidden, small(h, sdpa_mask(mask)).hidden, atol=1e-6)
    with pytest.raises(ValueError, match="ffn_dim=72 exceeds this block's 64"):
        block(h, ffn_dim=72)
