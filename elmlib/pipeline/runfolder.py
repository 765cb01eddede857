"""Run folders that elmlib owns and locks (the checkpoints, logs and results of one search).

A folder is elmlib's when it carries the marker ``.elmlib-run`` (format version and config digest);
``config.json`` alone proves nothing. ``claim`` takes an OS advisory lock on ``.elmlib-run.lock``
inside the folder (``fcntl.flock``: the kernel releases it when the process exits or is killed, so a
lock left by ``kill -9`` is simply taken over), then creates, resumes or (``overwrite``) empties the
folder. A second process on a folder in use fails at once, naming the holder's process id.
``overwrite`` empties only a folder with the marker; anything else is refused.

    folder = claim_run_folder("runs/boolq-smoke", cfg.to_dict(), cfg.digest(), overwrite=False)
    ...
    folder.release()
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import warnings
import weakref
from pathlib import Path

from elmlib.errors import RunFolderBusy, UserError
from elmlib.io.files import write_json

MARKER = ".elmlib-run"
LOCK = ".elmlib-run.lock"
FORMAT = "elmlib-run-v1"

# Locks this process holds: folder -> [file descriptor, holders]. flock conflicts between two file
# descriptors of one process too, so several SearchRun objects on one folder share one lock.
_HELD: dict[str, list[int]] = {}


def _key(path: Path) -> str:
    return os.path.realpath(path)


def _lock(path: Path) -> bool:
    """Lock ``path`` for this process; False when the folder is read-only (nothing can write it)."""
    key = _key(path)
    if key in _HELD:
        _HELD[key][1] += 1
        return True
    try:
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            return False
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RunFolderBusy(f"run folder {path} is in use by process {holder}; wait for it to finish, "
                            "or use another --run-dir") from None
    except OSError as err:  # a file system without flock (some network and FUSE mounts)
        os.close(fd)
        if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        warnings.warn(f"run folder {path}: this file system cannot lock files ({err.strerror}); the folder is "
                      "used unlocked: make sure no other process runs in it")
        _HELD[key] = [-1, 1]
        return True
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = [fd, 1]
    return True


def _unlock(key: str) -> None:
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _HELD[key]
        if held[0] >= 0:
            os.close(held[0])  # closing the descriptor releases the flock


def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name != LOCK) if path.is_dir() else []


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON at line {err.lineno} ({err.msg}); the run folder is damaged: "
                        "use another --run-dir") from None


def _check_owner(path: Path, entries: list[str]) -> None:
    """Refuse a folder elmlib did not make before locking it (no lock file is left in it)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"run folder {path} is a file, not a folder; use another --run-dir")
    if entries and MARKER not in entries and "config.json" not in entries:
        raise UserError(f"run folder {path} is not empty and is not an elmlib run folder (no {MARKER}); "
                        "use a new or empty --run-dir")


class RunFolder:
    """A claimed run folder: ``path``, ``read_only`` (a finished run on a read-only disk), ``release()``."""

    def __init__(self, path: Path, read_only: bool):
        self.path, self.read_only = path, read_only
        key = _key(path)
        self._finalizer = weakref.finalize(self, _unlock, key) if not read_only else None

    def release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()


def _write_fresh(path: Path, config: dict, digest: str) -> None:
    write_json({"format": FORMAT, "config_digest": digest}, path / MARKER)
    write_json(config, path / "config.json")


def _changed_keys(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def claim_run_folder(path: str | os.PathLike, config: dict, digest: str, overwrite: bool = False) -> RunFolder:
    """Create, resume or (``overwrite``, marker required) empty the run folder of ``config``, locked.
    Every refusal happens before anything is written; the decision is taken again under the lock."""
    path = Path(path)
    _decide(path, config, overwrite, writable=True)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"run folder {path} cannot be created ({err.strerror}); use another --run-dir") from None
    writable = _lock(path)
    try:
        action = _decide(path, config, overwrite, writable)
        if action == "fresh":
            _write_fresh(path, config, digest)
        elif action == "adopt":  # made before the marker existed, same config: it is ours
            write_json({"format": FORMAT, "config_digest": digest}, path / MARKER)
        elif action == "overwrite":
            for name in _entries(path):
                target = path / name
                shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
            _write_fresh(path, config, digest)
        return RunFolder(path, read_only=not writable)
    except BaseException:
        if writable:
            _unlock(_key(path))
        raise


def _decide(path: Path, config: dict, overwrite: bool, writable: bool) -> str:
    """What claiming ``path`` does: fresh, resume, adopt or overwrite; or a one-line refusal."""
    entries = _entries(path)
    _check_owner(path, entries)
    old = _read_json(path / "config.json")
    owned = MARKER in entries
    if old is None and not entries:
        if not writable:
            raise UserError(f"run folder {path} is read-only; use another --run-dir")
        return "fresh"
    if old == config:
        return "adopt" if not owned and writable else "resume"
    if not overwrite:
        what = f"differs in {_changed_keys(old, config)}" if old is not None else "has no config.json"
        fix = "use another --run-dir or --overwrite" if owned else (
            "use another --run-dir (it predates elmlib's marker, so --overwrite will not delete it; to resume it, "
            "set the differing settings to the folder's values)")
        raise UserError(f"run folder {path} was made with another config ({what}); {fix}")
    if not owned:
        raise UserError(f"run folder {path} has no {MARKER} marker, so --overwrite will not delete it; "
                        "delete it yourself or use another --run-dir")
    if not writable:
        raise UserError(f"run folder {path} is read-only, so --overwrite cannot empty it")
    if _HELD.get(_key(path), [0, 0])[1] > 1:  # this process holds it elsewhere (our own claim is the other)
        raise UserError(f"run folder {path} is open elsewhere in this process, so --overwrite will not empty it")
    return "overwrite"
