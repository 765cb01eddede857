"""What every figure shares: the pyplot style, the block labels of paper Fig. 6 and the colours of block
types and hatches of sharing modes (Fig. 5)."""
from __future__ import annotations

from elmlib.nas.space import CANDIDATES

BLOCK_LABELS = [f"{b[:4] if b == 'bert' else 'Mob'}-{s}" for b, s in CANDIDATES]  # index = paper Fig. 6 order
COLORS = {"bert": "#4C72B0", "mobilebert": "#DD8452"}
HATCH = {"none": "", "qv": "//", "kv": ".."}


def pyplot():
    """``matplotlib.pyplot`` with the figures' font sizes, resolution and tight bounding box."""
    import matplotlib.pyplot as plt  # heavy: matplotlib, only when a figure is drawn

    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "figure.dpi": 110, "savefig.bbox": "tight"})
    return plt


def ticks(**locator):
    """A ``MaxNLocator`` tick locator: ``integer=True`` for epochs, ``nbins=4`` for sparse axes."""
    from matplotlib.ticker import MaxNLocator  # heavy: matplotlib, only when a figure is drawn

    return MaxNLocator(**locator)
