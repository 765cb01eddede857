"""Command line: ``python -m elmlib COMMAND ...`` (also installed as ``elmlib``).

The ``search`` command lives here; every other command lives in its own module exposing
``add_arguments(parser)`` and ``main(args)``, imported only when its command runs. Errors the user can
fix print ``error: ...`` on one line (exit 2; a diverged training 3; an interrupt 130).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from elmlib.data.filetask import is_file_task
from elmlib.data.hubtask import is_hub_task
from elmlib.errors import TrainingDiverged
from elmlib.io.files import workspace
from elmlib.pipeline.config import parse_sets, resolve_config
from elmlib.pipeline.preflight import STAGES, check_stages
from elmlib.pipeline.run import SearchRun

COMMANDS = {
    "demo": ("elmlib.repro.demo", "short supernet demo: SPOS training steps, extraction, export"),
    "search": (__name__, "the ELM search end to end (Algorithm 2), resumable"),
    "export": ("elmlib.pipeline.export", "write a finished search's model as a folder transformers loads, with a model card"),
    "runs": ("elmlib.repro.schedule", "build the run folders a scale's notebooks read, several at a time"),
    "proxy": ("elmlib.repro.proxy_flexibert", "score architectures with zero-cost proxies (FlexiBERT benchmark)"),
    "data": ("elmlib.data.cli", "list, inspect and prepare the task registry and corpora"),
    "figures": ("elmlib.repro.plots", "re-render the paper's figures from results/*.csv; --report prints the results table"),
    "report": ("elmlib.repro.report", "print the markdown results table of docs/results.md from results/*.csv"),
    "executed": ("elmlib.repro.executed", "drop timings, stderr and machine paths from executed notebooks"),
}


# --------------------------------------------------------------------------- the search command

def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", default="smoke", help="smoke | small | paper")
    parser.add_argument("--task", default=None, help="a task name, a data file (.csv/.tsv/.jsonl/.parquet) "
                        "with columns text, [text_pair], label, or hub:<name>[/<config>], a hub dataset (see "
                        "docs/running.md); default: the scale's (boolq; mnli at the paper scale)")
    parser.add_argument("--dev", default=None, metavar="PATH", help="a data file task's official dev file "
                        "(the setting dev_file; default: a seeded, stratified 20%% of the file)")
    parser.add_argument("--budget", default=None, help="parameter ceiling, e.g. 15.7M (default: the scale's)")
    parser.add_argument("--run-dir", default=None, help="default: runs/<task>-<scale>")
    parser.add_argument("--config", default=None, help="JSON file of settings")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    parser.add_argument("--overwrite", action="store_true", help="discard a run folder made with another config")
    parser.add_argument("--no-progress", action="store_true")


def search(args: argparse.Namespace) -> int:
    """The search command: errors the user can fix reach `main` as one line (exit 2) before anything
    is written; prints final_metrics.csv (or where the stages are) when done."""
    stages = check_stages(s for s in args.stages.split(",") if s)
    sets = {**parse_sets(args.set), **({"dev_file": args.dev} if args.dev else {})}
    cfg = resolve_config(args.scale, args.task, args.budget, sets, args.config)
    task = Path(cfg.task).stem if is_file_task(cfg.task) else cfg.task
    task = task[4:].replace("/", "_") if is_hub_task(task) else task
    run_dir = args.run_dir or workspace() / "runs" / f"{task}-{cfg.scale}"
    run = SearchRun(cfg, run_dir, args.overwrite, not args.no_progress)
    try:
        run.run(stages)
    finally:
        run.close()
        run.dist.close()
    if not run.dist.is_main:
        return 0
    shown = [Path(run_dir) / "final_metrics.csv", Path(run_dir) / f"suite-{cfg.suite}" / "metrics.csv"]
    shown = [p for p in shown[:1 + bool(cfg.suite)] if p.exists()]
    print("\n".join(p.read_text() for p in shown) if shown else f"stages done in {run_dir}")
    return 0


# --------------------------------------------------------------------------- every command

def _debug(argv: list[str]) -> tuple[bool, list[str]]:
    """``--debug`` anywhere on the line (or ``ELMLIB_DEBUG=1``): show tracebacks of expected errors."""
    on = "--debug" in argv or os.environ.get("ELMLIB_DEBUG", "").lower() in ("1", "true", "yes", "on")
    return on, [a for a in argv if a != "--debug"]


def _one_line(err: BaseException) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"a JSON file of the command is not valid JSON at line {err.lineno} ({err.msg})"
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror or err}"
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(text.split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command; expected errors print ``error: ...`` on one line (exit 2; divergence 3)."""
    debug, argv = _debug(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except (ValueError, KeyError, OSError, TrainingDiverged) as err:
        if debug:
            raise
        print(f"error: {_one_line(err)} (--debug shows the traceback)", file=sys.stderr)
        return 3 if isinstance(err, TrainingDiverged) else 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted; the same command resumes from the last checkpoint", file=sys.stderr)
        return 130


def _command(module_name: str):
    """A command's ``(add_arguments, main)``: this module's for ``search``, else its module's."""
    if module_name == __name__:
        return add_search_arguments, search
    module = importlib.import_module(module_name)
    return module.add_arguments, module.main


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="elmlib", description=__doc__.splitlines()[0],
                                     epilog="--debug (or ELMLIB_DEBUG=1): show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        if name == wanted:  # import only the module whose command runs
            add_arguments, command_main = _command(module_name)
            add_arguments(command)
            command.set_defaults(_main=command_main)
    args = parser.parse_args(argv)
    return int(args._main(args) or 0)
