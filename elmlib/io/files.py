"""Paths, atomic file writes and provenance records.

Every result file the project writes goes through here, so a crash never leaves a
half-written CSV behind and every CSV has a ``<name>.provenance.json`` beside it.

    from elmlib.io.files import write_result
    write_result(df, "results/fig2_pca_curves.csv", config=cfg, seed=0, wall_time_s=12.3)
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

_PROVENANCE_PACKAGES = ("elmlib", "torch", "transformers", "datasets", "numpy", "pandas", "scikit-learn")


def repository() -> Path | None:
    """The source checkout elmlib runs from (the folder holding pyproject.toml beside ``elmlib/``), or
    None when elmlib is installed as a package."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").exists() else None


def project_root() -> Path:
    """The repository root (the folder holding pyproject.toml), else the working directory."""
    return repository() or Path.cwd()


def in_repository() -> bool:
    """Whether the working directory is inside elmlib's source checkout."""
    repo = repository()
    return repo is not None and Path.cwd().resolve().is_relative_to(repo)


def workspace() -> Path:
    """Where default outputs go (``results/``, ``figures/``, ``runs/``): the repository when the working
    directory is inside it, else the working directory. A command run elsewhere never writes into the
    repository; the repository's ``results/`` is written by its notebooks and ``make``."""
    return project_root() if in_repository() else Path.cwd()


def results_dir() -> Path:
    """The default results folder: ``results/`` of the workspace. Commands take ``--results`` (or
    ``$ELMLIB_RESULTS``) and notebooks ``out_dir`` to write elsewhere."""
    return workspace() / "results"


def shared_results_dir() -> Path | None:
    """Where a search records tables that many runs share (``teachers.csv``): ``$ELMLIB_RESULTS``, else
    the repository's ``results/`` when the working directory is inside the repository, else None: a
    search run elsewhere writes only into its run folder and the cache (whose manifests keep the metrics)."""
    if os.environ.get("ELMLIB_RESULTS"):
        return Path(os.environ["ELMLIB_RESULTS"])
    return project_root() / "results" if in_repository() else None


def figures_dir() -> Path:
    """The default figures folder: ``figures/`` of the workspace (``--figures`` or ``$ELMLIB_FIGURES`` of
    the ``figures`` command, a notebook's ``out_dir``, write elsewhere)."""
    return workspace() / "figures"


def user_cache_dir() -> Path:
    """The platform's user cache folder for elmlib: ``$XDG_CACHE_HOME/elmlib`` or ``~/.cache/elmlib``
    (``~/Library/Caches/elmlib`` on macOS, ``%LOCALAPPDATA%\\elmlib\\Cache`` on Windows)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "elmlib"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "elmlib" / "Cache"
    base = os.environ.get("XDG_CACHE_HOME") or ""
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "elmlib"


def cache_dir() -> Path:
    """Where tokenized datasets, fine-tuned teachers and other derived artefacts are cached:
    ``$ELMLIB_CACHE``, else the platform's user cache folder (:func:`user_cache_dir`), so every checkout
    and installed copy on a machine shares one cache, trusted by content (``elmlib.io.cache``)."""
    return Path(os.environ.get("ELMLIB_CACHE") or user_cache_dir())


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[Any]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an inter-process lock on ``path`` (a ``.<name>.lock`` file beside it) for a
    read-modify-write of a file that several runs share, e.g. results/teachers.csv."""
    from filelock import FileLock  # comes with huggingface_hub and torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock"))):
        yield


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    return Path(path)


def write_csv(df, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame as CSV, atomically."""
    with atomic_write(path, newline="") as f:
        df.to_csv(f, index=False)
    return Path(path)


def git_commit() -> str | None:
    """The checkout's commit (``-dirty`` when its code differs), or None for an installed elmlib: the
    working directory's repository, if any, is someone else's."""
    if repository() is None:
        return None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repository(), capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    # "dirty" means the code differs from the commit; regenerated outputs (results/, figures/) do not count.
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!figures"],
        cwd=repository(), capture_output=True, text=True,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def package_versions(names: tuple[str, ...] = _PROVENANCE_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    """The processor's name (``/proc/cpuinfo`` on Linux, where ``platform.processor()`` is often empty)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_description() -> str:
    """The device, and on CPU the processor and the vector ISA torch's kernels use, so a result that
    differs in the last digits between machines can be traced."""
    import torch  # heavy: torch, only when a provenance record is written

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return (f"cpu:{platform.machine()} {cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads, "
            f"{torch.backends.cpu.get_cpu_capability()})")


def provenance(*, config: Any = None, seed: int | None = None, wall_time_s: float | None = None, **extra: Any) -> dict:
    """What a reader needs to trust (or rerun) a result: config, seed, commit, versions, device, time."""
    return {
        "config": config,
        "seed": seed,
        "wall_time_s": wall_time_s,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device_description(),
        "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def write_result(df, path: str | os.PathLike, *, config: Any = None, seed: int | None = None,
                 wall_time_s: float | None = None, **extra: Any) -> Path:
    """Write ``df`` to ``path`` and its provenance to ``<path stem>.provenance.json``, both atomically."""
    path = Path(path)
    write_csv(df, path)
    write_json(provenance(config=config, seed=seed, wall_time_s=wall_time_s, rows=len(df), **extra),
               path.with_name(path.stem + ".provenance.json"))
    return path
