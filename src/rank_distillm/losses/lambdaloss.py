r"""LambdaLoss: RankNet's pairs, each weighted by how much it matters for nDCG.

.. math:: \mathcal{L} = -\frac{1}{|P|} \sum_{(i,j) \in P} w_{ij} \log_b \sigma\big(\sigma_s (s_i - s_j)\big)

Inputs: a padded batch (:mod:`.batch`); :math:`P = \{y_i > y_j\}` and the logistic terms
are RankNet's (:mod:`.ranknet`). Let :math:`r_i` be the student's rank of document *i*,
:math:`D(r) = \log_2(1 + r)` and :math:`G_i = (2^{y_i} - 1) / \mathrm{maxDCG@k}` the
normalised gain. The weightings (:func:`lambda_weights`):

* ``"none"``: :math:`w = 1` (RankNet);
* ``"lambdarank"``: :math:`w = |1/D(r_i) - 1/D(r_j)|\,|G_i - G_j|`;
* ``"ndcg2"``: :math:`w = \delta_{|r_i - r_j|}\,|G_i - G_j|` with
  :math:`\delta_n = 1/D(n) - 1/D(n+1)`;
* ``"ndcg2++"`` (the default, the LambdaLoss paper's best): :math:`\mu \cdot` ndcg2 + lambdarank.

Negative labels count as gain 0, as in the library. ``k`` keeps pairs with at least one
document in the student's top ``k`` and cuts maxDCG at ``k``. Ties between *scores* are
broken by list position (a stable sort); the library sorts with ``torch.sort``, which
promises no order among ties, so on tied scores the weights may differ. With distinct
scores both give the same value and gradient.

References: Wang et al., "The LambdaLoss Framework for Ranking Metric Optimization",
CIKM 2018; ``sentence_transformers.cross_encoder.losses.LambdaLoss`` with
``NDCGLoss2PPScheme``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .batch import prepare_batch, zero_loss
from .listwise import ListwiseLoss
from .ranknet import ordered_pairs, pair_logistic
from .ranks import max_dcg, predicted_ranks

WEIGHTINGS = ("none", "lambdarank", "ndcg2", "ndcg2++")

BIBTEX = """
@inproceedings{wang2018lambdaloss,
  title={The LambdaLoss Framework for Ranking Metric Optimization},
  author={Wang, Xuanhui and Li, Cheng and Golbandi, Nadav and Bendersky, Michael and Najork, Marc},
  booktitle={Proceedings of the 27th ACM international conference on information and knowledge management},
  pages={1313--1322},
  year={2018}
}
"""


def lambda_weights(ranks: Tensor, labels: Tensor, mask: Tensor, weighting: str = "ndcg2++",
                   mu: float = 10.0, k: int | None = None, eps: float = 1e-10) -> Tensor:
    """``[B, L, L]``: each pair's weight w_ij, from the student's ranks and the gains."""
    if weighting == "none":
        return torch.ones_like(ranks)[:, :, None]
    gains = torch.where(mask, 2.0 ** labels.clamp(min=0.0) - 1.0, torch.zeros(()))
    gain = gains / max_dcg(gains, k or ranks.shape[-1], eps)[:, None]
    gain_gap = (gain[:, :, None] - gain[:, None, :]).abs()
    inv_discount = 1.0 / torch.log2(1.0 + ranks)
    lambdarank = (inv_discount[:, :, None] - inv_discount[:, None, :]).abs() * gain_gap
    gap = (ranks[:, :, None] - ranks[:, None, :]).abs()
    delta = (1.0 / torch.log2(1.0 + gap) - 1.0 / torch.log2(2.0 + gap)).abs()
    delta = torch.where(gap > 0, delta, torch.zeros(()))  # 1/log2(1) is inf for i = j
    ndcg2 = delta * gain_gap
    weights = {"lambdarank": lambdarank, "ndcg2": ndcg2, "ndcg2++": mu * ndcg2 + lambdarank}
    return weights[weighting]


def lambda_loss(scores: Tensor, labels: Tensor, mask: Tensor | None = None,
                weighting: Literal["none", "lambdarank", "ndcg2", "ndcg2++"] = "ndcg2++",
                mu: float = 10.0, sigma: float = 1.0, k: int | None = None,
                reduction_log: Literal["natural", "binary"] = "binary",
                eps: float = 1e-10) -> Tensor:
    """LambdaLoss: RankNet's pair losses, each weighted by :func:`lambda_weights`."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    scores, labels, mask = prepare_batch(scores, labels, mask)
    pairs = ordered_pairs(scores, labels, mask, k)
    if not pairs.any():
        return zero_loss(scores)
    ranks = predicted_ranks(scores, mask)
    weights = lambda_weights(ranks, labels, mask, weighting, mu, k, eps)
    return (weights * pair_logistic(scores, sigma, reduction_log))[pairs].mean()


class LambdaLoss(ListwiseLoss):
    """LambdaLoss with NDCG-Loss2++ weighting (:func:`lambda_loss`).

    Arguments as the library's ``LambdaLoss``, except that ``weighting_scheme`` is a name
    (``"ndcg2++"``, ``"ndcg2"``, ``"lambdarank"``, ``"none"``) and ``mu`` is its own argument.
    """

    loss_fn = staticmethod(lambda_loss)
    config_keys = ("weighting", "mu", "k", "sigma", "eps", "reduction_log")
    bibtex = BIBTEX

    def __init__(self, model, weighting_scheme="ndcg2++", k=None, sigma=1.0, eps=1e-10, reduction_log="binary",
                 activation_fn=nn.Identity(), mini_batch_size=None, mu=10.0) -> None:
        super().__init__(model, activation_fn, mini_batch_size, weighting=weighting_scheme, mu=mu, k=k,
                         sigma=sigma, eps=eps, reduction_log=reduction_log)
