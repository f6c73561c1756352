"""Re-ranking on precomputed passage states: the split student's index, and what it costs to store.

A student with ``separate_layers = n`` encodes each passage alone in its first ``n`` layers
(:mod:`rank_distillm.student`), so those layers' output depends on the passage only and can
be computed once, at indexing time, before any query arrives (PreTTR, MacAvaney et al., SIGIR
2020). At query time only the query's own lower layers (a few tokens) and the joint upper
layers run: with MiniLM's 6 layers and ``n = 5``, one layer of six over the pair.

The states, their store and the upper layers are :mod:`rank_distillm.passage_states`' (the one
home of lower-layer state caching); this module adds what a re-ranking service needs around
them:

- :class:`PrecomputedStudent`: ``index(passages)`` stores each passage's layer-``n`` states
  (as the passage alone: ``[CLS] passage [SEP]``, cut to what fits beside an empty query);
  ``predict(pairs)`` scores like the student (a passage the pair's truncation cuts shorter is
  another segment, computed when it is met, so scores stay the student's);
- :func:`storage` the bytes per passage of a store in ``float32``, ``float16`` or ``int8``,
  from the passages' token counts, and :func:`corpus_bytes` extrapolated to a corpus.
"""

from __future__ import annotations

import time
from typing import Sequence

MSMARCO_PASSAGES = 8_841_823  # passages of the MS MARCO passage corpus


class PrecomputedStudent:
    """A split student that re-ranks on stored passage states (its joint layers only, at query time).

    ``student``: a saved split student's ``CrossEncoder`` (``separate_layers >= 1``);
    ``dtype``: how the states are stored (``float32``, ``float16`` or ``int8``; see
    :class:`~rank_distillm.passage_states.StateStore`).
    """

    def __init__(self, student, dtype: str = "float16", batch_size: int = 32):
        from ..passage_states import StateStore, precomputed_student

        self.student = student
        self.model = precomputed_student(student, StateStore(dtype))
        self.states = self.model[0]
        self.batch_size = batch_size
        self.params = int(sum(p.numel() for p in student.model.parameters()))

    @property
    def store(self):
        return self.states.store

    def index(self, passages: Sequence[str], progress: bool = False) -> dict:
        """Compute and store the states of ``passages`` (each alone); the store's figures and the seconds it took."""
        start = time.perf_counter()
        figures = self.states.precompute([("", p) for p in dict.fromkeys(passages)], progress=progress)
        return {**figures, "passages": len(dict.fromkeys(passages)), "seconds": time.perf_counter() - start}

    def predict(self, pairs, batch_size: int | None = None, **_):
        """Scores of ``(query, passage)`` pairs: stored passage states, the query's lower layers, the joint layers."""
        import torch

        return self.model.predict(list(pairs), batch_size=batch_size or self.batch_size, show_progress_bar=False,
                                  activation_fn=torch.nn.Identity())


def passage_tokens(student, passages: Sequence[str]) -> list[int]:
    """Tokens each passage's stored state holds: ``[CLS] passage [SEP]`` as the student tokenises it beside an empty query."""
    features = student.preprocess([("", p) for p in passages])
    return (features["token_type_ids"].bool() & features["attention_mask"].bool()).sum(1).tolist()


def storage(student, passages: Sequence[str], dtypes: Sequence[str] = ("float32", "float16", "int8")) -> "pd.DataFrame":  # noqa: F821
    """Bytes per passage, and for ``passages`` in all, of a state store in each of ``dtypes``.

    A token's state is ``hidden`` numbers: ``4 h`` bytes in float32, ``2 h`` in float16,
    ``h + 4`` in int8 (one float32 scale per token); a passage holds its tokens' states.
    """
    import numpy as np
    import pandas as pd

    from ..passage_states import StateStore

    tokens = np.asarray(passage_tokens(student, list(passages)), dtype=np.int64)
    hidden = student.model.config.hidden_size
    rows = []
    for dtype in dtypes:
        per_token = StateStore(dtype, hidden).bytes_per_token
        rows.append({"dtype": dtype, "bytes_per_token": per_token, "tokens_per_passage": float(tokens.mean()),
                     "bytes_per_passage": float(tokens.mean() * per_token), "passages": len(tokens),
                     "bytes": int(tokens.sum() * per_token)})
    return pd.DataFrame(rows)


def corpus_bytes(bytes_per_passage: float, passages: int = MSMARCO_PASSAGES) -> float:
    """A corpus's store, extrapolated from the mean bytes per passage (default: MS MARCO's 8.8M passages)."""
    return bytes_per_passage * passages
