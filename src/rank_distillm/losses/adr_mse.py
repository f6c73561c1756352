r"""ADR-MSE: approximate discounted rank mean squared error (Rank-DistiLLM's loss).

.. math:: \mathcal{L} = \frac{1}{N} \sum_{i\ \text{valid}} \frac{(\hat\pi_i - r_i)^2}{\log_2(r_i + 1)}

Inputs: a padded batch (:mod:`.batch`). :math:`\hat\pi_i` is the ApproxRank of
document *i* (:func:`.ranks.approximate_ranks`, sharpness ``alpha``), :math:`r_i` its
rank by label (:func:`.ranks.target_ranks`) and *N* the number of real documents in the
batch. The discount makes an error at the top cost more.

Ties: ``ties="average"`` (default) gives tied documents their average rank, which the
ApproxRank reaches when the student scores them equally, as in the library's
``ADRMSELoss``; ``ties="first"`` breaks ties by list position, which then asks the
student to separate documents the labels do not separate (its minimum is above 0).
Teacher rankings have no ties, and there the two agree (a test pins both facts).

References: Schlatt et al., "Rank-DistiLLM: Closing the Effectiveness Gap Between
Cross-Encoders and LLMs for Passage Re-ranking", ECIR 2025; Qin et al., "A general
approximation framework for direct optimization of information retrieval measures",
Information Retrieval 2010; ``sentence_transformers.cross_encoder.losses.ADRMSELoss``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .batch import prepare_batch
from .listwise import ListwiseLoss
from .ranks import approximate_ranks, target_ranks

BIBTEX = """
@inproceedings{schlatt2025rankdistillm,
    title={Rank-DistiLLM: Closing the Effectiveness Gap Between Cross-Encoders and LLMs for Passage Re-ranking},
    author={Schlatt, Ferdinand and Fr{\\"o}be, Maik and Scells, Harrisen and Zhuang, Shengyao and Koopman, Bevan and Zuccon, Guido and Stein, Benno and Potthast, Martin and Hagen, Matthias},
    booktitle={Advances in Information Retrieval (ECIR 2025)},
    year={2025},
    doi={10.1007/978-3-031-88714-7_31},
}
"""


def adr_mse_loss(scores: Tensor, labels: Tensor, mask: Tensor | None = None,
                 alpha: float = 1.0,
                 ties: Literal["average", "first"] = "average") -> Tensor:
    """ADR-MSE: squared error of ApproxRank against the target rank, discounted."""
    scores, labels, mask = prepare_batch(scores, labels, mask)
    approx = approximate_ranks(scores, mask, alpha)
    ranks = target_ranks(labels, mask, ties)
    per_doc = (approx - ranks) ** 2 / torch.log2(ranks + 1.0)
    return per_doc[mask].mean()


class ADRMSELoss(ListwiseLoss):
    """ADR-MSE (:func:`adr_mse_loss`); arguments as the library's ``ADRMSELoss``."""

    loss_fn = staticmethod(adr_mse_loss)
    config_keys = ("alpha", "ties")
    bibtex = BIBTEX

    def __init__(self, model, alpha=1.0, activation_fn=nn.Identity(), mini_batch_size=None, ties="average") -> None:
        super().__init__(model, activation_fn, mini_batch_size, alpha=alpha, ties=ties)
