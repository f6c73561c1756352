"""The window log: one JSON object per finished window, appended as it completes.

The log is what makes a teacher run safe to interrupt. Each line holds one window
(``qid``, ``window``, ``start``, ``end``, ``docids`` in prompt order, ``prompt``,
``response``, the ``repair`` record, token counts and ``seconds``), written, flushed and
fsynced before the next window starts. A job started again with the same log re-applies the
logged windows and asks the LLM only for the rest, so it ends with exactly the run an
uninterrupted job would have produced.

What keeps a log from being misused:

- *Who wrote it.* Each window records the ``model``, the prompt ``template`` and the
  passage budget ``max_words``; a job whose settings differ is refused with a message that
  says what differs, so the answers of two teachers are never mixed in one run. (Logs
  written before these fields existed are checked on the fields they have.)
- *One writer.* :class:`WindowLog` holds an exclusive ``fcntl.flock`` on the file while it
  is open: a second job on the same log fails at once instead of paying for every window
  twice.
- *Interruptions.* A ``kill -9`` can leave a half-written last line: it is dropped (the file
  is cut back to its last complete line) and that window is asked again. A broken line
  anywhere else is an error naming the file and line: that is damage, not an interruption.
  A window logged twice with the same passages and answer (two jobs that both wrote it) is
  read once; twice with different answers is an error.

The format is the one of ``../shared/data/teacher-logs/``, so a log written here can be
replayed (:class:`~rank_distillm.teacher.backends.ReplayBackend`) like the stored ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from ..data import DataError, input_file

REQUIRED = ("qid", "window", "docids", "response")
# what a window's answer depends on besides its passages: checked when a log is resumed
SETTINGS = ("model", "template", "max_words", "context_size")


class LogRecords(list):
    """The records of a log (a list), plus what reading found at its end.

    ``torn_line``: the number of a half-written last line that was dropped (None: none);
    ``needs_newline``: the last record is complete but the file does not end with a newline.
    """

    torn_line: int | None = None
    needs_newline: bool = False


def window_problem(record: dict) -> str | None:
    """What is wrong with a window record's fields (None: nothing)."""
    if not isinstance(record["qid"], (str, int)) or isinstance(record["qid"], bool):
        return f"qid must be text, not {record['qid']!r}"
    if not isinstance(record["window"], int) or isinstance(record["window"], bool) or record["window"] < 0:
        return f"window must be a whole number >= 0, not {record['window']!r}"
    if not isinstance(record["docids"], list) or not all(isinstance(d, (str, int)) for d in record["docids"]):
        return "docids must be a list of passage ids"
    return None


def _looks_like_a_record(line: bytes) -> bool:
    return line.lstrip().startswith(b"{")


def read_log(path: str | os.PathLike, *, repair_tail: bool = False, required: tuple[str, ...] = REQUIRED,
             what: str = "window", validate: Callable[[dict], str | None] | None = None) -> LogRecords:
    """All complete records of a JSONL log, in file order, each with its ``_line`` number.

    A last line that is cut off (an interrupted write: it starts a JSON object, does not
    parse and has no newline yet) is ignored, and with ``repair_tail=True`` cut off the file;
    a last line that is a complete record without its newline is read. Any other bad line (not UTF-8, not JSON,
    not an object), a record that lacks a ``required`` field, or one that ``validate``
    finds a problem with, is a :class:`DataError` naming file and line. Any append-only
    JSONL file written this way can be read with it (``what`` names its records in
    errors): the benchmark's rows use it too.
    """
    path = Path(path)
    out = LogRecords()
    if not os.path.lexists(path):
        return out
    input_file(path, f"{what} log")  # not a folder, FIFO, device or symlink loop
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    if lines[-1].strip():
        out.needs_newline = True  # the last line has no newline; it is complete or torn (below)
    else:
        lines = lines[:-1]
    good_bytes = 0
    for n, line in enumerate(lines, start=1):
        last = n == len(lines)
        if line.strip():
            record, problem = None, None
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as error:
                problem = f"not UTF-8 text (byte {line[error.start]:#04x} at column {error.start + 1})"
            except json.JSONDecodeError as error:
                problem = f"not valid JSON ({error.msg})"
            except RecursionError:
                problem = "JSON nested too deeply to be a record"
            if problem is not None:
                if last and out.needs_newline and _looks_like_a_record(line):
                    out.torn_line, out.needs_newline = n, False  # an interrupted write: no newline yet
                    break
                raise DataError(f"{path} line {n}: {problem}")
            if not isinstance(record, dict):
                raise DataError(f"{path} line {n}: not a JSON object")
            missing = [k for k in required if k not in record]
            if missing:
                raise DataError(f"{path} line {n}: {what} record lacks field(s) {missing}")
            problem = validate(record) if validate else None
            if problem:
                raise DataError(f"{path} line {n}: {problem}")
            record["_line"] = n
            out.append(record)
        good_bytes += len(line) + (0 if last and out.needs_newline else 1)
    if repair_tail and out.torn_line is not None:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return out


def read_windows(path: str | os.PathLike, repair_tail: bool = False) -> LogRecords:
    """:func:`read_log` for a window log: fields ``qid``, ``window``, ``docids``, ``response``, checked."""
    return read_log(path, repair_tail=repair_tail, validate=window_problem)


def _describe(settings: dict) -> str:
    words = settings.get("max_words")
    context = settings.get("context_size")
    return (f"model {settings.get('model')!r}, prompt template {settings.get('template')!r}, "
            f"{words} words per passage" + (f" shrunk to fit a context of {context} tokens" if context else ""))


def _lock(f, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DataError(
            f"{path}: another job is writing this window log (it holds the file's lock); wait for it to end, "
            f"or give this job its own log (--log NEW)"
        ) from None


class WindowLog:
    """An append-only JSONL log of windows, keyed by ``(qid, window)``, locked while open.

    ``WindowLog(path)`` takes the log's lock (a second one fails at once), reads what is
    there (cutting off a half-written last line); ``log.check_settings(settings)`` refuses a
    log written with another model, template or word budget; ``log.get(qid, window)``
    returns a logged record, ``log.append(record)`` writes one durably. ``WindowLog(None)``
    is a log that keeps nothing on disk. A log that this object created and never wrote
    to is removed again on :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None
        self.records: dict[tuple[str, int], dict] = {}
        self._file = None
        self._created = False
        self._needs_newline = False
        if self.path is None:
            return
        if os.path.lexists(self.path):
            input_file(self.path, "window log")  # open() would block on a FIFO
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._created = not self.path.exists()
        self._file = open(self.path, "ab")
        try:
            _lock(self._file, self.path)
            records = read_windows(self.path, repair_tail=True)
        except BaseException:
            self.close()
            raise
        self._needs_newline = records.needs_newline
        for record in records:
            key = (str(record["qid"]), int(record["window"]))
            first = self.records.get(key)
            if first is None:
                self.records[key] = record
            elif (first["docids"], first["response"]) != (record["docids"], record["response"]):
                self.close()
                raise DataError(
                    f"{self.path} line {record['_line']}: window {key[1]} of query {key[0]} is logged twice with "
                    f"different passages or answers (first on line {first['_line']}); keep one of the two lines"
                )

    def __len__(self) -> int:
        return len(self.records)

    def check_settings(self, settings: dict) -> None:
        """Refuse the log if a window in it was written with other ``settings`` (model, template, max_words, context_size).

        A field that a record lacks (a log from before it was recorded) is not compared.
        """
        for record in sorted(self.records.values(), key=lambda r: r["_line"] if "_line" in r else 0):
            differ = [k for k in SETTINGS if k in settings and k in record and record[k] != settings[k]]
            if differ:
                old = {k: record.get(k) for k in SETTINGS}
                raise DataError(
                    f"{self.path} line {record.get('_line', '?')}: the log was written with {_describe(old)}, "
                    f"this job uses {_describe(settings)} ({' and '.join(differ)} {'differs' if len(differ) == 1 else 'differ'}); resuming would mix the "
                    f"answers of two teachers: give this job a new --log, or the settings the log was written with"
                )

    def get(self, qid: str, window: int) -> dict | None:
        return self.records.get((str(qid), int(window)))

    def append(self, record: dict) -> None:
        """Append one window and make it durable (flush + fsync) before returning."""
        key = (str(record["qid"]), int(record["window"]))
        self.records[key] = record
        if self._file is None:
            return
        clean = {k: v for k, v in record.items() if not k.startswith("_")}
        line = json.dumps(clean, ensure_ascii=False) + "\n"
        if self._needs_newline:
            line, self._needs_newline = "\n" + line, False
        self._file.write(line.encode("utf-8"))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._created = False  # written to: it is the user's log now

    def close(self) -> None:
        if self._file is not None:
            if self._created and self.path.exists() and self.path.stat().st_size == 0:
                self.path.unlink()  # created by this object and never written: leave nothing behind
            self._file.close()  # releases the lock
            self._file = None

    def __enter__(self) -> "WindowLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
