"""Profiles: one code path, three sizes, as data.

A profile is a plain nested dict read from the YAML files in ``profiles/``: one file per
step of the pipeline (``data.yaml``, ``teacher.yaml``, ``training.yaml``, ...), each with
the three sizes side by side::

    smoke:   {max_queries: 3, ...}   # seconds on 2 CPU cores: what CI runs
    cpu:     {max_queries: null, ...} # the real offline data in full: what the book shows
    gpu:     {...}                    # the paper's setup, for Colab or a cluster

``load_profile("cpu")["data"]["max_queries"]``. Code reads values, never the name.

Variants are YAML files of the shape ``{base: gpu, section: {field: value}}``, laid over
the ``base`` profile (default ``cpu``): the named ones live in ``profiles/variants/``
(``load_profile("colab")``), and any other file can be named by its path.

The environment variable ``RANK_DISTILLM_PROFILE`` replaces the *default* profile only
(the Colab set-up cell sets it when a GPU is attached); an explicit ``smoke`` or ``gpu``
is kept.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

PROFILE_DIR = Path(__file__).parent / "profiles"
VARIANT_DIR = PROFILE_DIR / "variants"
PROFILES = ("smoke", "cpu", "gpu")
DEFAULT_PROFILE = "cpu"
PROFILE_ENV = "RANK_DISTILLM_PROFILE"


def sections() -> list[str]:
    """The pipeline steps that have a profile file."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(profile: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = profile
    for key in keys[:-1]:
        if key not in node or not isinstance(node[key], dict):
            raise KeyError(f"profile override {dotted!r}: no section {key!r}")
        node = node[key]
    if keys[-1] not in node:
        raise KeyError(f"profile override {dotted!r}: unknown field {keys[-1]!r} (known: {sorted(node)})")
    node[keys[-1]] = value


def parse_value(text: str) -> Any:
    """A command-line value as YAML would read it, except that ``2e-5`` is a number.

    (YAML 1.1, which PyYAML follows, reads a float only with a dot: ``2.0e-5``; ``2e-5`` would be
    the string "2e-5" and fail later as a learning rate.)
    """
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def load_profile(name: str = DEFAULT_PROFILE, overrides: dict[str, Any] | None = None) -> dict[str, dict]:
    """The profile ``name`` (smoke, cpu, gpu or a YAML path) as ``{section: {field: value}}``.

    ``overrides`` maps dotted fields to values, e.g. ``{"training.epochs": 1}``; an unknown
    field is an error (a typo must not silently keep the default).
    """
    if name == DEFAULT_PROFILE and os.environ.get(PROFILE_ENV):
        name = os.environ[PROFILE_ENV]
    if name in PROFILES:
        profile = {}
        for path in sorted(PROFILE_DIR.glob("*.yaml")):
            table = yaml.safe_load(path.read_text())
            if name not in table:
                raise KeyError(f"{path}: no {name!r} profile")
            profile[path.stem] = table[name]
        profile["name"] = name
    else:
        path = VARIANT_DIR / f"{name}.yaml"
        if not path.is_file():
            path = Path(name)
        if not path.is_file():
            variants = sorted(p.stem for p in VARIANT_DIR.glob("*.yaml"))
            raise ValueError(f"unknown profile {name!r}: use one of {PROFILES + tuple(variants)} or the path of a YAML file")
        custom = yaml.safe_load(path.read_text()) or {}
        base = load_profile(custom.pop("base", DEFAULT_PROFILE))
        profile = _merge(base, custom)
        profile["name"] = str(path)
    for dotted, value in (overrides or {}).items():
        _set_dotted(profile, dotted, value)
    return profile
