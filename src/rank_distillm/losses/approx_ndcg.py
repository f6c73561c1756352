r"""ApproxNDCG: one minus nDCG computed with ApproxRank instead of the hard rank.

.. math:: \mathcal{L} = \frac{1}{B}\sum_b \Big(1 - \frac{1}{\mathrm{maxDCG}}
   \sum_i \frac{G_i}{\log_2(1 + \hat\pi_i)}\Big),\qquad G_i = 2^{y_i} - 1

Inputs: a padded batch (:mod:`.batch`). ``gain="linear"`` uses :math:`G_i = y_i`;
negative labels count as gain 0. :math:`\hat\pi_i` is :func:`.ranks.approximate_ranks`
with sharpness ``alpha``. With graded teacher labels (``100 - rank + 1``) and
:math:`2^y` gains almost all the weight sits on the first document; chapter 4 shows it.
The library has no ApproxNDCG, so the book's is the only one here.

References: Qin et al., "A general approximation framework for direct optimization of
information retrieval measures", Information Retrieval 2010; Bruch et al., "Revisiting
Approximate Metric Optimization in the Age of Deep Neural Networks", SIGIR 2019.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .batch import prepare_batch
from .listwise import ListwiseLoss
from .ranks import approximate_ranks, max_dcg

BIBTEX = """
@article{qin2010approxndcg,
  title={A general approximation framework for direct optimization of information retrieval measures},
  author={Qin, Tao and Liu, Tie-Yan and Li, Hang},
  journal={Information Retrieval},
  volume={13},
  number={4},
  pages={375--397},
  year={2010}
}
"""


def approx_ndcg_loss(scores: Tensor, labels: Tensor, mask: Tensor | None = None,
                     alpha: float = 1.0, gain: Literal["exp2", "linear"] = "exp2",
                     eps: float = 1e-10) -> Tensor:
    """ApproxNDCG: 1 - nDCG with each document at its ApproxRank."""
    if gain not in ("exp2", "linear"):
        raise ValueError(f"gain must be 'exp2' or 'linear', got {gain!r}")
    scores, labels, mask = prepare_batch(scores, labels, mask)
    positive = labels.clamp(min=0.0)
    gains = 2.0**positive - 1.0 if gain == "exp2" else positive
    gains = torch.where(mask, gains, torch.zeros(()))
    approx = approximate_ranks(scores, mask, alpha)
    dcg = torch.where(mask, gains / torch.log2(1.0 + approx), torch.zeros(())).sum(-1)
    return (1.0 - dcg / max_dcg(gains, None, eps)).mean()


class ApproxNDCGLoss(ListwiseLoss):
    """ApproxNDCG (:func:`approx_ndcg_loss`) on (query, docs, labels) lists."""

    loss_fn = staticmethod(approx_ndcg_loss)
    config_keys = ("alpha", "gain", "eps")
    bibtex = BIBTEX

    def __init__(self, model, alpha=1.0, activation_fn=nn.Identity(), mini_batch_size=None, gain="exp2",
                 eps=1e-10) -> None:
        super().__init__(model, activation_fn, mini_batch_size, alpha=alpha, gain=gain, eps=eps)
