"""Looking inside the losses: gradients on known scores, and the check against the library.

:class:`FixedScoresModel` stands in for a cross-encoder and returns given logits, so a
loss *module* (the book's or the library's) can run on known scores through its own
batching code. :func:`score_gradients` gives a pure loss's value and gradient;
:func:`library_agreement` compares the book's modules with the library's. Chapter 4
uses all three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from sentence_transformers.cross_encoder import CrossEncoder
from torch import Tensor, nn

from .registry import make_loss


class FixedScoresModel(CrossEncoder):
    """A stand-in cross-encoder that returns given logits, to run a loss module on known scores.

    Documents are named by their index into ``logits`` (``"0"``, ``"1"``, ...); queries
    are ignored. It has what the losses use: ``preprocess``, ``device``, ``num_labels`` and
    ``forward(tokens)["scores"]``. It subclasses ``CrossEncoder`` only so that the
    library's ``isinstance`` checks pass; no transformer is loaded. :meth:`lists` turns a
    padded batch into the ``(inputs, labels)`` the modules take.
    """

    num_labels = 1

    def __init__(self, logits: Tensor) -> None:
        nn.Module.__init__(self)  # skip CrossEncoder.__init__: there is no checkpoint to load
        self.logits = logits

    @property
    def device(self) -> torch.device:
        return self.logits.device

    def preprocess(self, pairs, prompt=None, task=None) -> dict[str, Tensor]:
        return {"index": torch.tensor([int(doc) for _, doc in pairs], dtype=torch.long)}

    def forward(self, tokens: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"scores": self.logits[tokens["index"]].unsqueeze(-1)}

    @staticmethod
    def lists(labels: Tensor, mask: Tensor) -> tuple[list, list[Tensor]]:
        """``(inputs, label_lists)`` for a padded batch whose real entries are numbered row by row."""
        queries, docs, label_lists, index = [], [], [], 0
        for b in range(labels.shape[0]):
            n = int(mask[b].sum())
            if not bool(mask[b, :n].all()):
                raise ValueError("padding must come after the real documents of each row")
            queries.append(f"q{b}")
            docs.append([str(index + i) for i in range(n)])
            label_lists.append(labels[b, :n].float())
            index += n
        return [queries, docs], label_lists


def score_gradients(loss: Callable[..., Tensor], scores: Tensor, labels: Tensor, mask: Tensor | None = None,
                    **kwargs) -> tuple[float, Tensor]:
    """``(value, d loss / d scores)`` of a pure loss function on a padded batch."""
    leaf = scores.detach().float().clone().requires_grad_(True)
    mask = torch.ones_like(leaf, dtype=torch.bool) if mask is None else mask
    value = loss(leaf, labels, mask, **kwargs)
    (grad,) = torch.autograd.grad(value, leaf)
    return value.item(), grad


def library_agreement(scores: Tensor, labels: Tensor, mask: Tensor,
                      names: Sequence[str] = ("ranknet", "listnet", "adr-mse", "lambdaloss")) -> list[dict]:
    """Run the book's and the library's module of each loss on the same scores.

    Both get the same :class:`FixedScoresModel`, so both score the same lists through their
    own batching code. Returns one row per loss: both values, and the largest absolute
    difference of the values and of the gradients with respect to the scores.
    """
    flat = scores.detach().float()[mask]
    inputs, label_lists = FixedScoresModel.lists(labels, mask)
    rows = []
    for name in names:
        results = {}
        for implementation in ("book", "library"):
            logits = flat.clone().requires_grad_(True)
            module = make_loss(name, FixedScoresModel(logits), implementation)
            value = module(inputs, label_lists)
            (grad,) = torch.autograd.grad(value, logits)
            results[implementation] = (value.item(), grad)
        rows.append({
            "loss": name,
            "book": results["book"][0],
            "library": results["library"][0],
            "max |value diff|": abs(results["book"][0] - results["library"][0]),
            "max |grad diff|": float((results["book"][1] - results["library"][1]).abs().max()),
        })
    return rows
