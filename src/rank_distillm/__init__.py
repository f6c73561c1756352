"""Rank-DistiLLM: distilling listwise LLM re-rankers into cross-encoders.

The package behind the executable book. One module per step of the story:
``data`` (TREC DL, runs, candidates), ``teacher`` (LLM re-ranking with sliding windows),
``sampling`` (training lists), ``losses`` and ``training`` (the student),
``evaluation`` and ``efficiency`` (what it is worth), ``profiles`` (smoke / cpu / gpu).

Imports point one way (``tests/test_layers.py`` checks it, imports inside functions
included). At the bottom: ``errors`` (:class:`~rank_distillm.errors.DataError`,
``ProfileError``), ``paths`` (the data folder's lookup, the cache, checked input files),
``cli_types`` (argument types), ``downloads``, ``outputs``. Two lower layers reach code that
sits above them only through a function handed down here, when the package is imported (the
imports stay lazy, so ``import rank_distillm.x`` stays cheap):

- ``paths.data_dir`` builds a missing data folder with
  :func:`rank_distillm.sources.build_on_first_use` (``sources`` converts with ``data``,
  ``sampling``'s text repair and the teacher's window loop, so it sits above them);
- ``data.read_run`` reads ``parquet:`` and ``github:`` run specs, and ``data.irds_dataset``
  the released ``ir_datasets`` ids, with :mod:`rank_distillm.released` (which reads them into
  ``data``'s ``Run``, so it sits above ``data``).
"""

from . import data as _data
from . import paths as _paths

__version__ = "0.1.0"


def _build_data_folder(folder, required):
    from .sources import build_on_first_use

    return build_on_first_use(folder, required)


def _read_released(spec):
    from .released import read_released

    return read_released(spec)


def _fetch_github(spec):
    from .released import fetch_github

    return fetch_github(spec)


def _register_released():
    from .released import register

    register()


_paths.set_data_builder(_build_data_folder)
_data.use_released(read_released=_read_released, fetch_github=_fetch_github, register=_register_released)
