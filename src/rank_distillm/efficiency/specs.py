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
