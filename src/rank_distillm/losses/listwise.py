"""How a pure loss function becomes a loss module for ``CrossEncoderTrainer``.

``CrossEncoderTrainer`` calls a loss module with the columns of a listwise dataset
(``query``, ``docs``, ``labels``): ``loss([queries, docs_lists], labels_lists)``. The
module scores every (query, document) pair with the model (:func:`score_lists`), pads
the scores into the ``[B, L]`` batch of :mod:`.batch`, and applies its pure function.
:class:`ListwiseLoss` has the constructor and call signature of the library's listwise
cross-encoder losses (``Loss(model, ..., mini_batch_size=None)``,
``forward([queries, docs], labels, prompt=None, task=None)``, ``get_config_dict()``,
``citation``), so the trainer accepts either; each loss module subclasses it in a few
lines (e.g. :class:`.ranknet.RankNetLoss`).

Reference: ``sentence_transformers.cross_encoder.losses`` (the listwise losses there
score their lists with the same mini-batching scheme).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from sentence_transformers.util import batch_to_device, fullname
from torch import Tensor, nn


def list_lengths(inputs: list, labels: list) -> list[int]:
    """The number of documents of each query, after checking that inputs and labels match."""
    if isinstance(labels, Tensor):
        raise ValueError("listwise losses expect one label list per query, got a single tensor")
    if len(inputs) != 2:
        raise ValueError(f"listwise losses expect two inputs (queries, docs_lists), "
                         f"got {len(inputs)}")
    lengths = [len(docs) for docs in inputs[1]]
    if lengths != [len(x) for x in labels]:
        raise ValueError(f"documents per query {lengths} do not match labels per query "
                         f"{[len(x) for x in labels]}")
    if min(lengths, default=0) == 0:
        raise ValueError("every query needs at least one document")
    return lengths


def score_lists(model, inputs: list, labels: list, mini_batch_size: int | None = None,
                activation_fn: nn.Module | None = None, prompt: str | None = None,
                task: str | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Score every (query, document) pair of a listwise batch; return scores, labels, mask.

    ``inputs = [queries, docs_lists]`` and ``labels`` (one sequence per query) as
    ``CrossEncoderTrainer`` passes them. The model is called on ``mini_batch_size`` pairs
    at a time (``None``: as many pairs as there are queries; ``<= 0``: all at once), with
    the same model calls (``model.preprocess``, ``model(tokens)["scores"]``) as the
    library's listwise losses.
    """
    lengths = list_lengths(inputs, labels)
    queries, docs_lists = inputs
    pairs = [(query, doc) for query, docs in zip(queries, docs_lists) for doc in docs]
    step = mini_batch_size or len(queries)
    if step <= 0:
        step = len(pairs)
    logits = []
    for start in range(0, len(pairs), step):
        tokens = model.preprocess(pairs[start : start + step], prompt=prompt, task=task)
        logits.append(model(batch_to_device(tokens, model.device))["scores"].view(-1))
    flat = torch.cat(logits).float()
    if activation_fn is not None:
        flat = activation_fn(flat)
    # Split the flat logits back into lists; pad_sequence keeps the autograd graph.
    pad = partial(nn.utils.rnn.pad_sequence, batch_first=True)
    scores = pad(list(flat.split(lengths)))
    label_matrix = pad([torch.as_tensor(x, dtype=torch.float).view(-1) for x in labels])
    mask = pad([torch.ones(n, dtype=torch.bool) for n in lengths])
    return scores, label_matrix.to(scores.device), mask.to(scores.device)


class ListwiseLoss(nn.Module):
    """Base class: score the lists with the model, then apply the pure ``loss_fn``.

    Subclasses set ``loss_fn``, list its keyword arguments in ``config_keys`` and give
    their ``bibtex``.
    """

    loss_fn: Callable[..., Tensor]
    config_keys: tuple[str, ...] = ()
    bibtex: str = ""

    def __init__(self, model, activation_fn: nn.Module | None = nn.Identity(),
                 mini_batch_size: int | None = None, **loss_kwargs) -> None:
        super().__init__()
        name = type(self).__name__
        unknown = set(loss_kwargs) - set(self.config_keys)
        if unknown:
            raise TypeError(f"{name} got unexpected arguments {sorted(unknown)}")
        if getattr(model, "num_labels", 1) != 1:
            raise ValueError(f"{name} needs a model with 1 output label, got {model.num_labels}")
        self.model = model
        self.activation_fn = activation_fn or nn.Identity()
        self.mini_batch_size = mini_batch_size
        self.loss_kwargs = loss_kwargs

    def compute(self, scores: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        """The loss of a padded batch of scores (what the pure function computes)."""
        return type(self).loss_fn(scores, labels, mask, **self.loss_kwargs)

    def forward(self, inputs: list, labels: list, prompt: str | None = None,
                task: str | None = None) -> Tensor:
        scores, label_matrix, mask = score_lists(self.model, inputs, labels, self.mini_batch_size,
                                                 self.activation_fn, prompt, task)
        return self.compute(scores, label_matrix, mask)

    def get_config_dict(self) -> dict:
        return {**self.loss_kwargs, "activation_fn": fullname(self.activation_fn),
                "mini_batch_size": self.mini_batch_size}

    @property
    def citation(self) -> str:
        return self.bibtex
