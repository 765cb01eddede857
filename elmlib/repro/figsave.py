"""Atomic figure files: a matplotlib figure is written to a temporary file beside its target and
renamed over it only when ``savefig`` finished, so a crash or a failing save never leaves a partial
PNG or PDF (and never clobbers the previous good one).

    from elmlib.repro.figsave import save, save_figure
    save_figure(fig, "figures/fig2.png", dpi=150)     # one file, the format from its suffix
    save(fig, "fig2_pca_curves", "figures")           # figures/fig2_pca_curves.png and .pdf
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


def save(fig, name: str, folder: str | os.PathLike) -> list[Path]:
    """Write ``<folder>/<name>.png`` (150 dpi) and ``.pdf``, atomically. The PDF carries no creation
    date, so re-rendering unchanged results rewrites identical bytes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.{ext}" for ext in ("png", "pdf")]
    for path in paths:
        png = path.suffix == ".png"
        save_figure(fig, path, dpi=150 if png else None, metadata=None if png else {"CreationDate": None})
    return paths
