"""The FlexiBERT builder: parsing, every operation type, parameter counts, determinism."""
import hashlib
import json
from importlib import resources

import pytest
import torch

from elmlib.extensions.flexibert import (
    FlexiArchitecture, LayerSpec, LinearTransform, SelfAttention, SeparableConv, build_model, dct_matrix,
    load_benchmark, parse_record,
)

DEV_SHA256 = "7c4a7e0b18ccf96838b900cf4a815dfe250c16873e431afbdeae076c2dd2d4a3"


def layer(op="SA", param="SDP", heads=2, ff=512, nff=1):
    return LayerSpec(op, param, heads, ff, nff)


ONE_OF_EACH = [layer("SA", "SDP"), layer("SA", "WMA", 4), layer("LT", "DFT", 4, 1024, 3), layer("LT", "DCT"),
               layer("DSC", 5, 4), layer("DSC", 9, 2, 1024, 3)]


@pytest.fixture(scope="module")
def dev():
    return load_benchmark()


def test_packaged_copy_is_unchanged(dev):
    data = resources.files("elmlib.benchmarks").joinpath("flexibert_dev.json").read_bytes()
    assert hashlib.sha256(data).hexdigest() == DEV_SHA256
    assert len(dev) == 300 and all(55 < e.scores["glue"] < 76 for e in dev)


@pytest.mark.parametrize("spec", ONE_OF_EACH, ids=lambda s: f"{s.operation_type}-{s.operation_parameter}")
@pytest.mark.parametrize("hidden", [128, 256])
def test_every_operation_builds_and_runs(spec, hidden):
    arch = FlexiArchitecture(hidden, (spec, layer())).validate()
    model = build_model(arch, seed=0)
    ids = torch.randint(1, 1000, (2, 11), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 11)
    mask[1, 7:] = 0
    out = model(ids, mask)
    assert out.shape == (2, 11, hidden) and torch.isfinite(out).all()
    mixer = model.encoder.layer[0].attention.self
    expected = {"SA": SelfAttention, "LT": LinearTransform, "DSC": SeparableConv}[spec.operation_type]
    assert isinstance(mixer, expected)


def test_sampled_benchmark_architectures_build(dev):
    kinds = {"SA": SelfAttention, "LT": LinearTransform, "DSC": SeparableConv}
    for entry in dev[::15]:  # 20 architectures, every op type occurs
        model = build_model(entry.arch, seed=1)
        assert len(model.encoder.layer) == len(entry.arch.layers)
        for block, spec in zip(model.encoder.layer, entry.arch.layers):
            assert isinstance(block.attention.self, kinds[spec.operation_type])
            assert len(block.intermediate.stack) == spec.num_feed_forward - 1
            assert block.intermediate.dense.out_features == spec.feed_forward_dimension


def test_parameter_count_by_hand():
    arch = FlexiArchitecture(128, (layer("SA", "SDP", 2, 512, 1), layer("LT", "DFT", 4, 1024, 3)))
    n = sum(p.numel() for p in build_model(arch).parameters())
    h = 128
    embeddings = 30522 * 128 + 512 * 128 + 2 * 128 + 2 * 128       # word, position, type, LayerNorm; no projection
    sa = 3 * (h * h + h) + (h * h + h) + 2 * h                       # Q, K, V, output dense, LayerNorm
    ffn1 = (h * 512 + 512) + (512 * h + h) + 2 * h                   # h->512, 512->h, LayerNorm
    lt = 0 + (h * h + h) + 2 * h                                     # DFT has no weights; output dense, LayerNorm
    ffn3 = (h * 1024 + 1024) + 2 * (1024 * 1024 + 1024) + (1024 * h + h) + 2 * h
    assert n == embeddings + sa + ffn1 + lt + ffn3 == 6_550_656


def test_hidden_256_has_embedding_projection_and_wma_per_head():
    arch = FlexiArchitecture(256, (layer("SA", "WMA", 4), layer("SA", "SDP", 4)))
    model = build_model(arch)
    assert model.embeddings.project.weight.shape == (256, 128)
    wma, sdp = (b.attention.self for b in model.encoder.layer)
    assert wma.weight.shape == (4, 64, 64)
    assert sum(p.numel() for p in wma.parameters()) - sum(p.numel() for p in sdp.parameters()) == 4 * 64 * 64


def test_linear_transforms_are_parameter_free_and_correct():
    x = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(0))
    for kind in ("DFT", "DCT"):
        assert sum(p.numel() for p in LinearTransform(8, 2, kind).parameters()) == 0
    # one head: Re(FFT2) over (tokens, hidden), exactly FNet's mixing
    assert torch.allclose(LinearTransform(8, 1, "DFT")(x), torch.fft.fft2(x, dim=(-2, -1)).real, atol=1e-5)
    # two heads: each half of the channels is transformed on its own
    out = LinearTransform(8, 2, "DFT")(x)
    assert torch.allclose(out[..., 4:], torch.fft.fft2(x[..., 4:], dim=(-2, -1)).real, atol=1e-5)
    c = dct_matrix(7)
    assert torch.allclose(c @ c.T, torch.eye(7), atol=1e-6)
    # DCT-II definition, k=1 row: sqrt(2/n) cos(pi (2i+1) / 2n)
    i = torch.arange(7.0)
    assert torch.allclose(c[1], (2 / 7) ** 0.5 * torch.cos(torch.pi * (2 * i + 1) / 14), atol=1e-6)


def test_separable_conv_is_local_and_per_head():
    conv = build_model(FlexiArchitecture(128, (layer("DSC", 5, 2), layer())), seed=0).encoder.layer[0].attention.self
    assert conv.depthwise.weight.shape == (128, 1, 5) and conv.pointwise.weight.shape == (128, 64, 1)
    x = torch.zeros(1, 20, 128)
    x[0, 10] = 1.0  # an impulse only reaches tokens within kernel//2 = 2 positions
    y = conv(x) - conv.pointwise.bias  # remove the (zero) bias for clarity
    touched = (y.abs().sum(-1) > 0).nonzero()[:, 1].tolist()
    assert touched == [8, 9, 10, 11, 12]


def test_build_is_deterministic_and_leaves_global_rng_alone(dev):
    state = torch.random.get_rng_state()
    a, b, c = (build_model(dev[0].arch, seed=s) for s in (3, 3, 4))
    assert torch.equal(torch.random.get_rng_state(), state)
    for (n, p), (_, q), (_, r) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(p, q), n
    assert not torch.equal(a.encoder.layer[0].output.dense.weight, c.encoder.layer[0].output.dense.weight)
    w = a.encoder.layer[0].intermediate.dense.weight.detach()
    assert abs(float(w.std()) - 0.02) < 0.002 and float(a.encoder.layer[0].intermediate.dense.bias.detach().abs().sum()) == 0


def test_round_trip(dev):
    for e in dev[:5]:
        assert FlexiArchitecture.from_json(e.arch.to_json()) == e.arch
        assert FlexiArchitecture.from_dict(e.arch.to_dict()) == e.arch


def _record(**layer_overrides):
    rec = {"id": 7, "scores": {"glue": 70.0}, "hparams": {"model_hparam_overrides": {
        "hidden_size": 128, "nas_config": {"encoder_layers": [
            {"operation_type": "SA", "operation_parameter": "SDP", "num_operation_heads": 2,
             "feed_forward_dimension": 512, "num_feed_forward": 1} for _ in range(2)]}}}}
    rec["hparams"]["model_hparam_overrides"]["nas_config"]["encoder_layers"][1].update(layer_overrides)
    return rec


@pytest.mark.parametrize("overrides, words", [
    (dict(operation_type="CONV"), ["id=7", "encoder_layers[1].operation_type", "'CONV'", "'SA'", "'LT'", "'DSC'"]),
    (dict(operation_parameter=5), ["operation_parameter (for SA)", "5", "'SDP'", "'WMA'"]),
    (dict(operation_type="DSC", operation_parameter="5"), ["operation_parameter (for DSC)", "'5'", "[5, 9]"]),
    (dict(num_operation_heads=3), ["num_operation_heads", "3", "[2, 4]"]),
    (dict(feed_forward_dimension=2048), ["feed_forward_dimension", "2048", "[512, 1024]"]),
    (dict(num_feed_forward=True), ["num_feed_forward", "True", "[1, 3]"]),
    (dict(extra_field=1), ["unknown field", "extra_field"]),
])
def test_bad_records_give_clear_errors(overrides, words):
    with pytest.raises(ValueError) as err:
        parse_record(_record(**overrides))
    for word in words:
        assert word in str(err.value)


def test_bad_files_give_clear_errors(tmp_path):
    rec = _record()
    del rec["hparams"]["model_hparam_overrides"]["nas_config"]["encoder_layers"][0]["num_feed_forward"]
    with pytest.raises(ValueError, match=r"encoder_layers\[0\] lacks field\(s\) \['num_feed_forward'\]"):
        parse_record(rec)
    bad_hidden = _record()
    bad_hidden["hparams"]["model_hparam_overrides"]["hidden_size"] = 512
    with pytest.raises(ValueError, match=r"hidden_size = 512 .* \[128, 256\]"):
        parse_record(bad_hidden)
    with pytest.raises(ValueError, match="lacks hparams.model_hparam_overrides"):
        parse_record({"id": 1, "hparams": {}})
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="JSON list"):
        load_benchmark(path)
    path.write_text(json.dumps([_record(), _record()]))
    with pytest.raises(ValueError, match="duplicate"):
        load_benchmark(path)
