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
import difflib
import os
from pathlib import Path
from typing import Any

import yaml

from .errors import DataError, ProfileError  # noqa: F401 - re-exported: profiles.ProfileError

PROFILE_DIR = Path(__file__).parent / "profiles"
VARIANT_DIR = PROFILE_DIR / "variants"
PROFILES = ("smoke", "cpu", "gpu")
DEFAULT_PROFILE = "cpu"
PROFILE_ENV = "RANK_DISTILLM_PROFILE"


def sections() -> list[str]:
    """The pipeline steps that have a profile file."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


# Fields whose value is a mapping of names that a profile may extend (dataset years, LLM runs,
# vLLM engine arguments), as opposed to a section whose fields are fixed.
OPEN_FIELDS = ("data.datasets", "data.first_stage", "data.llm_runs", "teacher.engine", "training.stage2.teacher")


def _closest(name: str, known) -> str:
    match = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else f" (known: {', '.join(sorted(map(str, known)))})"


def _is_open(dotted: str) -> bool:
    return any(dotted == f or dotted.startswith(f + ".") for f in OPEN_FIELDS)


def _merge(base: dict, over: dict, where: str = "", prefix: str = "") -> dict:
    """``over`` laid over ``base``; a field that ``base`` lacks is an error naming it and the closest one."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        dotted = f"{prefix}{key}"
        if key not in out and not _is_open(dotted):
            raise ProfileError(f"{where}unknown field {dotted!r}{_closest(key, out)}")
        if isinstance(out.get(key), dict):
            if value is not None and not isinstance(value, dict):
                raise ProfileError(f"{where}{dotted} must be a mapping of fields, not {value!r}")
            out[key] = _merge(out[key], value or {}, where, dotted + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(profile: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = profile
    for i, key in enumerate(keys[:-1]):
        if key not in node or not isinstance(node[key], dict):
            raise ProfileError(f"profile override {dotted!r}: no section {'.'.join(keys[:i + 1])!r}{_closest(key, node)}")
        node = node[key]
    if keys[-1] not in node and not _is_open(dotted):
        raise ProfileError(f"profile override {dotted!r}: unknown field {keys[-1]!r}{_closest(keys[-1], node)}")
    problem = tree_problem(value)
    if problem:
        raise ProfileError(f"profile override {dotted!r}: {problem}")
    if isinstance(node.get(keys[-1]), dict):  # a section: merged field by field, never replaced by a value
        if not isinstance(value, dict):
            raise ProfileError(f"profile override {dotted!r}: {dotted} is a section of fields, not a value "
                               f"({value!r}); set one of its fields, e.g. {dotted}.{next(iter(node[keys[-1]]), 'FIELD')}=VALUE")
        node[keys[-1]] = _merge(node[keys[-1]], value, f"profile override {dotted!r}: ", dotted + ".")
        return
    node[keys[-1]] = value


def parse_value(text: str, what: str = "--set") -> Any:
    """A command-line value as YAML would read it, except that ``2e-5`` is a number.

    (YAML 1.1, which PyYAML follows, reads a float only with a dot: ``2.0e-5``; ``2e-5`` would be
    the string "2e-5" and fail later as a learning rate.) Text that is not YAML is a
    :class:`~rank_distillm.data.DataError` naming ``what``.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise DataError(f"{what} value {text!r} is not valid YAML ({problem}); quote it as text or fix it") from None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def read_yaml(path: Path) -> Any:
    """A YAML file; malformed YAML or a file that cannot be read is a :class:`DataError` naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start + 1})") from None
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise DataError(f"{path}{line}: not valid YAML ({problem})") from None
    except RecursionError:
        raise DataError(f"{path}: not valid YAML (nested too deeply)") from None
    problem = tree_problem(value)
    if problem:
        raise DataError(f"{path}: {problem}")
    return value


MAX_VALUES = 100_000  # values in a profile once its aliases are expanded (the real ones have a few hundred)


def tree_problem(value: Any, limit: int = MAX_VALUES) -> str | None:
    """What makes a loaded YAML tree unusable as a profile (None: nothing).

    YAML aliases (``*name``) share one object; a profile is copied and hashed as if each
    were written out. A tree that refers to itself (``&a [*a]``) has no end, and a few lines
    of aliases of aliases ("billion laughs") expand to more values than memory holds: both
    are refused here, before anything copies or hashes them.
    """
    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(node, where: str) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in visiting:
            raise _Cycle(where or "the top level")
        visiting.add(key)
        items = node.items() if isinstance(node, dict) else enumerate(node)
        total = 1
        for k, v in items:
            total += size(v, f"{where}.{k}" if where else str(k))
            if total > limit:
                break
        visiting.discard(key)
        sizes[key] = total
        return total

    try:
        total = size(value, "")
    except _Cycle as cycle:
        return f"the field {cycle.args[0]!r} contains itself (a YAML alias that refers to its own anchor)"
    except RecursionError:
        return "nested too deeply"
    if total > limit:
        return f"its aliases expand to more than {limit:,} values (a YAML alias bomb?); write the values out"
    return None


class _Cycle(Exception):
    pass


def load_profile(name: str = DEFAULT_PROFILE, overrides: dict[str, Any] | None = None,
                 _seen: tuple[Path, ...] = ()) -> dict[str, dict]:
    """The profile ``name`` (smoke, cpu, gpu or a YAML path) as ``{section: {field: value}}``.

    A YAML file is a mapping ``{base: PROFILE, section: {field: value}}`` checked against the
    fields of its base: a typo (``windw``) is an error that names the field and the closest
    known one, as is malformed YAML (with its line) or a file that is not a mapping.
    ``overrides`` maps dotted fields to values, e.g. ``{"training.epochs": 1}``; an unknown
    field is an error too (a typo must not silently keep the default).
    """
    name = str(name)
    if name == DEFAULT_PROFILE and os.environ.get(PROFILE_ENV):
        name = os.environ[PROFILE_ENV]
    if name in PROFILES:
        profile = {}
        for path in sorted(PROFILE_DIR.glob("*.yaml")):
            table = read_yaml(path)
            if not isinstance(table, dict) or name not in table:
                raise ProfileError(f"{path}: no {name!r} profile")
            profile[path.stem] = table[name]
        profile["name"] = name
    else:
        path = VARIANT_DIR / f"{name}.yaml"
        if not path.is_file():
            path = Path(name).expanduser()
        if os.path.lexists(path) and not path.is_file():
            from .paths import input_file

            input_file(path, "profile file")  # a folder, FIFO or symlink loop: say so, not "unknown"
        if not path.is_file():
            variants = sorted(p.stem for p in VARIANT_DIR.glob("*.yaml"))
            raise ProfileError(f"unknown profile {name!r}: use one of {PROFILES + tuple(variants)} or the path of a YAML file")
        if path.resolve() in _seen:
            raise ProfileError(f"{path}: its base leads back to itself")
        custom = read_yaml(path)
        if custom is None:
            custom = {}
        if not isinstance(custom, dict):
            raise ProfileError(f"{path}: a profile file is a mapping {{base: PROFILE, section: {{field: value}}}}, "
                               f"not a {type(custom).__name__}")
        base_name = custom.pop("base", DEFAULT_PROFILE)
        if not isinstance(base_name, str):
            raise ProfileError(f"{path}: base must be a profile name or path, not {base_name!r}")
        base = load_profile(base_name, _seen=(*_seen, path.resolve()))
        base_fields = {k: v for k, v in base.items() if k != "name"}
        profile = _merge(base_fields, custom, where=f"{path}: ")
        profile["name"] = str(path)
    for dotted, value in (overrides or {}).items():
        _set_dotted(profile, dotted, value)
    return profile
