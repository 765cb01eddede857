"""What every figure shares: the pyplot style, one colour-blind-safe palette (Okabe & Ito, "Color Universal
Design", 2008) with a fixed meaning per role, the block labels of paper Fig. 6 and the hatches of sharing
modes (Fig. 5). Sequential data use viridis or magma (perceptually uniform, readable in grey)."""
from __future__ import annotations

import math

from cycler import cycler  # matplotlib's own dependency, light to import

from elmlib.nas.space import CANDIDATES
from elmlib.repro.claim_stats import t_interval

BLOCK_LABELS = [f"{b[:4] if b == 'bert' else 'Mob'}-{s}" for b, s in CANDIDATES]  # index = paper Fig. 6 order
OKABE_ITO = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
             "purple": "#CC79A7", "sky": "#56B4E9", "yellow": "#F0E442", "black": "#000000"}
OURS = OKABE_ITO["green"]         # elmlib's measurements (the found model, our ratio)
OURS_LIGHT = "#7FCEB9"            # the same hue, lighter: a labelled variant of ours (inherited weights)
PAPER = "#999999"                 # the paper's reported values
BASELINES = ("#999999", "#BBBBBB", "#666666", "#DDDDDD")  # hand-designed baselines, told apart by grey
REFERENCE = OKABE_ITO["vermillion"]  # reference values and lines (a target, the majority class)
COLORS = {"bert": OKABE_ITO["blue"], "mobilebert": OKABE_ITO["orange"]}
HATCH = {"none": "", "qv": "//", "kv": ".."}


def pyplot():
    """``matplotlib.pyplot`` with the figures' font sizes, resolution and tight bounding box."""
    import matplotlib.pyplot as plt  # heavy: matplotlib, only when a figure is drawn

    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "figure.dpi": 110, "savefig.bbox": "tight",
                         "axes.prop_cycle": cycler(color=list(OKABE_ITO.values()))})
    return plt


def ticks(**locator):
    """A ``MaxNLocator`` tick locator: ``integer=True`` for epochs, ``nbins=4`` for sparse axes."""
    from matplotlib.ticker import MaxNLocator  # heavy: matplotlib, only when a figure is drawn

    return MaxNLocator(**locator)


def dot_ci(ax, x: float, values, color: str, label: str | None = None) -> tuple[float, float, float]:
    """Every value as a small dot at ``x`` and their mean as a large one with its 95% t-interval (none for
    one value): the multi-seed convention of every figure (no bars on a truncated axis). Returns
    (mean, low, high)."""
    values = [float(v) for v in values]
    mean, low, high = t_interval(values)
    ax.scatter([x + 0.06] * len(values), values, s=16, color="0.25", zorder=3, linewidths=0)
    yerr = None if math.isnan(low) else [[mean - low], [high - mean]]
    ax.errorbar([x], [mean], yerr=yerr, fmt="o", ms=8, color=color, mec="k", ecolor="k", capsize=4, label=label,
                zorder=4)
    return mean, low, high
