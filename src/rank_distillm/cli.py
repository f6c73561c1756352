"""The ``rank-distillm`` command line: a thin layer over the package's functions.

Each subcommand lives next to the code it drives; this table names, for each, the module
and its two functions (``add_<name>_arguments(parser)`` and ``<name>_command(args)``).
Modules are imported only when their subcommand runs, so ``--help`` stays fast.

One error path: bad input (a malformed file, a typo in a profile, an argument out of range,
an output that cannot be written, a missing optional dependency, no network) ends in one
line on stderr, ``rank-distillm COMMAND: error: ...``, that names the file, line or field
and says what to do, with exit status 2 and no traceback (``--debug`` shows it). Anything
else is a bug and keeps its traceback. Every ``--json`` output goes through
:func:`print_json` (strict JSON: ``null`` for a missing value, never ``NaN``).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback

from .cli_types import add_force_argument, between_0_and_1, positive_int, print_json, trec_tag  # noqa: F401 - re-exported
from .errors import DataError
from .paths import CACHE_ENV, DATA_ENV

# name: (module, help)
COMMANDS = {
    "data": ("rank_distillm.data_cli", "locate the offline data and prepare the ir_datasets cache"),
    "evaluate": ("rank_distillm.evaluation", "measure a run with ir_measures"),
    "teach": ("rank_distillm.teacher.cli", "re-rank candidates with an LLM teacher (sliding windows)"),
    "build-dataset": ("rank_distillm.sampling", "turn a teacher run into listwise training data"),
    "train": ("rank_distillm.training_cli", "train a cross-encoder student from a profile"),
    "rerank": ("rank_distillm.evaluation", "re-rank candidates with a trained cross-encoder"),
    "compare": ("rank_distillm.evaluation", "compare runs with significance tests"),
    "bench": ("rank_distillm.efficiency", "measure latency, throughput and memory"),
}


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (usage is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _functions(name: str):
    module = importlib.import_module(COMMANDS[name][0])
    stem = name.replace("-", "_")
    return getattr(module, f"add_{stem}_arguments"), getattr(module, f"{stem}_command")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="rank-distillm", description="Rank-DistiLLM: distil LLM re-rankers into cross-encoders.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _functions(name)[0](p)
    return parser


# --------------------------------------------------------------------------- errors

_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _network_error(error: BaseException) -> bool:
    import socket
    import urllib.error

    try:
        import requests

        request_errors = (requests.RequestException,)
    except ImportError:  # pragma: no cover - requests comes with ir_datasets
        request_errors = ()
    return isinstance(error, (ConnectionError, TimeoutError, socket.gaierror, urllib.error.URLError, *request_errors))


def error_message(error: BaseException) -> str | None:
    """The one-line message for an error caused by bad input or the environment; None for a bug.

    Bad input is a :class:`~rank_distillm.errors.DataError` (a ``ProfileError`` too), an
    ``OSError``, a network error or an ``ImportError`` (a missing optional dependency). Any
    other exception, a bare ``KeyError``, ``ValueError`` or ``TypeError`` included, is a bug:
    ``None``, and the caller shows its traceback.
    """
    if _network_error(error):
        request = getattr(error, "request", None)
        url = getattr(request, "url", None) or getattr(error, "url", None)
        status = getattr(getattr(error, "response", None), "status_code", None) or getattr(error, "code", None)
        why = f"the server answered HTTP {status}" if isinstance(status, int) else f"no network ({type(error).__name__})"
        return _one_line(
            f"cannot download{' ' + url if url else ''}: {why}. Offline, point {DATA_ENV} at the project's data "
            f"folder and use its run files; online, check the connection and the address"
        )
    if isinstance(error, DataError):
        return _one_line(error)
    if isinstance(error, ImportError):
        text = str(error)
        if isinstance(error, ModuleNotFoundError) and error.name and text.startswith("No module named"):
            text += f": an optional dependency is missing (pip install {error.name.split('.')[0]})"
        return _one_line(text)
    if isinstance(error, OSError):
        where = error.filename or ""
        text = f"{where}: {error.strerror or error}" if where else str(error.strerror or error)
        if error.errno in _NOT_WRITABLE:
            cache = os.environ.get(CACHE_ENV)
            if cache and str(where).startswith(os.path.abspath(cache)):
                text += f"; the cache folder is not writable: set {CACHE_ENV} to a writable folder"
            else:
                text += "; choose a writable place (or fix its permissions)"
        elif error.errno == errno.ENOSPC:
            text += "; free some space and run the command again (it resumes where it can)"
        return _one_line(text)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
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
    except KeyboardInterrupt:
        print(f"rank-distillm {args.command}: interrupted (a job with a log or checkpoints resumes when run again)",
              file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - sorted into bad input (one line) and bugs (traceback) below
        message = error_message(error)
        if message is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"rank-distillm {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
