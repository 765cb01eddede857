"""The committed figures are what the committed CSVs draw: re-rendering ``results/<scale>/*.csv`` with
``elmlib figures`` rewrites ``figures/<scale>/`` byte for byte (issue: a stale figure cannot hide).

PNG and PDF bytes depend on the matplotlib that drew them; the PNGs name it (their ``Software`` tag),
so under another matplotlib the comparison is skipped with the two versions printed."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
from PIL import Image

from elmlib.__main__ import main as cli

ROOT = Path(__file__).resolve().parent.parent
SCALES = {"smoke": "", "micro": "micro", "small": "small", "paper": "paper"}  # scale -> subfolder


def drawn_by(folder: Path) -> set[str]:
    """The matplotlib versions named in the PNGs of ``folder``."""
    return {Image.open(p).info.get("Software", "?") for p in folder.glob("*.png")}


@pytest.mark.parametrize("scale", SCALES)
def test_committed_figures_are_what_the_committed_csvs_draw(scale, tmp_path):
    results, figures = ROOT / "results" / SCALES[scale], ROOT / "figures" / SCALES[scale]
    if not any(figures.glob("*.png")):
        pytest.skip(f"no committed figures at {scale}")
    ours = f"Matplotlib version{matplotlib.__version__}, https://matplotlib.org/"
    if drawn_by(figures) != {ours}:
        pytest.skip(f"figures/{SCALES[scale]} drawn by {sorted(drawn_by(figures))}, this is {ours}")
    cli(["figures", "--results", str(results), "--figures", str(tmp_path)])
    redrawn = sorted(p.name for p in tmp_path.iterdir())
    assert redrawn, f"no figure drawn from results/{SCALES[scale]}"
    for name in redrawn:
        committed = figures / name
        assert committed.exists(), f"figures/{SCALES[scale]}/{name} is drawn from the CSVs but not committed"
        assert (tmp_path / name).read_bytes() == committed.read_bytes(), \
            f"figures/{SCALES[scale]}/{name} is stale: `make figures SCALE={scale}` redraws it"
