"""The window log: one JSON object per finished window, appended as it completes.

The log is what makes a teacher run safe to interrupt. Each line holds one window
(``qid``, ``window``, ``start``, ``end``, ``docids`` in prompt order, ``prompt``,
``response``, the ``repair`` record, token counts and ``seconds``), written, flushed and
fsynced before the next window starts. A job started again with the same log re-applies the
logged windows and asks the LLM only for the rest, so it ends with exactly the run an
uninterrupted job would have produced.

A ``kill -9`` can leave a half-written last line: it is dropped (the file is cut back to
its last complete line) and that window is asked again. A broken line anywhere else is an
error naming the file and line: that is damage, not an interruption.

The format is the one of ``../shared/data/teacher-logs/``, so a log written here can be
replayed (:class:`~rank_distillm.teacher.backends.ReplayBackend`) like the stored ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..data import DataError

REQUIRED = ("qid", "window", "docids", "response")


def read_log(path: str | os.PathLike, *, repair_tail: bool = False, required: tuple[str, ...] = REQUIRED,
             what: str = "window") -> list[dict]:
    """All complete records of a window log, in file order, each with its ``_line`` number.

    A last line without its newline, or one that is not valid JSON, is an interrupted write:
    it is ignored, and with ``repair_tail=True`` cut off the file. Any other bad line, or a
    record that lacks a ``required`` field, is a :class:`DataError` naming file and line.
    Any append-only JSONL file written this way can be read with it (``what`` names its
    records in errors): the benchmark's rows use it too.
    """
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail: what follows the last newline ("" if none)
    records = []
    good_bytes = 0
    for n, line in enumerate(complete, start=1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                if n == len(complete) and not tail.strip():
                    # the last line ended with a newline but is garbage: an interrupted write too
                    break
                raise DataError(f"{path} line {n}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path} line {n}: not a JSON object")
            missing = [k for k in required if k not in record]
            if missing:
                raise DataError(f"{path} line {n}: {what} record lacks field(s) {missing}")
            record["_line"] = n
            records.append(record)
        good_bytes += len(line) + 1
    if repair_tail and good_bytes < len(raw):
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return records


class WindowLog:
    """An append-only JSONL log of windows, keyed by ``(qid, window)``.

    ``WindowLog(path)`` reads what is there (cutting off a half-written last line);
    ``log.get(qid, window)`` returns a logged record, ``log.append(record)`` writes one
    durably. ``WindowLog(None)`` is a log that keeps nothing on disk.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None
        self.records: dict[tuple[str, int], dict] = {}
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for record in read_log(self.path, repair_tail=True):
                key = (str(record["qid"]), int(record["window"]))
                if key in self.records:
                    raise DataError(
                        f"{self.path} line {record['_line']}: window {key[1]} of query {key[0]} is logged "
                        f"twice (first on line {self.records[key]['_line']})"
                    )
                self.records[key] = record

    def __len__(self) -> int:
        return len(self.records)

    def get(self, qid: str, window: int) -> dict | None:
        return self.records.get((str(qid), int(window)))

    def append(self, record: dict) -> None:
        """Append one window and make it durable (flush + fsync) before returning."""
        key = (str(record["qid"]), int(record["window"]))
        self.records[key] = record
        if self.path is None:
            return
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")
        clean = {k: v for k, v in record.items() if not k.startswith("_")}
        self._file.write(json.dumps(clean, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "WindowLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
