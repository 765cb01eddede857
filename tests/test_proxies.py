"""Zero-cost proxies: capacity measures, sub-module roles, determinism, CV, the CLI, the notebook."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from elmlib.__main__ import main as cli
from elmlib.extensions.flexibert import FlexiArchitecture, LayerSpec, build_model, load_benchmark
from elmlib.extensions.proxies import (
    DEV_SETTINGS, PROXIES, Proxy, bert_role, effective_rank, layerwise_score, participation_rank, proxy_features,
    singular_values, zerolm_score,
)
from elmlib.extensions.proxy_benchmark import cross_validate, fit_setting, score_benchmark
from elmlib.repro.proxy_flexibert import BASELINES

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "proxy_flexibert.ipynb"
DEV_FILE = ROOT / "elmlib" / "benchmarks" / "flexibert_dev.json"


def gaussian(m, n, seed=0):
    return torch.randn(m, n, generator=torch.Generator().manual_seed(seed)) * 0.02


def test_capacity_measures_on_known_spectra():
    assert participation_rank(torch.eye(50)) == pytest.approx(50)
    assert participation_rank(torch.outer(torch.arange(1.0, 9), torch.arange(1.0, 5))) == pytest.approx(1, rel=1e-5)
    # two singular values 2 and 1: (4 + 1)^2 / (16 + 1)
    assert participation_rank(torch.diag(torch.tensor([2.0, 1.0]))) == pytest.approx(25 / 17)
    assert effective_rank(torch.ones(30)) == pytest.approx(30)
    assert effective_rank(torch.tensor([1.0, 0.0, 0.0])) == pytest.approx(1)
    w = gaussian(300, 120)
    assert torch.allclose(singular_values(w).sort().values.float(), torch.linalg.svdvals(w).sort().values, rtol=1e-4)


def test_sketched_participation_matches_exact():
    for m, n in [(1024, 1024), (512, 512), (1024, 512)]:
        w = gaussian(m, n, seed=m + n)
        exact = participation_rank(w)
        sketch = participation_rank(w, torch.Generator().manual_seed(0))
        assert sketch == pytest.approx(exact, rel=0.02)
        # Gaussian m x n (m >= n): sum s^4 / n^2 ~ m^2 (1 + n/m), so the ratio is ~ n m / (m + n)
        assert exact == pytest.approx(m * n / (m + n), rel=0.05)


def test_bert_roles():
    assert bert_role("encoder.layer.0.attention.self.query.weight") == "mixing"
    assert bert_role("encoder.layer.3.attention.output.dense.weight") == "mixing"
    assert bert_role("encoder.layer.3.attention.output.LayerNorm.weight") is None
    assert bert_role("encoder.layer.1.intermediate.dense.weight") == "ffn"
    assert bert_role("encoder.layer.1.intermediate.stack.1.weight") == "ffn"
    assert bert_role("encoder.layer.1.output.dense.weight") == "ffn"
    assert bert_role("bert.encoder.layer.1.output.dense.bias") == "ffn"
    assert bert_role("embeddings.word_embeddings.weight") is None
    assert bert_role("classifier.weight") is None


def test_proxies_apply_to_a_transformers_bert_model():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)  # transformers' own init uses the global RNG; only this test touches it
    model = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                 intermediate_size=64, max_position_embeddings=16))
    f = proxy_features(model)
    h, d = 32, 64
    assert f.mixing_params == 3 * (4 * (h * h + h))
    assert f.ffn_params == 3 * ((h * d + d) + (d * h + h))
    assert len(f.layer_mixing_capacity) == len(f.layer_ffn_capacity) == 3
    assert 0 < f.mixing_capacity <= 3 * 4 * h and 0 < f.ffn_capacity <= 3 * 2 * h
    assert f.nonemb_params == sum(p.numel() for n, p in model.named_parameters() if not n.startswith("embeddings"))


def arch(*layers, hidden=128):
    return FlexiArchitecture(hidden, tuple(LayerSpec(*spec) for spec in layers))


def test_features_are_deterministic_per_seed():
    a = arch(("SA", "WMA", 4, 1024, 3), ("DSC", 9, 2, 512, 1), hidden=256)
    f1 = proxy_features(build_model(a, seed=5), seed=5)
    f2 = proxy_features(build_model(a, seed=5), seed=5)
    f3 = proxy_features(build_model(a, seed=6), seed=6)
    assert f1 == f2
    assert f1.mixing_capacity != f3.mixing_capacity
    assert f1.params == f3.params
    assert layerwise_score(f1, 0.5) == layerwise_score(f2, 0.5)


def test_lt_layers_only_count_their_output_dense_as_mixing():
    f = proxy_features(build_model(arch(("LT", "DFT", 2, 512, 1), ("LT", "DCT", 4, 512, 1))))
    assert f.mixing_params == 2 * (128 * 128 + 128)


def test_depth_and_width_raise_the_recommended_score():
    two = proxy_features(build_model(arch(("SA", "SDP", 2, 512, 1), ("SA", "SDP", 2, 512, 1))))
    four = proxy_features(build_model(arch(*[("SA", "SDP", 2, 512, 1)] * 4)))
    wide = proxy_features(build_model(arch(("SA", "SDP", 2, 512, 1), ("SA", "SDP", 2, 512, 1), hidden=256)))
    for b in (0.0, 0.5, 1.0):
        assert layerwise_score(four, b) > layerwise_score(two, b)
        assert layerwise_score(wide, b) > layerwise_score(two, b)
    assert zerolm_score(four, 0.5) > zerolm_score(two, 0.5)


class _F:  # a stand-in for ProxyFeatures in the CV tests
    def __init__(self, x):
        self.x = x


def test_cross_validation_is_honest():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    target = x[:, 0] * 0.8 + x[:, 1] * 0.2
    proxy = Proxy("toy", lambda f, s: s * f.x[0] + (1 - s) * f.x[1], tuple(np.linspace(0, 1, 11)))
    feats = [_F(v) for v in x]
    assert fit_setting(feats, target, proxy) == pytest.approx(0.8)
    cv = cross_validate(feats, target, proxy, folds=4, repeats=3, seed=1)
    assert len(cv) == 12 and set(cv["n"]) == {20}
    assert cv["tau"].min() > 0.9 and cv["setting"].between(0.6, 1.0).all()
    noise = cross_validate(feats, rng.normal(size=80), proxy, folds=4, repeats=3, seed=1)
    assert abs(noise["rho"].mean()) < 0.25  # nothing to find: held-out folds do not reward the fit
    fixed = cross_validate(feats, target, Proxy("first", lambda f, _: f.x[0]), folds=4, repeats=1)
    assert fixed["setting"].isna().all()


def write_subset(path, records, drop_scores=False):
    records = json.loads(json.dumps(records))
    if drop_scores:
        for r in records:
            r.pop("scores")
    path.write_text(json.dumps(records))
    return path


def test_cli_end_to_end(tmp_path, capsys):
    records = json.loads(DEV_FILE.read_text())[10:22]
    data = write_subset(tmp_path / "subset.json", records)
    out = tmp_path / "scores.csv"
    assert cli(["proxy", "--benchmark", "flexibert", "--data", str(data), "--out", str(out), "--seed", "0"]) == 0
    df = pd.read_csv(out)
    assert list(df.columns[:2]) == ["id", "glue"] and {*PROXIES, "score"} <= set(df.columns)
    assert len(df) == 12 and df["id"].tolist() == [r["id"] for r in records]
    assert np.allclose(df["score"], df["layerwise"]) and df["params"].gt(1e6).all()
    assert json.loads(out.with_name("scores.provenance.json").read_text())["seed"] == 0
    printed = capsys.readouterr().out
    assert "spearman" in printed and "layerwise" in printed
    # the same file without scores, in the explicit --no-scores mode: no glue column, same proxy values
    bare = write_subset(tmp_path / "bare.json", records, drop_scores=True)
    cli(["proxy", "--data", str(bare), "--no-scores", "--out", str(tmp_path / "bare.csv")])
    bare_df = pd.read_csv(tmp_path / "bare.csv")
    assert "glue" not in bare_df and np.allclose(bare_df["score"], df["score"])


def test_cli_rejects_bad_file(tmp_path):
    bad = json.loads(DEV_FILE.read_text())[:2]
    bad[1]["hparams"]["model_hparam_overrides"]["hidden_size"] = 64
    data = write_subset(tmp_path / "bad.json", bad)
    with pytest.raises(ValueError, match=r"record id=\d+: FlexiBERT: hidden_size = 64"):
        cli(["--debug", "proxy", "--data", str(data), "--out", str(tmp_path / "x.csv")])
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.slow
def test_dev_settings_refit():
    """The settings the CLI uses are what fit_setting returns on the whole dev file (no drift)."""
    df, feats = score_benchmark(load_benchmark(), seed=0)
    for name, value in DEV_SETTINGS.items():
        assert fit_setting(feats, df["glue"].to_numpy(), PROXIES[name]) == value
    assert df.attrs["wall_time_s"] < 60


def test_notebook_has_parameters_cell_and_no_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    for name in ("scale", "seed", "run_dir", "out_dir"):
        assert f"{name} =" in source
    assert nb["cells"][0]["cell_type"] == "markdown"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [] and cell.get("execution_count") is None


@pytest.mark.notebooks
def test_notebook_runs_at_smoke_scale(tmp_path):
    import papermill as pm

    pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "executed.ipynb"), kernel_name="python3",
                        parameters=dict(scale="smoke", seed=0, run_dir=str(tmp_path / "run"),
                                        out_dir=str(tmp_path / "out")), cwd=str(ROOT / "notebooks"))
    table = pd.read_csv(tmp_path / "out" / "results" / "proxy_flexibert.csv")
    assert {"proxy", "metric", "value", "spread", "reference_value", "scale", "seed"} <= set(table.columns)
    assert set(table["proxy"]) == set(PROXIES) | set(BASELINES) and set(table["metric"]) == {"spearman", "kendall"}
    assert table["value"].between(-1, 1).all() and (table["scale"] == "smoke").all()
    cv = table[table["evaluation"].str.startswith("cv")]
    assert cv["spread"].between(0, 1).all()
    assert (tmp_path / "out" / "results" / "proxy_flexibert.provenance.json").exists()
    for ext in ("png", "pdf"):
        fig = tmp_path / "out" / "figures" / f"proxy_flexibert.{ext}"
        assert fig.exists() and fig.stat().st_size > 5000
