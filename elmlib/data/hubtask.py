"""Any Hugging Face hub dataset as a task: ``--task hub:<name>[/<config>]``, split by the data-file rules.

``hub:imdb`` and ``hub:stanfordnlp/imdb`` name a dataset (``name`` or ``owner/name``, as on the hub);
a third part is its config: ``hub:nyu-mll/glue/cola``. ``datasets.load_dataset(name, config)`` is
read whole: its ``train`` split, and its ``validation`` split as dev where that has labeled rows (else a
seeded, stratified 20% of train, as for a data file); then the paper's 90/10 train90/search split
(`elmlib.data.filetask.split_rows`). Columns are the data-file settings (``text_column``,
``text_pair_column``, ``label_column``). A ``ClassLabel`` column keeps the dataset's ids and names;
other labels follow the file rules (strings, integers, booleans: classes; floats: regression), and so
do the metrics. Rows with an empty text or no label (``-1``, as in GLUE's test split) are left out and
counted. A GLUE task of the registry keeps its registered name: ``hub:nyu-mll/glue/sst2`` is ``sst2``.
The task is named ``hub-<slug>-<digest12>``, a hash of the rows read and the settings, so tokenized
splits and teachers are cached by content.

    parse_hub_task("hub:nyu-mll/glue/cola")        # ('nyu-mll/glue', 'cola')
    spec = register_hub("hub:imdb")                # the hub, or its copy in the local cache
"""
from __future__ import annotations

import hashlib
import json
import re

from elmlib.data.filetask import FILE_TASKS, add_table_task, check_columns, encode_labels, read_rows
from elmlib.data.registry import TASKS, TaskSpec
from elmlib.data.rows import dedupe
from elmlib.data.sources import hub_cached, hub_offline, hub_reachable
from elmlib.errors import UserError

PREFIX = "hub:"
READER_VERSION = 1  # bump when the rows read from a dataset change: renames every hub task
SOURCE = "hub-dataset"  # TaskSpec.source of these tasks ("hub" is the registry's GLUE tasks)
OFFLINE = ("offline, use a data file (--task data.csv) or a packaged task (boolq, rotten_tomatoes, trec, "
           "sms_spam, crowdflower)")
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SEEN: dict[tuple, str] = {}  # (task, column settings, split seed) -> registered name


def is_hub_task(name) -> bool:
    """A task named ``hub:...``: a hub dataset, not a registered task or a file."""
    return isinstance(name, str) and name.startswith(PREFIX)


def parse_hub_task(task: str) -> tuple[str, str | None]:
    """``hub:name``, ``hub:owner/name`` -> (id, None); ``hub:owner/name/config`` -> (owner/name, config)."""
    parts = task[len(PREFIX):].split("/")
    if not 1 <= len(parts) <= 3 or not all(_PART.fullmatch(p) for p in parts):
        raise UserError(f"task={task!r} is not allowed; expected hub:<name>, hub:<owner>/<name> or "
                        "hub:<owner>/<name>/<config> (letters, digits, '.', '_', '-')")
    return ("/".join(parts[:2]), parts[2] if len(parts) == 3 else None)


def _what(path: str, config: str | None) -> str:
    return path + (f" (config {config})" if config else "")


def fetch(task: str, path: str, config: str | None):
    """``datasets.load_dataset(path, config)`` (a DatasetDict); out of reach or failing, one line naming it."""
    import datasets  # heavy: datasets (pyarrow), needed only for hub data

    what = _what(path, config)
    if not hub_offline() and not hub_reachable():
        if hub_cached(path, "dataset"):
            raise UserError(f"task={task!r} needs the hub dataset {what}, which is out of reach; a copy is in the "
                            "local cache: set HF_DATASETS_OFFLINE=1 to use it")
        raise UserError(f"task={task!r} needs the hub dataset {what}, which is out of reach (and not in the local "
                        f"cache); {OFFLINE}")
    try:
        return datasets.load_dataset(path, config)
    except Exception as err:  # datasets raises many types: not found, bad config, offline without a copy
        if hub_offline():
            raise UserError(f"task={task!r} needs the hub dataset {what}, which is out of reach (and not in the "
                            f"local cache; the hub is switched off by HF_HUB_OFFLINE / HF_DATASETS_OFFLINE); "
                            f"{OFFLINE}") from None
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise UserError(f"task={task!r}: datasets.load_dataset({path!r}, {config!r}) failed "
                        f"({type(err).__name__}: {first})") from None


def _table(ds, where: str, columns: tuple[str, str, str], pair_required: bool):
    """One split's usable rows {key, text, [text_pair], label}, how many were left out, and the text fields."""
    text, pair, label = columns
    df = ds.to_pandas()
    fields = check_columns(df, where, text, pair, label, pair_required)
    keep = df[label].notna()
    if _class_names(ds, label):
        keep &= df[label] >= 0  # -1: no label (a hidden test split)
    for c in fields:
        keep &= df[c].notna() & (df[c].astype(str).str.strip() != "")
    return read_rows(df[keep], where, fields, label), int((~keep).sum()), fields


def _class_names(ds, label: str) -> tuple[str, ...]:
    feature = ds.features.get(label)
    return tuple(feature.names) if type(feature).__name__ == "ClassLabel" else ()


def _labels(rows, dev_rows, names: tuple[str, ...], where: str, label: str) -> tuple[str, tuple[str, ...]]:
    """A ClassLabel keeps its ids and names; other labels are encoded as a data file's are."""
    if not names:
        return encode_labels(rows, dev_rows or [], where, label)
    if len({r["label"] for r in rows}) < 2:
        raise UserError(f"{where}: every train row has {label}={rows[0]['label'] if rows else None!r}; "
                        "classification needs two classes or more")
    return "classification", names


def _digest(settings: dict, rows: list[dict], dev_rows: list[dict] | None) -> str:
    h = hashlib.sha256(json.dumps({"reader": READER_VERSION, **settings}, sort_keys=True).encode())
    for part in (rows, dev_rows or []):
        for r in part:
            h.update(f"{r['key']}\x1f{r['label']!r}\x1e".encode())
        h.update(b"\x1d")
    return h.hexdigest()


def register_hub(task: str, text_column: str = "text", text_pair_column: str = "text_pair",
                 label_column: str = "label", split_seed: int = 0) -> TaskSpec:
    """Load, check and split a hub dataset (module docstring); register and return its TaskSpec."""
    path, config = parse_hub_task(task)
    glue = next((t for t in TASKS.values() if t.hub_id == (path, config)), None)
    if glue is not None:
        return glue
    seen = (task, text_column, text_pair_column, label_column, split_seed)
    if seen in _SEEN:  # read once per process
        return FILE_TASKS[_SEEN[seen]]
    data, where = fetch(task, path, config), f"hub dataset {_what(path, config)}"
    if "train" not in data:
        raise UserError(f"{where} has no 'train' split (it has {', '.join(data) or 'none'}); the search needs one")
    columns = (text_column, text_pair_column, label_column)
    rows, dropped, fields = _table(data["train"], where, columns, text_pair_column != "text_pair")
    rows, dev_rows = dedupe(rows, repr), None
    if "validation" in data:
        dev, dropped_dev, _ = _table(data["validation"], f"{where}, validation split", columns, len(fields) == 2)
        dev_rows, dropped = dedupe(dev, repr) or None, dropped + dropped_dev
    kind, names = _labels(rows, dev_rows, _class_names(data["train"], label_column), where, label_column)
    settings = dict(dataset=path, config=config, columns=[*fields, label_column], split_seed=split_seed)
    digest = _digest(settings, rows, dev_rows)
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", path + (f"_{config}" if config else "")).strip("_")[:40]
    spec = add_table_task(
        f"hub-{slug}-{digest[:12]}", SOURCE, fields, kind, names, (rows, dev_rows), f"{digest[:16]}:{split_seed}",
        f"{where}: {kind}" + (f" ({len(names)} classes)" if names else "")
        + (", dev = its validation split" if dev_rows else ", seeded 20% dev"),
        {"hub": {"dataset": path, "config": config}, "file": None, "dev_file": None, "sha256": digest,
         "columns": settings["columns"], "split_seed": split_seed, "rows_left_out": dropped})
    _SEEN[seen] = spec.name
    return spec
