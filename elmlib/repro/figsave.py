"""Atomic figure files: a matplotlib figure is written to a temporary file beside its target and
renamed over it only when ``savefig`` finished, so a crash or a failing save never leaves a partial
PNG or PDF (and never clobbers the previous good one).

    from elmlib.repro.figsave import save_figure
    save_figure(fig, "figures/fig2.png", dpi=150)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from elmlib.io.files import atomic_write


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """``fig.savefig`` into ``path`` atomically; the format is the file's suffix (``.png``, ``.pdf``, ...)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if not fmt:
        raise ValueError(f"figure path {path} has no suffix; name it .png or .pdf")
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format=fmt, **savefig_kwargs)
    return path
