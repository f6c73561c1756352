"""The package's user errors: the one place the command line learns what is bad input.

A leaf module (it imports nothing of the package), so that every layer can raise these:

- :class:`DataError`: bad or missing input data, a bad argument, an output that cannot be
  written; the message names the file, line or field and says what to do.
- :class:`ProfileError`: a mistake in a profile (an unknown field or section, a bad
  override, a base that leads back to itself). A :class:`DataError`, so everything that
  reports bad input reports it; also a ``KeyError`` for callers that catch an unknown field
  as such.

:func:`rank_distillm.cli.error_message` turns these (and ``OSError``, network and
``ImportError``) into one line at the command line; any other exception is a bug and keeps
its traceback. Raise one of these at the source, naming what is wrong, rather than letting a
bare ``KeyError`` or ``ValueError`` escape.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad or missing input data; the message names the file, line or field."""


class ProfileError(DataError, KeyError):
    """A bad profile file or override; the message names the file, line or field."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""
