"""Command line: ``python -m elmlib COMMAND ...`` (also installed as ``elmlib``).

Each command lives in its own module exposing ``add_arguments(parser)`` and ``main(args)``;
modules are imported only when their command runs, so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "demo": ("elmlib.demo", "short supernet demo: SPOS training steps, extraction, export"),
    "search": ("elmlib.search", "the ELM search end to end (Algorithm 2), resumable"),
    "runs": ("elmlib.schedule", "build the run folders a scale's notebooks read, several at a time"),
    "proxy": ("elmlib.proxies", "score architectures with zero-cost proxies (FlexiBERT benchmark)"),
    "data": ("elmlib.tasks", "list, inspect and prepare the task registry and corpora"),
    "figures": ("elmlib.plots", "re-render the paper's figures from results/*.csv; --report prints the results table"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="elmlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
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
