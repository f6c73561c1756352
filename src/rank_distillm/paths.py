"""Where things are: the data folder's lookup, the cache, and checked input paths.

A low module (it imports only :mod:`rank_distillm.errors`), so that every layer
(``outputs``, ``models``, ``data``, ``sources``, ``released``, ``teacher``) finds the data
folder and the cache without importing the layers above it.

Where the data folder is found, in this order (:func:`data_dir`):

1. the ``RANK_DISTILLM_DATA`` environment variable;
2. a ``shared/data`` folder beside the repository (``../shared/data`` seen from the
   repository root), looked for above the working directory and above this package;
3. ``$RANK_DISTILLM_CACHE/data``, handed to the *data builder*: a function registered with
   :func:`set_data_builder` that returns that folder when it is (or can now be) built, else
   ``None`` or a :class:`~rank_distillm.errors.DataError` saying why not.

The lookup never builds anything itself: the builder is the package's top layer's, which
:mod:`rank_distillm` (its ``__init__``) registers when the package is imported:
:func:`rank_distillm.sources.build_on_first_use`, which downloads and converts the data's
public sources on first use. So the lowest layer knows where the data is, and the layer
that knows how to make it sits above everything it needs.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Callable, Iterable

from .errors import DataError

DATA_ENV = "RANK_DISTILLM_DATA"
CACHE_ENV = "RANK_DISTILLM_CACHE"

# folder -> the folder once built, or None (no download); a DataError says why not when required
DataBuilder = Callable[[Path, bool], "Path | None"]
_builder: DataBuilder | None = None


def set_data_builder(builder: DataBuilder | None) -> DataBuilder | None:
    """Register what :func:`data_dir` calls when no data folder is found; returns the previous one."""
    global _builder
    previous, _builder = _builder, builder
    return previous


# --------------------------------------------------------------------------- the cache


def cache_dir() -> Path:
    """A writable folder for the project's caches (``RANK_DISTILLM_CACHE`` or ``~/.cache``)."""
    value = os.environ.get(CACHE_ENV)
    if value is not None and not value.strip():
        raise DataError(f"{CACHE_ENV} is set but empty: unset it (the default is ~/.cache/rank_distillm) "
                        f"or give the folder for the caches")
    path = Path(value or Path.home() / ".cache" / "rank_distillm").expanduser()
    blocker = next((p for p in (path, *path.parents) if os.path.lexists(p)), None)
    if blocker is not None and not blocker.is_dir():
        raise DataError(f"{CACHE_ENV}: {blocker} is not a folder" + (f" (the cache {path} lies below it)" if blocker != path else "")
                        + f"; set {CACHE_ENV} to a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def ir_datasets_copy() -> Path:
    """Where :func:`rank_distillm.data.setup_ir_datasets` keeps the writable copy of the data folder's ``ir_datasets/``."""
    return cache_dir() / "ir_datasets"


def before_importing_ir_datasets() -> None:
    """Call before code that imports ``ir_datasets`` ahead of ``setup_ir_datasets`` (the data's conversion).

    ``ir_datasets`` reads ``IR_DATASETS_HOME`` once, when first imported; unless the user set
    their own, point it now where :func:`rank_distillm.data.setup_ir_datasets` puts the writable copy.
    """
    if not os.environ.get("IR_DATASETS_HOME"):
        os.environ.update(IR_DATASETS_HOME=str(ir_datasets_copy()), _RANK_DISTILLM_IRDS="1")


# --------------------------------------------------------------------------- the data folder


def _candidate_data_dirs() -> Iterable[Path]:
    here = Path(__file__).resolve()
    for start in (Path.cwd().resolve(), here):
        for parent in (start, *start.parents):
            yield parent.parent / "shared" / "data"


def data_dir(required: bool = True) -> Path | None:
    """The data folder (see the module's docstring); the builder's, on first use, when there is none.

    Without a folder and without a build (downloads off, or no network), ``None`` when
    ``required=False``, else a :class:`DataError` that names the ways out.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser().resolve()
        if not path.is_dir():
            raise DataError(f"{DATA_ENV}={env!r} is not a folder")
        return path
    for path in _candidate_data_dirs():
        if (path / "ir_datasets").is_dir():
            return path.resolve()
    if _builder is not None:
        return _builder(cache_dir() / "data", required)
    if required:
        raise DataError(f"No data folder was found: point {DATA_ENV} at a data folder (ir_datasets/, runs/, "
                        f"teacher-logs/: one that `rank-distillm data download --out DIR` builds)")
    return None


def resolve_path(spec: str | os.PathLike) -> Path:
    """Expand ``{data}`` (the offline data folder) and ``~`` in a path."""
    text = str(spec)
    if "{data}" in text:
        text = text.replace("{data}", str(data_dir()))
    return Path(text).expanduser()


# --------------------------------------------------------------------------- input files


def file_kind(mode: int) -> str:
    """What a file that is not a regular file or folder is (from its ``st_mode``), for a message."""
    return ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")


def input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` when it is a regular file that can be opened for reading, else a one-line :class:`DataError`.

    Says which: not found, a symlink loop, a folder, or a FIFO, socket or device (which
    would block a reader, or never end), so that no reader opens such a thing.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DataError(f"{what} {path}: a loop of symbolic links; point it at a real file") from None
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            raise DataError(f"{what} not found: {path}") from None
        raise DataError(f"{what} {path}: {error.strerror}") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path} is a folder, not a {what}")
    if not stat.S_ISREG(mode):
        raise DataError(f"{what} {path} is {file_kind(mode)}, not a regular file; give a file")
    return path
