"""The ``rank-distillm`` command line: a thin layer over the package's functions.

Each subcommand lives next to the code it drives; this table names, for each, the module
and its two functions (``add_<name>_arguments(parser)`` and ``<name>_command(args)``).
Modules are imported only when their subcommand runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .data import DataError

# name: (module, help)
COMMANDS = {
    "data": ("rank_distillm.data_cli", "locate the offline data and prepare the ir_datasets cache"),
    "evaluate": ("rank_distillm.evaluation", "measure a run with ir_measures"),
    "teach": ("rank_distillm.teacher.cli", "re-rank candidates with an LLM teacher (sliding windows)"),
    "build-dataset": ("rank_distillm.sampling", "turn a teacher run into listwise training data"),
    "train": ("rank_distillm.training", "train a cross-encoder student from a profile"),
    "rerank": ("rank_distillm.evaluation", "re-rank candidates with a trained cross-encoder"),
    "compare": ("rank_distillm.evaluation", "compare runs with significance tests"),
    "bench": ("rank_distillm.efficiency", "measure latency, throughput and memory"),
}


def _functions(name: str):
    module = importlib.import_module(COMMANDS[name][0])
    stem = name.replace("-", "_")
    return getattr(module, f"add_{stem}_arguments"), getattr(module, f"{stem}_command")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rank-distillm", description="Rank-DistiLLM: distil LLM re-rankers into cross-encoders.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _functions(name)[0](p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(_functions(args.command)[1](args) or 0)
    except (DataError, ValueError, KeyError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"rank-distillm {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
