"""The paper's notebooks: stored clean and thin (default tier); executed end to end at the smoke scale
through papermill in a temporary folder (``notebooks`` tier); and the helpers they call."""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from elmlib.io.files import workspace
from elmlib.pipeline.config import resolve_config
from elmlib.repro import experiments, paper, plots, report
from elmlib.repro.figsave import save
from elmlib.repro.run_records import record_runs, restore_runs
from elmlib.repro.figures import ablations, architectures, efficiency, glue, growth, search_variants, similarity, squad
from elmlib.nas.space import Architecture, SearchSpace

ROOT = Path(__file__).resolve().parent.parent
# The paper's notebooks and proxy_search, in dependency order: executed by this file's notebooks tier.
NOTEBOOKS = ["table3_squad", "fig1_ffn_growth", "fig2_pca_curves", "fig3a_cka_heads", "fig5_architectures",
             "table1_2_glue", "table5_8_ablations", "fig3b_block_similarity", "fig6_block_similarity_matrix",
             "efficiency", "proxy_search", "importance_search"]
# Notebooks with their own execution tests (test_proxies, test_importance, test_causal_lm).
OTHERS = ["proxy_flexibert", "importance_reordering", "table4_clm"]
# Notebooks for users' own work, not part of `make reproduce` (tests/test_search_your_data.py runs it).
USERS = ["search_your_data"]


def load(name):
    return json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())


# --------------------------------------------------------------------------- stored notebooks (default tier)

def test_make_reproduce_runs_every_notebook_in_dependency_order():
    stored = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb") if p.stem not in USERS)
    assert set(NOTEBOOKS) <= set(stored) and set(stored) <= set(NOTEBOOKS + OTHERS)
    make = (ROOT / "Makefile").read_text()
    listed = re.search(r"NOTEBOOKS := (.*?)\nSEEDED", make, re.S).group(1).replace("\\", " ").split()
    assert [n for n in listed if n in NOTEBOOKS] == NOTEBOOKS and sorted(listed) == stored


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_stored_notebook_is_clean_with_one_parameters_cell(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown"
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1
    assert {"scale", "seed", "run_dir", "out_dir"} <= set(re.findall(r"^(\w+) = ", "".join(params[0]["source"]), re.M))
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in cells if c["cell_type"] == "code")
    ids = [c.get("id") for c in cells]  # nbformat 4.5 requires them; without, papermill warns and Jupyter rewrites
    assert None not in ids and len(set(ids)) == len(ids)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_notebook_is_clean_and_thin(name):
    nb = load(name)
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{name}: expected exactly one cell tagged 'parameters', found {len(params)}"
    names = set(re.findall(r"^(\w+) = ", "".join(params[0]["source"]), re.M))
    assert {"scale", "seed", "task", "run_dir", "out_dir", "results_dir", "figures_dir", "precision"} <= names
    assert re.search(r'^scale = "smoke"', "".join(params[0]["source"]), re.M)
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    for c in cells:
        if c["cell_type"] == "code":
            assert c["outputs"] == [] and c["execution_count"] is None, f"{name}: stored with outputs"
    assert "!pip" not in code and "input(" not in code and "def " not in code
    assert not re.search(r"[\"']/(root|tmp|work|home)/", code), f"{name}: a machine path"
    assert f'results / "{name}.csv"' in code and f'"{name}", figures' in code
    assert nb["metadata"]["kernelspec"]["name"] == "elmlib"


@pytest.mark.parametrize("name", OTHERS)
def test_notebooks_with_their_own_presets_use_the_kernel_and_accept_every_scale(name):
    from elmlib.extensions.causal_lm.config import CLM_SCALES
    from elmlib.repro import importance_study, proxy_flexibert
    presets = {"proxy_flexibert": proxy_flexibert.SCALES, "importance_reordering": importance_study.SCALES,
               "table4_clm": CLM_SCALES}[name]
    nb = load(name)
    assert nb["metadata"]["kernelspec"]["name"] == "elmlib"
    params = "".join(next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))["source"])
    assert set(presets) == {"smoke", "micro", "small", "paper"}
    assert "smoke | micro | small | paper" in params
    assert {"results_dir", "figures_dir"} <= set(re.findall(r"^(\w+) = ", params, re.M))


# --------------------------------------------------------------------------- paper numbers, helpers

def test_paper_numbers_as_transcribed():
    t2 = paper.table("table2")
    assert t2.query("model == 'ELM-Small' and task == 'AVG'").value.item() == 82.0
    assert t2.query("model == 'AutoBERT-Zero-small'").task.tolist() == ["AVG"]
    t1 = paper.table("table1")
    assert len(t1) == 8 * 10 and t1.query("model == 'ELM-Small' and task == 'AVG'").latency_ms.item() == 48
    assert paper.ablation_value("kd", "ELM-Micro", with_it=False) == 73.8
    assert len(paper.table("ablations")) == 4 * 2 * 2 and len(paper.table("table3")) == 6 * 4
    assert paper.paper_model("smoke") == "ELM-Micro" and paper.paper_model("small", 10e6) == "ELM-Tiny"
    with pytest.raises(ValueError, match="table='t9' is not allowed"):
        paper.table("t9")
    with pytest.raises(ValueError, match="ablation='x' is not allowed"):
        paper.ablation_value("x", "ELM-Micro")


def test_largest_uniform_baseline_is_the_biggest_that_fits():
    space = SearchSpace.preset("micro")
    for block in ("bert", "mobilebert"):
        arch = experiments.largest_uniform(space, 5.2e6, block)
        assert space.num_params(arch) <= 5.2e6 and len({l.ffn_dim for l in arch.layers}) == 1
        f = arch.layers[0].ffn_dim
        if f < space.ffn_max:
            bigger = Architecture.uniform(space.num_layers, block, "none", f + space.ffn_step, space.num_heads)
            assert space.num_params(bigger) > 5.2e6
    assert experiments.largest_uniform(space, 5.2e6, "bert").layers[0].ffn_dim == 96  # 5.11M; 144 gives 5.23M
    with pytest.raises(ValueError, match="no uniform bert/none architecture"):
        experiments.largest_uniform(SearchSpace.preset("small"), 15.7e6, "bert")
    # smoke: 4 unshared BERT layers of width 64 exceed 1.05M, the Q=V variant fits
    smoke = experiments.baseline_archs(resolve_config("smoke"))
    assert set(smoke) == {"all-BERT (Q=V)", "all-MobileBERT"}
    assert smoke["all-MobileBERT"].layers[0].ffn_dim == 128  # the largest in the space still fits
    # small: no uniform BERT path fits 15.7M at all, so only the MobileBERT baseline is left
    assert set(experiments.baseline_archs(resolve_config("small"))) == {"all-MobileBERT"}


def test_experiment_arguments_are_checked(tmp_path, monkeypatch):
    assert experiments.seeds_of(2, 3) == [2, 3, 4]
    with pytest.raises(ValueError, match="n_seeds=0 is not allowed"):
        experiments.seeds_of(0, 0)
    with pytest.raises(ValueError, match="ablation='nope' is not allowed"):
        experiments.ablation_run("nope", "smoke", root=tmp_path)
    with pytest.raises(ValueError, match="model='ELM-Huge' is not allowed"):
        experiments.model_run("ELM-Huge", "smoke", root=tmp_path)
    assert experiments.run_path("smoke", 1, "main", tmp_path) == tmp_path / "smoke-seed1" / "main"
    assert experiments.output_dirs(tmp_path) == (tmp_path / "results", tmp_path / "figures")
    assert experiments.output_dirs(tmp_path, "micro") == (tmp_path / "results", tmp_path / "figures")
    assert experiments.output_dirs(tmp_path, "micro", results=tmp_path / "r") == (tmp_path / "r", tmp_path / "figures")
    assert experiments.output_dirs("", "small", figures=tmp_path / "f")[1] == tmp_path / "f"
    # The folders are arguments: the environment of a notebook's kernel does not move them.
    monkeypatch.setenv("ELMLIB_RESULTS", str(tmp_path / "r"))
    monkeypatch.setenv("ELMLIB_RUNS", str(tmp_path / "runs"))
    # Scales other than smoke get their own subfolders, so the tables of each scale live side by side.
    assert experiments.output_dirs("", "smoke") == (workspace() / "results", workspace() / "figures")
    assert experiments.output_dirs("", "micro") == (workspace() / "results" / "micro", workspace() / "figures" / "micro")
    assert experiments.runs_root() == workspace() / "runs"
    assert experiments.config("smoke", 3, kd="classical").seed == 3
    with pytest.raises(ValueError, match="variant='nope' is not allowed"):
        experiments.importance_run("nope", "smoke", root=tmp_path)


def test_micro_scale_is_the_elm_micro_space_with_baselines_that_fit():
    cfg = experiments.config("micro", 0, "rotten_tomatoes")
    assert (cfg.space, cfg.budget, cfg.task) == ("micro", 5e6, "rotten_tomatoes")
    assert paper.paper_model("micro") == "ELM-Micro" and experiments.MODELS["micro"] == {"ELM-Micro": None}
    archs = experiments.baseline_archs(cfg)
    assert archs and all(cfg.search_space().num_params(a) <= cfg.budget for a in archs.values())
    with pytest.raises(ValueError, match="elastic_widths=0 is not allowed"):
        experiments.config("micro", elastic_widths=0)


def fake_run(folder: Path) -> Path:
    """A run folder with the CSVs stage 1 writes, for 2 layers x 2 blocks over 2 epochs."""
    folder.mkdir(parents=True)
    rows = [dict(epoch=e, layer=l, block=b, block_type=["bert", "mobilebert"][b // 3], sharing="none",
                 ffn_dim=16 + 16 * (e == 1 and (l, b) == (0, 0)), score=10 + l + e) for e in (0, 1)
            for l in (0, 1) for b in (0, 3)]
    pd.DataFrame(rows).to_csv(folder / "pca_scores.csv", index=False)
    pd.DataFrame([dict(epoch=0, layer=0, block=0, block_type="bert", sharing="none", old_ffn_dim=16, new_ffn_dim=32,
                       score=10, supernet_params=1), dict(epoch=1, layer=0, block=0, block_type="bert",
                                                          sharing="none", old_ffn_dim=32, new_ffn_dim=48, score=11,
                                                          supernet_params=2)]).to_csv(folder / "growth.csv", index=False)
    sims = [dict(layer=l, block_i=i, block_j=j, similarity=1.0 if i == j else 0.5 + 0.1 * l, kd="relational")
            for l in (0, 1) for i in (0, 3) for j in (0, 3)]
    pd.DataFrame(sims).to_csv(folder / "block_similarity.csv", index=False)
    for stage, s in (("pretrain", 10.0), ("finetune", 5.0), ("search", 1.0), ("retrain", 99.0)):
        (folder / f"{stage}.done.json").write_text(json.dumps({"stage": stage, "seconds": s}))
    return folder


def test_tables_from_run_folders(tmp_path):
    run = fake_run(tmp_path / "run")
    grown = growth.fig1_table(run, "smoke", 0)
    dims = grown.query("layer == 0 and block == 0").sort_values("epoch").ffn_dim.tolist()
    assert dims == [16, 32, 48]  # start, after epoch 0, after epoch 1
    assert grown.query("layer == 1").ffn_dim.eq(16).all()
    sim = similarity.fig3b_table({"relational": run}, "smoke", 0)
    assert sim.similarity.tolist() == pytest.approx([0.5, 0.6])  # off-diagonal only
    eff = efficiency.efficiency_table({"dynamic": run, "fixed": run}, "smoke", 0)
    assert set(eff.stage) == {"pretrain", "finetune", "search"} and eff.seconds.sum() == 32.0


def test_ablation_deltas_and_report(tmp_path):
    rows = []
    for seed, (w, wo) in enumerate(((0.70, 0.60), (0.72, 0.66))):
        for variant, v in (("with", w), ("without", wo)):
            rows.append(dict(scale="smoke", seed=seed, ablation="kd", variant=variant, task="boolq",
                             metric="accuracy", value=v, params=1))
    df = ablations.table5_8_table(pd.DataFrame(rows), "smoke")
    deltas = ablations.ablation_deltas(df)
    assert deltas.delta.tolist() == pytest.approx([0.10, 0.06])
    assert deltas.paper_delta.iloc[0] == pytest.approx(75.0 - 73.8)
    df.to_csv(tmp_path / "table5_8_ablations.csv", index=False)
    sim = [dict(scale="smoke", seed=seed, kd=kd, layer=layer, similarity=0.9 - 0.01 * (kd == "relational") * layer)
           for seed in (0, 1) for kd in ("classical", "relational") for layer in (0, 1)]
    pd.DataFrame(sim).to_csv(tmp_path / "fig3b_block_similarity.csv", index=False)
    text = report.report(tmp_path)
    assert "| VII | kd | +8.0 ± 2.8 (n=2) | +1.2 |" in text
    assert "classical KD 0.900, relational KD 0.895; relational below classical in 2 of 4 (seed, layer) pairs" in text
    assert plots.render_all(tmp_path, tmp_path / "fig") == ["fig3b_block_similarity", "table5_8_ablations"]
    assert (tmp_path / "fig" / "table5_8_ablations.png").stat().st_size > 1000


def test_fig5_summary_and_report(tmp_path):
    layers = [("bert", "none", 64, 4), ("mobilebert", "kv", 128, 2), ("mobilebert", "qv", 128, 3)]
    df = pd.DataFrame([dict(model="ELM-Small", seed=0, layer=i, block=b, sharing=s, ffn_dim=f, heads=h,
                            params=2_500_000) for i, (b, s, f, h) in enumerate(layers)])
    row = architectures.fig5_summary(df).iloc[0]
    assert (row.bert, row.mobilebert, row["none"], row.qv, row.kv) == (1, 2, 1, 1, 1)
    assert row.mean_heads == pytest.approx(3.0)
    assert (row.widest_ffn, row.widest_layer) == (128, 2)  # first of the tied widest, 1-based
    df.to_csv(tmp_path / "fig5_architectures.csv", index=False)
    assert "| ELM-Small | 0 | 2.50M | 1 / 2 | 1 / 1 / 1 | 3.0 | 128 (2) |" in report.report(tmp_path)


def test_efficiency_plot_shows_the_ratio_of_means_and_each_seed():
    seconds = {(0, "dynamic"): 100.0, (0, "fixed"): 150.0, (1, "dynamic"): 200.0, (1, "fixed"): 150.0}
    df = pd.DataFrame([dict(variant=v, stage="pretrain", seconds=t, paper_gpu_days=paper.SEARCH_COST_GPU_DAYS[v],
                            scale="small", seed=k) for (k, v), t in seconds.items()])
    ratio_panel = efficiency.plot_efficiency(df).axes[1]
    assert ratio_panel.patches[0].get_height() == pytest.approx(300 / 300)  # total fixed / total dynamic
    assert ratio_panel.patches[1].get_height() == pytest.approx(8.5 / 7.1)
    assert sorted(ratio_panel.collections[0].get_offsets()[:, 1]) == pytest.approx([0.75, 1.5])


def test_importance_plot_marks_the_dev_set_standard_error():
    rows = [dict(variant=v, metric="accuracy", value=x, n_dev=1000, mean_ffn_dim=100.0, task="rotten_tomatoes",
                 scale="small", seed=0) for v, x in [("grown widths", 0.771), ("elastic widths", 0.776)]]
    panel = search_variants.plot_importance_search(pd.DataFrame(rows)).axes[0]
    bars = [c for c in panel.containers if c.get_label().startswith("±1 s.e.")]
    half_widths = [seg[1, 1] - seg[0, 1] for seg in bars[0].lines[2][0].get_segments()]
    assert [w / 2 for w in half_widths] == pytest.approx([(0.771 * 0.229 / 1000) ** 0.5, (0.776 * 0.224 / 1000) ** 0.5])
    no_bars = search_variants.plot_importance_search(pd.DataFrame(rows).assign(metric="f1")).axes[0]
    assert not no_bars.containers  # no binomial error outside accuracy


def test_proxy_search_plot_marks_the_dev_set_standard_error_of_accuracy_only():
    rows = [dict(mode=m, supernet_seconds=10.0, evolution_seconds=5.0, metric="accuracy", value=x, n_dev=400,
                 task="rotten_tomatoes", scale="small", seed=k)
            for k in (0, 1) for m, x in [("supernet", 0.70 + k / 100), ("proxy_only", 0.60)]]
    panel = search_variants.plot_proxy_search(pd.DataFrame(rows)).axes[1]
    bars = [c for c in panel.containers if c.get_label().startswith("±1 s.e.")]
    half_widths = [seg[1, 1] - seg[0, 1] for seg in bars[0].lines[2][0].get_segments()]
    assert [w / 2 for w in half_widths] == pytest.approx([(0.705 * 0.295 / 400) ** 0.5, (0.6 * 0.4 / 400) ** 0.5])
    # CSVs written before n_dev was recorded still plot, without bars.
    assert not search_variants.plot_proxy_search(pd.DataFrame(rows).drop(columns="n_dev")).axes[1].containers


def test_squad_table_never_invents_our_numbers():
    df = squad.table3_table("smoke", 0, "not run: requires hub data")
    ours = df[df.source == "ours"]
    assert len(ours) == 4 and ours.value.isna().all() and (ours.status == "not run: requires hub data").all()
    assert ours.paper_value.tolist() == list(paper.TABLE3["ELM-Micro"])


# --------------------------------------------------------------------------- executed notebooks (notebooks tier)

# Columns each results CSV must have, and a check of its values.
EXPECTED = {
    "table3_squad": ({"source", "model", "task", "metric", "value", "status", "paper_value", "scale", "seed"},
                     lambda d: d[d.source == "paper"].value.between(0, 100).all()),
    "fig1_ffn_growth": ({"epoch", "layer", "block", "ffn_dim", "grown", "scale", "seed"},
                        lambda d: (d.ffn_dim >= 16).all() and (d.ffn_dim <= 128).all() and (d.ffn_dim % 16 == 0).all()),
    "fig2_pca_curves": ({"epoch", "layer", "block", "block_type", "score", "scale", "seed"},
                        lambda d: (d.score >= 1).all() and (d.score <= d.ffn_dim).all()),
    "fig3a_cka_heads": ({"layer", "head_i", "head_j", "cka", "heads_before", "heads_after"},
                        lambda d: d.cka.between(-1e-4, 1 + 1e-4).all() and (d.heads_after <= d.heads_before).all()),
    "fig5_architectures": ({"model", "layer", "block", "sharing", "ffn_dim", "heads", "params", "seed"},
                           lambda d: (d.params <= 1.05e6).all() and len(d) == 4),
    "table1_2_glue": ({"model", "metric", "value", "params", "latency_ms", "paper_value", "scale", "seed"},
                      lambda d: d.value.between(0, 1).all() and (d.params <= 1.05e6).all() and d.model.nunique() == 4),
    "table1_2_suite": ({"model", "suite", "search_task", "task", "metric", "value", "paper_value", "scale", "seed"},
                       lambda d: d.value.between(0, 100).all() and d.model.nunique() == 4
                       and list(dict.fromkeys(d.task)) == ["boolq", "rotten_tomatoes", "trec", "sms_spam", "crowdflower",
                                                          "AVG"]),
    "table5_8_ablations": ({"ablation", "variant", "metric", "value", "paper_value", "scale", "seed"},
                           lambda d: d.value.between(0, 1).all() and set(d.ablation) == set(paper.ABLATIONS)),
    "fig3b_block_similarity": ({"kd", "layer", "similarity", "scale", "seed"},
                               lambda d: set(d.kd) == {"classical", "relational"} and d.similarity.between(-1, 1).all()),
    "fig6_block_similarity_matrix": ({"kd", "block_i", "block_j", "similarity"},
                                     lambda d: len(d) == 2 * 36 and d.similarity.between(-1 - 1e-4, 1 + 1e-4).all()),
    "efficiency": ({"variant", "stage", "seconds", "paper_gpu_days", "scale", "seed"},
                   lambda d: set(d.variant) == {"dynamic", "fixed"} and (d.seconds > 0).all()),
    "proxy_search": ({"mode", "search_seconds", "evaluations", "params", "metric", "value", "n_dev", "scale", "seed"},
                     lambda d: list(dict.fromkeys(d["mode"])) == ["supernet", "proxy_assisted", "proxy_only"]
                     and d.value.between(0, 1).all() and (d.params <= 1.05e6).all()
                     and d.set_index("mode").search_seconds["proxy_only"] < d.set_index("mode").search_seconds["supernet"]),
    "importance_search": ({"variant", "metric", "value", "search_score", "mean_ffn_dim", "params", "scale", "seed"},
                          lambda d: list(dict.fromkeys(d.variant)) == list(experiments.IMPORTANCE_VARIANTS)
                          and d.value.between(0, 1).all() and (d.params <= 1.05e6).all()
                          and d.mean_ffn_dim.between(16, 128).all()),
}


@pytest.mark.notebooks
def test_notebooks_execute_at_smoke_scale(tmp_path):
    pm = pytest.importorskip("papermill")
    env = {"ELMLIB_RESULTS": str(tmp_path / "stray-results"), "ELMLIB_FIGURES": str(tmp_path / "stray-figures"),
           "ELMLIB_RUNS": str(tmp_path / "stray-runs")}
    old = {k: os.environ.get(k) for k in env}
    # The kernel inherits these: the shared teacher table (results/teachers.csv) stays out of the repository,
    # and every other output goes where the notebook's parameters say.
    os.environ.update(env)
    kernel = "elmlib" if "elmlib" in subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list"],
                                                    capture_output=True, text=True).stdout else "python3"
    def execute(name, out):
        pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}-{out}.ipynb"),
                            parameters=dict(scale="smoke", run_dir=str(tmp_path / "runs"),
                                            out_dir=str(tmp_path / out)), kernel_name=kernel,
                            cwd=str(tmp_path), progress_bar=False)

    try:
        for name in NOTEBOOKS:
            execute(name, "out")
        # Run records: record -> delete the run folders -> restore -> the same tables, nothing recomputed.
        record_runs(tmp_path / "runs", "smoke", tmp_path / "records")
        shutil.rmtree(tmp_path / "runs")
        restore_runs(tmp_path / "records", tmp_path / "runs", "smoke")
        restored = ("fig2_pca_curves", "table1_2_glue", "table5_8_ablations", "efficiency")
        for name in restored:
            execute(name, "again")
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    for name, (columns, check) in EXPECTED.items():
        df = pd.read_csv(tmp_path / "out" / "results" / f"{name}.csv")
        assert columns <= set(df.columns), f"{name}: missing {columns - set(df.columns)}"
        assert len(df) and check(df), f"{name}: values out of range"
        assert (df.scale == "smoke").all() if "scale" in df else True
        prov = json.loads((tmp_path / "out" / "results" / f"{name}.provenance.json").read_text())
        assert prov["config"]["scale"] == "smoke" and prov["git_commit"]
        for ext in ("png", "pdf"):
            assert (tmp_path / "out" / "figures" / f"{name}.{ext}").stat().st_size > 1000
    assert not (tmp_path / "stray-results").exists() or {p.name for p in (tmp_path / "stray-results").iterdir()} <= \
        {"teachers.csv", "teachers.provenance.json", ".teachers.csv.lock"}
    assert not math.isnan(pd.read_csv(tmp_path / "out" / "results" / "efficiency.csv").seconds.sum())
    for name in restored + ("table1_2_suite",):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "results" / f"{name}.csv"),
                                      pd.read_csv(tmp_path / "out" / "results" / f"{name}.csv"))
    assert not list((tmp_path / "runs").rglob("*.safetensors"))  # rendered from the records alone
    collapse = pd.read_csv(tmp_path / "out" / "results" / "kd_feature_collapse.csv")  # Table VII's extra cell
    assert sorted(collapse.kd.unique()) == ["classical", "relational"] and len(collapse) == 4
    assert collapse.centroid_cosine.between(-1, 1.0001).all()


def test_epoch_tables_survive_epochs_without_rows(tmp_path):
    """The fixed-dims ablation grows nothing: growth.csv stays empty over several epochs."""
    from elmlib.pipeline.stages.supernet import upsert_epoch_rows

    path = tmp_path / "growth.csv"
    upsert_epoch_rows(path, [], 0)
    upsert_epoch_rows(path, [], 1)
    upsert_epoch_rows(path, [dict(epoch=2, layer=0, block=1)], 2)
    assert pd.read_csv(path).to_dict("records") == [dict(epoch=2, layer=0, block=1)]


def test_saved_figures_are_byte_identical_on_rerender(tmp_path):
    """No creation date in the PDF: re-rendering unchanged results leaves git with nothing to commit."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    first = [p.read_bytes() for p in save(fig, "line", tmp_path / "a")]
    time.sleep(1.1)  # a PDF creation date has one-second resolution
    again = [p.read_bytes() for p in save(fig, "line", tmp_path / "b")]
    plt.close(fig)
    assert first == again and all(len(b) > 1000 for b in first)
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no temporary files left


def test_fig6_colour_scale_resolves_near_one_similarities():
    """At our scales every block pair lies within a few hundredths of 1: the diagonal (1 by definition) is
    masked, both KD panels share one colour scale over the off-diagonal range, and a third panel shows
    classical - relational on a scale centred at 0."""
    import matplotlib.pyplot as plt
    import numpy as np

    pairs = [(i, j) for i in range(3) for j in range(3)]
    df = pd.DataFrame([dict(layer=5, block_i=i, block_j=j, kd=kd, scale="micro", seed=0,
                            similarity=1.0 if i == j else base + 0.001 * (i + j))
                       for kd, base in (("classical", 0.985), ("relational", 0.967)) for i, j in pairs])
    fig = similarity.plot_fig6(df)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    plt.close(fig)
    assert len(images) == 3
    assert [tuple(round(c, 6) for c in im.get_clim()) for im in images[:2]] == [(0.968, 0.988)] * 2
    low, high = images[2].get_clim()
    assert low == -high and round(high, 6) == 0.018
    assert all(np.isnan(np.diag(np.asarray(im.get_array(), dtype=float))).all() for im in images)


def test_table1_2_size_panel_names_every_model_and_seed():
    """The found model's inherited and from-scratch rows share a size, and averaged over seeds their latencies
    can coincide: the size panel shows every (model, seed) point and names models in a legend, so no label
    overprints another."""
    import matplotlib.pyplot as plt

    rows = [dict(scale="small", seed=s, model=m, task="rotten_tomatoes", metric="accuracy", value=0.75 + 0.01 * s,
                 params=11e6 + 5e5 * s, latency_ms=30.0 + s) for s in (0, 1)
            for m in ("ELM (found, supernet weights inherited; not in the paper)", "ELM (found, from scratch)",
                      "all-MobileBERT")]
    fig = glue.plot_table1_2(pd.DataFrame(rows))
    size_panel = fig.axes[1]
    labels = [t.get_text() for t in size_panel.get_legend().get_texts()]
    points = sum(len(c.get_offsets()) for c in size_panel.collections)
    plt.close(fig)
    assert labels == ["ELM found (inherited)", "ELM found (scratch)", "all-MobileBERT"]
    assert points == 6


def test_each_claim_notebook_ends_with_its_findings_from_the_ledger():
    from elmlib.repro import ledger

    for name in ledger.NOTEBOOK_CLAIMS:
        last = "".join(load(name)["cells"][-1]["source"])
        assert f'ledger.findings("{name}", results, scale)' in last, name
    text = ledger.findings("table5_8_ablations", ROOT / "results" / "small", "small")
    assert text.count("| Table V: ") == 1 and text.count("| Table VI") == 3 and "seeds would resolve it" in text
    with pytest.raises(ValueError, match="answers no claim"):
        ledger.findings("fig1_ffn_growth", ROOT / "results", "smoke")
    for p in (ROOT / "notebooks").glob("*.ipynb"):  # run times live in docs/running.md, linked once
        assert "Expected run time" not in p.read_text(), p.name


@pytest.mark.parametrize("scale", ["smoke", "micro", "small"])
def test_committed_figures_are_what_the_committed_csvs_draw(scale, tmp_path):
    """`elmlib figures` on a scale's committed CSVs redraws its committed figures byte for byte, so no
    committed figure is stale (a CSV changed without its figure, or the plotting code without both)."""
    import matplotlib

    sub = "" if scale == "smoke" else scale
    made_with = re.search(rb"Matplotlib version([0-9.]+)", (ROOT / "figures" / sub / "fig2_pca_curves.png").read_bytes())
    if made_with is None or made_with.group(1).decode() != matplotlib.__version__:
        pytest.skip(f"the committed figures were drawn by another matplotlib ({made_with and made_with.group(1)}); "
                    f"bytes are comparable only under the same version ({matplotlib.__version__} here)")
    out = subprocess.run([sys.executable, "-m", "elmlib", "figures", "--results", str(ROOT / "results" / sub),
                          "--figures", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    drawn = sorted(p.name for p in tmp_path.iterdir())
    assert len(drawn) >= 2 * 12, drawn
    stale = [name for name in drawn if (tmp_path / name).read_bytes() != (ROOT / "figures" / sub / name).read_bytes()]
    assert not stale, f"figures/{sub} differs from what results/{sub} draws: {stale} (run make figures SCALE={scale})"


def test_executed_notebooks_keep_results_and_drop_what_changes_every_run(tmp_path):
    from elmlib.repro.executed import scrub

    root = str(tmp_path / "repo")
    nb = {"metadata": {"papermill": {"start_time": "t0", "end_time": "t1", "duration": 3.0, "output_path": "/x",
                                     "parameters": {"run_dir": f"{root}/runs"}}},
          "cells": [{"cell_type": "code", "source": [f'run_dir = "{root}/runs"\n'],
                     "metadata": {"execution": {"iopub.status.idle": "t"}, "papermill": {"duration": 1.0}, "tags": []},
                     "outputs": [{"output_type": "stream", "name": "stderr", "text": "Loading 100%|##| 3.2it/s"},
                                 {"output_type": "stream", "name": "stdout", "text": f"wrote {root}/results/a.csv"},
                                 {"output_type": "display_data", "data": {"image/png": "iVBOR"}}]}]}
    out = scrub(nb, root)
    assert out["metadata"]["papermill"] == {"parameters": {"run_dir": "runs"}}
    cell = out["cells"][0]
    assert cell["metadata"] == {"tags": []} and cell["source"] == ['run_dir = "runs"\n']
    assert [o.get("name", o["output_type"]) for o in cell["outputs"]] == ["stdout", "display_data"]
    assert cell["outputs"][0]["text"] == "wrote results/a.csv" and cell["outputs"][1]["data"]["image/png"] == "iVBOR"
    assert scrub(json.loads(json.dumps(out)), root) == out  # scrubbing twice changes nothing
    injected = {"cell_type": "code", "id": "e0421b53", "source": [], "outputs": [],
                "metadata": {"tags": ["injected-parameters"]}}
    assert scrub({"metadata": {}, "cells": [injected]}, root)["cells"][0]["id"] == "injected-parameters"
