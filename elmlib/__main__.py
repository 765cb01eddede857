"""Command line: ``python -m elmlib COMMAND ...`` (also installed as ``elmlib``).

Each command lives in its own module exposing ``add_arguments(parser)`` and ``main(args)``;
modules are imported only when their command runs, so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

COMMANDS = {
    "demo": ("elmlib.repro.demo", "short supernet demo: SPOS training steps, extraction, export"),
    "search": ("elmlib.pipeline.search", "the ELM search end to end (Algorithm 2), resumable"),
    "export": ("elmlib.pipeline.export", "write a finished search's model as a folder transformers loads, with a model card"),
    "runs": ("elmlib.repro.schedule", "build the run folders a scale's notebooks read, several at a time"),
    "proxy": ("elmlib.repro.proxy_flexibert", "score architectures with zero-cost proxies (FlexiBERT benchmark)"),
    "data": ("elmlib.data.cli", "list, inspect and prepare the task registry and corpora"),
    "figures": ("elmlib.repro.plots", "re-render the paper's figures from results/*.csv; --report prints the results table"),
    "report": ("elmlib.repro.report", "print the markdown results table of docs/results.md from results/*.csv"),
}


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
    from elmlib.errors import TrainingDiverged

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


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="elmlib", description=__doc__.splitlines()[0],
                                     epilog="--debug (or ELMLIB_DEBUG=1): show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        if name == wanted:  # import only the module whose command runs
            module = importlib.import_module(module_name)
            module.add_arguments(command)
            command.set_defaults(_module=module)
    args = parser.parse_args(argv)
    return int(args._module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
