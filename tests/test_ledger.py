"""The claims ledger (elmlib.repro.ledger): the verdict rule, t-intervals and MDE against scipy, n=1, and the
README / docs/results.md tables equal to what `ledger()` computes from the committed CSVs."""
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from elmlib.repro import ledger as L
from elmlib.__main__ import main as cli

ROOT = Path(__file__).resolve().parent.parent


def row(d, paper_effect=1.0, scale="small", n_unit="seeds"):
    return L.measured("claim", "paper", paper_effect, "points", "ours", d, scale, n_unit=n_unit)


# --------------------------------------------------------------------------- the verdict rule
def test_reproduced_and_contradicted_follow_the_papers_side():
    assert row([1.0, 1.2, 0.9, 1.1]).verdict == "reproduced"
    assert row([-1.0, -1.2, -0.9, -1.1]).verdict == "contradicted"
    assert row([-1.0, -1.2, -0.9, -1.1], paper_effect=-0.5).verdict == "reproduced"  # the paper's side is its sign
    assert row([1.0, 1.2, 0.9, 1.1], paper_effect=-0.5).verdict == "contradicted"


def test_not_resolvable_says_how_many_seeds_would_resolve_it():
    r = row([3.0, -3.0, 2.5])                        # CI holds 0; MDE at n=3 far above the paper's 1 point
    assert r.low < 0 < r.high and r.mde > 1.0
    needed = L.seeds_needed(float(np.std([3.0, -3.0, 2.5], ddof=1)), 1.0)
    assert r.verdict == f"not resolvable here: about {needed} seeds would resolve it at this spread"
    assert row([3.0, -3.0, 2.5], paper_effect=1e-4).verdict.startswith("not resolvable here: over 1000 seeds")
    layers = row([3.0, -3.0, 2.5, 1.0], n_unit="layers").verdict
    assert layers == "not resolvable here: one seed, 4 layers too spread; more seeds needed"


def test_no_effect_found_when_the_mde_is_below_the_papers_effect():
    r = row([0.01, -0.02, 0.015, -0.01, 0.0])
    assert r.low < 0 < r.high and r.mde < 1.0 and r.verdict == "no effect found"


def test_not_run_pipeline_check_and_one_run(tmp_path):
    rows = L.ledger(tmp_path, "small")                                  # no CSVs at all
    assert rows.verdict.str.startswith("not run: no ").all() and len(rows) >= 14
    assert row([1.0, 1.2, 0.9], scale="smoke").verdict == "pipeline check (smoke), not evidence"
    one = row([0.7])
    assert one.verdict == "not resolvable here: one run (n=1), no spread"
    assert one.effect == 0.7 and math.isnan(one.low) and math.isnan(one.high) and math.isnan(one.mde)
    assert "n=1 seed |" in L.markdown(pd.DataFrame([one.__dict__]), short=True)
    assert row([]).verdict == "not run: no seed has both arms"


def test_hub_only_claims_say_so(tmp_path):
    pd.DataFrame([dict(model="ELM (found, small)", task="squad", metric="f1", value=math.nan, source="ours",
                       status="not run: requires hub data (rajpurkar/squad)", scale="small", seed=0)]
                 ).to_csv(tmp_path / "table3_squad.csv", index=False)
    pd.DataFrame([dict(model="elm_found", metric="rouge_l", dataset="dolly", value=math.nan, status="not run: hub",
                       seed=0)]).to_csv(tmp_path / "table4_clm.csv", index=False)
    rows = L.ledger(tmp_path, "small").set_index("claim").verdict
    assert rows["Table III: SQuAD v1.1/v2.0"] == "not run: needs the hub (SQuAD)"
    assert rows["Table IV: causal LM transfer (Rouge-L)"] == "not run: needs the hub"


# --------------------------------------------------------------------------- statistics against scipy
@pytest.mark.parametrize("d", [[0.3, -0.1, 0.5], [1.0, 2.0, 4.0, 8.0, 0.5], list(np.linspace(-1, 3, 12))])
def test_t_interval_matches_scipy(d):
    mean, low, high = L.t_interval(d)
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert (mean, low, high) == pytest.approx((np.mean(d), ci.low, ci.high), rel=1e-12)


@pytest.mark.parametrize("n,sd", [(2, 1.0), (3, 0.5), (10, 1.0), (30, 2.0)])
def test_mde_has_80_percent_power_by_scipys_noncentral_t(n, sd):
    e = L.mde(n, sd)
    crit, nc = stats.t.ppf(0.975, n - 1), e / (sd / math.sqrt(n))
    two_sided = stats.nct.sf(crit, n - 1, nc) + np.nan_to_num(stats.nct.cdf(-crit, n - 1, nc))
    assert two_sided == pytest.approx(0.80, abs=1e-8)


def test_mde_known_values():
    assert L.mde(10, 1.0) == pytest.approx(0.9960, abs=1e-4)   # paired t, n=10: d_z = 0.996 (G*Power, statsmodels)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.80)
    assert L.mde(2000, 1.0) == pytest.approx(z / math.sqrt(2000), rel=2e-3)  # large n: the normal approximation
    assert L.mde(5, 3.0) == pytest.approx(3 * L.mde(5, 1.0))                # scales with the spread
    assert L.mde(4, 0.0) == 0.0 and math.isnan(L.mde(1, 1.0))
    n = L.seeds_needed(1.0, 0.5)
    assert L.mde(n, 1.0) <= 0.5 < L.mde(n - 1, 1.0)


# --------------------------------------------------------------------------- the docs equal the computation
def _block(path: Path, name: str) -> str:
    text = path.read_text()
    found = re.search(rf"<!-- ledger:{name} -->\n(.*?)\n<!-- /ledger:{name} -->", text, re.S)
    assert found, f"{path.name} has no <!-- ledger:{name} --> block"
    return found.group(1)


@pytest.mark.parametrize("doc,scale,short", [("README.md", "small", True), ("README.md", "micro", True),
                                             ("docs/results.md", "small", False),
                                             ("docs/results.md", "micro", False)])
def test_docs_tables_equal_the_ledger_of_the_committed_csvs(doc, scale, short):
    name = f"{scale}-short" if short else scale
    want = L.markdown(L.ledger(L.scale_folder(ROOT / "results", scale), scale), short=short)
    got = _block(ROOT / doc, name)
    numbers = re.compile(r"[+-]?\d+(?:\.\d+)?")
    for got_line, want_line in zip(got.splitlines(), want.splitlines()):
        assert numbers.findall(got_line) == numbers.findall(want_line), (doc, got_line, want_line)
    assert got == want, (f"{doc} is stale: regenerate with "
                         f"python -m elmlib report --ledger --scale {scale}{' --short' if short else ''}")


def test_cli_prints_the_ledger(capsys):
    assert cli(["report", "--ledger", "--scale", "micro", "--results", str(ROOT / "results")]) == 0
    assert capsys.readouterr().out.strip() == L.markdown(L.ledger(ROOT / "results" / "micro", "micro"))
