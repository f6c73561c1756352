"""The one downloader: a bounded, streamed fetch of one URL into one file.

Both the data's raw sources (:mod:`rank_distillm.sources`) and the ``github:`` run specs
(:func:`rank_distillm.released.fetch_github`) come through :func:`fetch_to`, so that no
server, slow, stalled, lying or hostile, can hang a command, fill a disk or leave a part:

- **a connect and read timeout** (``RANK_DISTILLM_DOWNLOAD_TIMEOUT``, default 30 s): a
  server that accepts and then says nothing fails after that long;
- **an overall deadline per file** (``RANK_DISTILLM_DOWNLOAD_DEADLINE``, default
  ``120 s + 1 s per 100 kB`` of the expected size): a server that trickles a byte now and
  then, each read well inside the timeout, still fails once the deadline has passed;
- **a byte cap**, the expected size when it is known (a ``Content-Length`` above it is
  refused before the body is read, and the transfer stops at the first byte beyond it),
  else ``max_bytes``: nothing larger ever reaches the disk;
- **redirects** are followed as ``urllib`` follows them (at most 10, ``http``/``https``
  only; a loop is an error);
- the body is streamed to ``NAME.part`` (created with the user's umask) and renamed to
  ``NAME`` only once ``check`` accepts it; on any failure the part is removed.

Every failure is a :class:`SourceUnreachable` (or :class:`ChecksumMismatch`, from
``check``) naming the URL, a :class:`~rank_distillm.errors.DataError`: one line at the
command line.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from .errors import DataError

OFFLINE_ENV = "RANK_DISTILLM_OFFLINE"
HUB_OFFLINE_ENV = "HF_HUB_OFFLINE"
TIMEOUT_ENV = "RANK_DISTILLM_DOWNLOAD_TIMEOUT"
DEADLINE_ENV = "RANK_DISTILLM_DOWNLOAD_DEADLINE"
TIMEOUT_S = 30.0
CHUNK = 1 << 16


class SourceUnreachable(DataError):
    """A file could not be fetched (no network, a bad URL, an HTTP error, a timeout, too many bytes)."""


class ChecksumMismatch(DataError):
    """A fetched (or converted) file is not the one the checksums name."""


def _flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    return None if not value else value not in ("0", "false", "no", "off")


def download_forbidden() -> str | None:
    """Why downloads are off (the variable that says so), or ``None`` when they are allowed.

    Off when ``RANK_DISTILLM_OFFLINE`` is true, or, when that variable is unset, when
    ``HF_HUB_OFFLINE`` is.
    """
    own = _flag(OFFLINE_ENV)
    if own is not None:
        return f"{OFFLINE_ENV}={os.environ[OFFLINE_ENV]} forbids downloads" if own else None
    if _flag(HUB_OFFLINE_ENV):
        return (f"{HUB_OFFLINE_ENV}={os.environ[HUB_OFFLINE_ENV]} forbids downloads "
                f"({OFFLINE_ENV}=0 allows the data's while the model hub stays offline)")
    return None


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{name}={text!r} is not a number of seconds") from None
    if not value > 0:
        raise DataError(f"{name}={text!r} must be a positive number of seconds")
    return value


def timeout_s() -> float:
    """Seconds a connection or one read may wait (``RANK_DISTILLM_DOWNLOAD_TIMEOUT``, default 30)."""
    return _seconds(TIMEOUT_ENV, TIMEOUT_S)


def deadline_s(size: int | None) -> float:
    """Seconds one file may take in all (``RANK_DISTILLM_DOWNLOAD_DEADLINE``, else 120 s + 1 s per 100 kB)."""
    return _seconds(DEADLINE_ENV, 120.0 + (size or 0) / 100_000)


def _part_file(path: Path):
    """``path`` opened for writing, created with the user's umask (``0666 & ~umask``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    return os.fdopen(fd, "wb")


def fetch_to(url: str, target: str | os.PathLike, *, size: int | None = None, max_bytes: int | None = None,
             check: Callable[[Path], None] | None = None, progress: Callable[[int], None] | None = None,
             what: str | None = None) -> Path:
    """Stream ``url`` into ``target`` within the bounds above; returns ``target``.

    ``size``: the expected size in bytes (a different size is an error, and it is the cap);
    ``max_bytes``: the cap when the size is not known; ``check(part)``: raises when the
    downloaded bytes are not the right ones (checksums); ``progress(n)``: called with each
    chunk's length; ``what``: how messages name the file (default the URL).
    """
    target = Path(target)
    name = what or url
    cap = size if size is not None else max_bytes
    bound = "expected" if size is not None else "allowed"
    timeout, deadline = timeout_s(), deadline_s(size or max_bytes)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    start = time.monotonic()
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise SourceUnreachable(f"could not fetch {name}: the server answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        raise SourceUnreachable(f"could not fetch {name}: {reason}") from None
    got = 0
    try:
        with response, _part_file(part) as f:
            length = response.headers.get("Content-Length") if hasattr(response, "headers") else None
            if cap is not None and length and length.strip().isdigit() and int(length) > cap:
                raise SourceUnreachable(f"could not fetch {name}: the server announces {int(length)} bytes, "
                                        f"more than the {cap} {bound}; nothing was kept")
            read = getattr(response, "read1", None) or response.read
            while True:
                if time.monotonic() - start > deadline:
                    raise SourceUnreachable(f"could not fetch {name}: not complete after {deadline:.0f} s "
                                            f"({got} bytes arrived; {DEADLINE_ENV} sets the limit); nothing was kept")
                try:
                    chunk = read(CHUNK)
                except (socket.timeout, TimeoutError):
                    raise SourceUnreachable(f"could not fetch {name}: the server sent nothing for {timeout:.0f} s "
                                            f"({TIMEOUT_ENV} sets the limit); nothing was kept") from None
                except (OSError, http.client.HTTPException) as error:
                    raise SourceUnreachable(f"the transfer of {name} broke off: {error}; nothing was kept") from None
                if not chunk:
                    break
                got += len(chunk)
                if cap is not None and got > cap:
                    raise SourceUnreachable(f"could not fetch {name}: more than the {cap} bytes {bound} arrived; "
                                            f"the transfer was stopped and nothing was kept")
                try:
                    f.write(chunk)
                except OSError as error:  # a full disk: say which file
                    raise OSError(error.errno, error.strerror, str(part)) from None
                if progress is not None:
                    progress(len(chunk))
        if size is not None and got != size:
            raise ChecksumMismatch(f"{name}: expected {size} bytes, got {got}; the file was discarded")
        if check is not None:
            check(part)
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return target
