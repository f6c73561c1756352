"""Safe outputs: nothing half-written, nothing of the user's destroyed.

Every file or folder that the package writes goes through this module, so that a kill at
any moment, a bad path or a typo in ``--out`` never costs a user data:

- :func:`check_target` runs *before* a command does its work: the target must not be one
  of the command's inputs, must be writable, and, if something is already there, must be
  the command's own kind of output (a TREC run for ``teach``/``rerank``, a saved dataset
  for ``build-dataset``); anything else is refused unless the user says ``--force``. It
  also removes the command's own stale temporaries (see below).
- :func:`atomic_file` (and :func:`write_text`, :func:`write_json`) writes a file as a
  temporary beside it, flushed to disk, then renamed over the target: a reader sees the
  old file or the new one, never a part.
- :func:`replace_folder` builds a folder beside the target and swaps it in. On Linux the
  swap is one ``renameat2(RENAME_EXCHANGE)`` call, so the target is at every moment the
  complete old folder or the complete new one; elsewhere the old folder is renamed aside
  first and the new one renamed in (a kill between the two renames leaves the old folder
  aside, and the next call puts it back).

Temporaries are named ``.NAME.PID.TOKEN.tmp`` (files), ``.NAME.PID.TOKEN.new`` and
``.NAME.PID.TOKEN.old`` (folders), so a later call can tell its own leftovers from a
user's files and from a job that is still running (its PID is alive), and remove them.

Outputs are created with the user's umask (``0666 & ~umask`` for files, ``0777 & ~umask``
for folders), not the private mode of Python's temporary files.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import re
import secrets
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import DataError
from .paths import file_kind as _file_kind

# --------------------------------------------------------------------------- modes and names


def _temp_name(target: Path, suffix: str) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.{suffix}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """This module's temporaries of ``target`` left by processes that no longer run."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.[0-9a-f]+\.(tmp|new|old)$")
    out = []
    for p in target.parent.iterdir():
        m = pattern.match(p.name)
        if m and not _pid_alive(int(m.group(1))):
            out.append(p)
    return sorted(out)


def clean_stale(target: str | os.PathLike) -> list[Path]:
    """Remove the stale temporaries of ``target`` (see :func:`stale_temporaries`); returns them.

    A stale ``.old`` folder while the target itself is missing is a swap that was killed
    half-way (only where the atomic exchange is not available): it is the complete old
    output, so it is put back rather than removed.
    """
    target = Path(target)
    stale = stale_temporaries(target)
    for p in stale:
        if p.suffix == ".old" and not os.path.lexists(target):
            os.replace(p, target)
        elif p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


# --------------------------------------------------------------------------- what a target may be


@dataclass(frozen=True)
class OutputKind:
    """A kind of output: what it is called, whether it is a folder, and how to recognise one."""

    description: str
    folder: bool
    recognise: Callable[[Path], bool]


def _head(path: Path) -> bytes | None:
    """The first 4 KiB of a file (None: it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read(4096)
    except OSError:
        return None


def _is_run_file(path: Path) -> bool:
    """An empty file, or one whose first line reads as a TREC run line (``qid Q0 docid rank score tag``)."""
    head = _head(path)
    if head is None:
        return False
    if not head.strip():
        return True
    first = head.lstrip().split(b"\n", 1)[0].split()
    if len(first) != 6:
        return False
    try:
        int(first[3]), float(first[4])
    except ValueError:
        return False
    return True


def _is_saved_dataset(path: Path) -> bool:
    """An empty folder, or one that ``datasets.Dataset.save_to_disk`` wrote."""
    names = {p.name for p in path.iterdir()}
    return not names or {"dataset_info.json", "state.json"} <= names


def _is_jsonl(path: Path) -> bool:
    """An empty file, or one whose first line starts a JSON object (a log that is appended to)."""
    head = _head(path)
    return head is not None and (not head.strip() or head.lstrip().startswith(b"{"))


RUN_FILE = OutputKind("a TREC run file", folder=False, recognise=_is_run_file)
DATASET_FOLDER = OutputKind("a saved dataset (rank-distillm build-dataset --out)", folder=True,
                            recognise=_is_saved_dataset)
def _is_training_folder(path: Path) -> bool:
    """An empty folder, or one that training wrote (its stages, final model or metrics)."""
    names = {p.name for p in path.iterdir()}
    return not names or bool(names & {"metrics.json", "stage1", "stage2", "final"})


TRAINING_FOLDER = OutputKind("a training folder (rank-distillm train --out)", folder=True, recognise=_is_training_folder)
WINDOW_LOG = OutputKind("a window log (JSON lines)", folder=False, recognise=_is_jsonl)


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return p
    return Path("/")


def _contains(folder: Path, path: Path) -> bool:
    return path == folder or folder in path.parents


def check_target(
    path: str | os.PathLike,
    kind: OutputKind,
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    option: str = "--out",
) -> Path:
    """Refuse a bad output target before any work is done; returns the target as a :class:`Path`.

    A :class:`~rank_distillm.errors.DataError` naming ``option`` and the path when the target

    - is one of ``inputs`` (or, for a folder, holds one of them or the working folder);
    - is a folder where a file is written, or a file where a folder is;
    - exists and is not ``kind`` (unless ``force``): the command would destroy what it did
      not create;
    - lies in a folder that cannot be written (read-only, no permission, a file on the way).

    Then removes the target's stale temporaries (:func:`clean_stale`).
    """
    raw = str(path)
    path = Path(path).expanduser()
    if not raw.strip():
        raise DataError(f"{option} is empty: give the path to write")
    bad = next((c for c in raw if ord(c) < 32 or c == "\x7f"), None)
    if bad is not None:
        raise DataError(f"{option} {raw!r} holds a control character ({bad!r}): give a plain path")
    try:
        resolved = path.resolve()
        status = os.stat(path) if os.path.lexists(path) else None
    except (OSError, RuntimeError):  # a loop of symbolic links (RuntimeError before Python 3.13)
        raise DataError(f"{option} {raw}: a loop of symbolic links; give a real path") from None
    if status is not None and not (stat.S_ISREG(status.st_mode) or stat.S_ISDIR(status.st_mode)):
        raise DataError(f"{option} {raw} is {_file_kind(status.st_mode)}, not a file or folder that can be "
                        f"replaced; give another path")
    for given in inputs:
        if given is None or str(given).startswith(("irds:", "hf://")):
            continue
        source = Path(given).expanduser().resolve()
        if source == resolved or (kind.folder and _contains(resolved, source)):
            raise DataError(f"{option} {raw} would overwrite the input {given}: write the output elsewhere")
    if kind.folder and _contains(resolved, Path.cwd().resolve()):
        raise DataError(f"{option} {raw} is the working folder or holds it: give a new folder for the output")
    if os.path.lexists(path):
        if path.is_dir() and not kind.folder:
            raise DataError(f"{option} {raw} is a folder: give the path of the file to write")
        if kind.folder and not path.is_dir() and not force:
            raise DataError(f"{option} {raw} is a file, not a folder: give a new folder for the output "
                            f"(or --force to replace the file)")
        if not force and not kind.recognise(path):
            raise DataError(f"{option} {raw} exists and is not {kind.description}: refusing to replace it; "
                            f"choose another path, or add --force to replace it")
    parent = _nearest_existing(resolved.parent)
    if not parent.is_dir():
        raise DataError(f"{option} {raw}: {parent} is a file, so no folder can be made there")
    probe = _temp_name(parent / "probe", "tmp")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise DataError(f"{option} {raw}: cannot write in {parent} ({error.strerror}); "
                        f"choose a writable place") from None
    clean_stale(path)
    return path


# --------------------------------------------------------------------------- files


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """``with atomic_file(path) as f: f.write(...)``: the file appears complete, or not at all.

    The text goes to a temporary file in the same folder, is flushed and fsynced, given the
    user's umask, and renamed over ``path``; an exception (or a kill) leaves ``path`` as it
    was and removes (or leaves for :func:`clean_stale`) the temporary.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path, "tmp")
    binary = "b" in mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if error.filename is None:  # a full disk, a quota: say which file could not be written
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(text)
    return Path(path)


def strict_json_value(obj: Any) -> Any:
    """``obj`` with NaN and infinities as ``None`` and numpy scalars, paths and sets as plain values.

    Strict JSON has no NaN: ``json.dumps(float("nan"))`` writes ``NaN``, which ``jq``,
    JavaScript and Go refuse. A missing value is ``null``.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        plain = (str, int, float, bool, type(None))  # keys json.dumps takes as they are
        return {k if isinstance(k, plain) else str(k): strict_json_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [strict_json_value(v) for v in obj]
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        try:
            return strict_json_value(obj.item())
        except (TypeError, ValueError):
            pass
    if hasattr(obj, "tolist") and callable(obj.tolist):  # arrays
        return strict_json_value(obj.tolist())
    return str(obj)


def json_text(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text of ``obj`` (:func:`strict_json_value`; ``allow_nan=False`` as the guard)."""
    return json.dumps(strict_json_value(obj), indent=indent, allow_nan=False, ensure_ascii=False)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as strict JSON to ``path``, atomically."""
    return write_text(path, json_text(obj, indent=indent) + "\n")


# --------------------------------------------------------------------------- folders

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2``); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # the file system cannot exchange: fall back to two renames
    raise OSError(code, os.strerror(code), str(a))


def replace_folder(path: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Build a folder with ``fill(folder)`` beside ``path``, then swap it in for whatever is there.

    A kill at any moment leaves ``path`` holding the complete old output or the complete new
    one (see the module's notes); the temporaries it may leave are removed by the next call
    (:func:`clean_stale`). Call :func:`check_target` first: this replaces what is there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    new = _temp_name(path, "new")
    new.mkdir(mode=0o777)  # the umask applies
    try:
        fill(new)
        if not os.path.lexists(path):
            os.replace(new, path)
            return path
        if _exchange(new, path):
            old = new  # after the exchange the old output sits at the temporary name
        else:
            old = _temp_name(path, "old")
            os.replace(path, old)
            os.replace(new, path)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
    return path
