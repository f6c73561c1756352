"""The command line's argument types and its one JSON printer, for every module that defines a subcommand.

It sits below the modules that drive subcommands (``sampling``, ``evaluation``, ``teacher.cli``,
``training_cli``, ``efficiency.cli``), which import these from here rather than from
:mod:`rank_distillm.cli`, the top (it imports each of them when its subcommand runs), and
above ``data`` and ``outputs``, which it uses. ``cli`` re-exports them under their old names.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An argument that must be a whole number >= 1 (``--max-queries``, ``--depth``, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def between_0_and_1(text: str) -> float:
    """An argument that must lie strictly between 0 and 1 (``--alpha``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, not {text}")
    return value


def trec_tag(text: str) -> str:
    """An argument that becomes one field of every TREC line (``--tag``): no whitespace or control characters."""
    from .data import trec_field_problem

    problem = trec_field_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}; use a tag without spaces, tabs or newlines")
    return text


def add_force_argument(parser) -> None:
    """``--force``: replace ``--out`` even when it is not the command's own kind of output."""
    parser.add_argument("--force", action="store_true",
                        help="replace --out even if what is there is not this command's kind of output")


def print_json(obj, indent: int | None = None) -> None:
    """Print ``obj`` as strict JSON (``null`` for NaN or a missing value): the one way ``--json`` prints."""
    from .outputs import json_text

    print(json_text(obj, indent=indent))
