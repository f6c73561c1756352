r"""RankNet: a logistic loss on every pair of documents that the labels order.

.. math:: \mathcal{L} = \frac{1}{|P|} \sum_{(i,j) \in P} -\log_b \sigma\big(\sigma_s (s_i - s_j)\big),
   \qquad P = \{(i, j) : y_i > y_j\}

Inputs: a padded batch (:mod:`.batch`) of scores :math:`s`, labels :math:`y` and a mask.
The mean runs over all ordered pairs of the whole batch (a long list counts more than a
short one), and tied labels make no pair; both as in the library. ``sigma`` is the slope
:math:`\sigma_s`; ``k`` keeps only pairs with at least one document in the student's
top ``k``; ``reduction_log`` picks the base :math:`b`: ``"binary"`` (log2, the library's
default) or ``"natural"`` (ln, as in Burges et al. and the paper's formula); the two
differ by the factor ln 2 = 1/1.4427, in values and gradients (with gradient clipping, or
Adam's epsilon, not a mere rescaling of the learning rate).

The profile names the base as ``training.log_base`` (:data:`LOG_BASES`): ``2``, the
book's choice (sentence-transformers' convention, which the ``smoke`` and ``cpu`` students
train with), or ``natural``, the paper's: lightning-ir's ``RankNet`` is
``binary_cross_entropy_with_logits(s_pos - s_neg, 1)`` over the pairs its targets order,
the natural-log mean above (``gpu``).

The pairs and their logistic terms (:func:`ordered_pairs`, :func:`pair_logistic`) are
shared with LambdaLoss (:mod:`.lambdaloss`), which weights each pair.

References: Burges et al., "Learning to Rank using Gradient Descent", ICML 2005;
``sentence_transformers.cross_encoder.losses.RankNetLoss``.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn
from torch.nn import functional as F

from .batch import prepare_batch, zero_loss
from .listwise import ListwiseLoss
from .ranks import predicted_ranks

BIBTEX = """
@inproceedings{burges2005learning,
  title={Learning to Rank using Gradient Descent},
  author={Burges, Chris and Shaked, Tal and Renshaw, Erin and Lazier, Ari and Deeds, Matt and Hamilton, Nicole and Hullender, Greg},
  booktitle={Proceedings of the 22nd international conference on Machine learning},
  pages={89--96},
  year={2005}
}
"""


# training.log_base -> reduction_log: 2 the book's (log2, sentence-transformers'), natural the paper's (lightning-ir's)
LOG_BASES = {2: "binary", "natural": "natural"}


def reduction_log_of(log_base) -> str:
    """The ``reduction_log`` of a profile's ``log_base`` (``2`` or ``natural``); another value is a ValueError."""
    try:
        return LOG_BASES[log_base]
    except (KeyError, TypeError):
        raise ValueError(f"training.log_base must be 2 (the book's) or natural (the paper's), not {log_base!r}") from None


def ordered_pairs(scores: Tensor, labels: Tensor, mask: Tensor,
                  k: int | None = None) -> Tensor:
    """``[B, L, L]``: True where document i should rank above j (y_i > y_j, both real).

    With ``k``, only pairs where i or j is in the student's top ``k``.
    """
    both = mask[:, :, None] & mask[:, None, :]
    pairs = (labels[:, :, None] > labels[:, None, :]) & both
    if k is not None:
        top = predicted_ranks(scores, mask) <= k
        pairs &= top[:, :, None] | top[:, None, :]
    return pairs


def pair_logistic(scores: Tensor, sigma: float = 1.0,
                  reduction_log: Literal["natural", "binary"] = "binary") -> Tensor:
    """``[B, L, L]``: -log_b sigmoid(sigma (s_i - s_j)) for every pair (i, j)."""
    losses = -F.logsigmoid(sigma * (scores[:, :, None] - scores[:, None, :]))
    return losses / math.log(2) if reduction_log == "binary" else losses


def ranknet_loss(scores: Tensor, labels: Tensor, mask: Tensor | None = None,
                 sigma: float = 1.0, k: int | None = None,
                 reduction_log: Literal["natural", "binary"] = "binary") -> Tensor:
    """RankNet: the mean logistic loss over the pairs that the labels order."""
    scores, labels, mask = prepare_batch(scores, labels, mask)
    pairs = ordered_pairs(scores, labels, mask, k)
    if not pairs.any():
        return zero_loss(scores)
    return pair_logistic(scores, sigma, reduction_log)[pairs].mean()


class RankNetLoss(ListwiseLoss):
    """RankNet (:func:`ranknet_loss`); arguments as the library's ``RankNetLoss``."""

    loss_fn = staticmethod(ranknet_loss)
    config_keys = ("k", "sigma", "reduction_log")
    bibtex = BIBTEX

    def __init__(self, model, k=None, sigma=1.0, reduction_log="binary",
                 activation_fn=nn.Identity(), mini_batch_size=None) -> None:
        super().__init__(model, activation_fn, mini_batch_size, k=k, sigma=sigma,
                         reduction_log=reduction_log)
