"""A benchmark spec: a profile's ``efficiency.student`` or ``efficiency.teacher`` section.

``model`` (a ``pkg:`` name, a folder or a hub id), ``name`` (how tables call it), ``device``
(default: :func:`rank_distillm.devices.default_device`) and ``from_config``: an architecture
(:data:`rank_distillm.models.ARCHITECTURES`) built with random weights when the named hub
model cannot be loaded (offline); timing and memory do not depend on the weights' values.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..devices import default_device


def spec_device(spec: dict) -> str:
    """The spec's ``device``, else ``cuda`` when there is one, else ``cpu``."""
    return spec.get("device") or default_device()


def hub_available() -> bool:
    """Whether the model hub may be asked (``HF_HUB_OFFLINE`` is not set)."""
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True", "yes")


def use_config(spec: dict) -> bool:
    """Build from the config when the profile allows it and the named hub model is out of reach (offline)."""
    if not spec.get("from_config"):
        return False
    model = spec["model"]
    return not model.startswith("pkg:") and not Path(model).exists() and not hub_available()


def model_name(spec: dict) -> str:
    """What tables call the model: the spec's ``name``, else its folder's name."""
    return spec.get("name") or Path(spec["model"]).name


def student_under_test(profile: dict) -> tuple[str, bool]:
    """``(model folder, trained)``: the profile's first student when it is trained and cached, else the untrained one.

    The untrained student is the training profile's backbone, head and ``separate_layers``
    (:func:`rank_distillm.training.new_model`, seeded), saved once into the cache: the same
    architecture, so the same speed, and a ranker from the start (its cosine head), so the
    variants' agreement with it says what their agreement with a trained one would.
    """
    import hashlib
    import json

    from ..data import cache_dir
    from ..training import new_model, student_dir

    students = profile["training"].get("students") or []
    if students and (student_dir(profile, students[0]) / "final" / "modules.json").is_file():
        return str(student_dir(profile, students[0]) / "final"), True
    cfg = profile["training"]
    key = hashlib.sha1(json.dumps([cfg["model"], cfg["head"], cfg["max_length"], cfg.get("separate_layers"), cfg["seed"]])
                       .encode()).hexdigest()[:12]
    folder = cache_dir() / "efficiency" / f"untrained-student-{key}"
    if not (folder / "modules.json").is_file():
        partial = folder.with_name(folder.name + ".partial")
        new_model(cfg).save_pretrained(str(partial))
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return str(folder), False
