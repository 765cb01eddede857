"""Cache folders trusted by content, not by existence (fine-tuned teachers, tokenizers, tokenized splits).

A cache folder is built in a temporary folder beside its final place; :func:`publish` writes a
manifest into it (``elmlib-cache.json``: the inputs that made it and the sha256 of every file) and
renames it into place in one step. :func:`problem` tells a reader whether a folder may be used: only
when the manifest's inputs equal the reader's and every recorded file still has its digest. A
folder without a manifest (its writing was interrupted, e.g. ``save_pretrained`` killed between
config.json and the weights) or with other inputs or changed files is rebuilt, never reused.

    tmp = new_tmp(path)
    ...write files into tmp...
    publish(tmp, path, inputs={"task": "trec", "source": "ab12..."})
    if problem(path, inputs) is None: ...use it...
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from elmlib.io.files import atomic_write

MANIFEST = "elmlib-cache.json"
FORMAT = 1


@functools.lru_cache(maxsize=4096)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (memoised per process on path, size and modification time)."""
    st = os.stat(path)
    return _digest(str(path), st.st_size, st.st_mtime_ns)


def folder_digests(folder: str | os.PathLike) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder`` except the manifest."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): file_digest(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def folder_digest(folder: str | os.PathLike) -> str:
    """One sha256 over a folder's files and their names (e.g. a teacher checkpoint's identity)."""
    blob = json.dumps(folder_digests(folder), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _normal(inputs: dict) -> Any:
    return json.loads(json.dumps(inputs, sort_keys=True, default=str))


def problem(folder: str | os.PathLike, inputs: dict) -> str | None:
    """Why ``folder`` may not be used for ``inputs`` (one line), or None when it may."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} does not exist"
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return f"{folder} has no {MANIFEST}: its writing was interrupted (or an older elmlib wrote it)"
    try:
        record = json.loads(manifest.read_text())
        recorded_inputs, files = record["inputs"], record["files"]
    except (ValueError, KeyError, TypeError) as err:
        return f"{folder / MANIFEST} is corrupt ({type(err).__name__})"
    if recorded_inputs != _normal(inputs):
        changed = sorted(k for k in set(recorded_inputs) | set(_normal(inputs))
                         if recorded_inputs.get(k) != _normal(inputs).get(k))
        return f"{folder} was made from other inputs (differs in: {', '.join(changed)})"
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            return f"{folder} lacks {name}"
        if file_digest(path) != digest:
            return f"{folder}/{name} changed since it was written (sha256 differs)"
    return None


def new_tmp(final: str | os.PathLike) -> Path:
    """An empty temporary folder beside ``final`` (same file system, so the rename is atomic)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))


def discard(folder: str | os.PathLike) -> None:
    """Remove a folder: first renamed aside in one step, so no reader sees it half deleted."""
    folder = Path(folder)
    aside = folder.with_name(f".{folder.name}.stale-{uuid.uuid4().hex}")
    try:
        os.replace(folder, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def publish(tmp: str | os.PathLike, final: str | os.PathLike, inputs: dict) -> Path:
    """Write the manifest (inputs + file digests) into ``tmp``, then rename ``tmp`` to ``final``.

    A stale or partial ``final`` is discarded first; if another process published a valid folder for
    the same inputs meanwhile, theirs is kept and ``tmp`` removed."""
    tmp, final = Path(tmp), Path(final)
    record = {"format": FORMAT, "inputs": _normal(inputs), "files": folder_digests(tmp)}
    with atomic_write(tmp / MANIFEST) as handle:
        json.dump(record, handle, indent=2, sort_keys=True)
    if final.exists() and problem(final, inputs) is None:
        shutil.rmtree(tmp, ignore_errors=True)  # someone else's equal copy won the race
        return final
    discard(final)
    try:
        os.replace(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if problem(final, inputs) is not None:
            raise
    return final


def publish_model(model, folder: str | os.PathLike, digest: str, tokenizer=None) -> None:
    """``save_pretrained`` into a temporary folder, then publish it as ``folder`` with a manifest of
    ``digest`` (the recipe that made it) and every file's sha256: a kill mid-save leaves no folder
    that looks complete, and an edited or stale folder is never reused."""
    tmp = new_tmp(folder)
    try:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        publish(tmp, folder, {"recipe": digest})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def published(folder: str | os.PathLike, digest: str) -> bool:
    """Whether ``folder`` is a complete, unchanged model folder made by the recipe ``digest``."""
    return problem(folder, {"recipe": digest}) is None
