"""The book's own listwise losses, next to sentence-transformers' ones.

One module per loss, as in ``sentence_transformers.cross_encoder.losses``: its
docstring has the formula, the inputs and the references, then come a **pure function**
on a padded batch (``scores``, ``labels``, ``mask``, each ``[B, L]``; see :mod:`.batch`)
and a **module** that plugs it into ``CrossEncoderTrainer`` (a few lines on top of
:class:`.listwise.ListwiseLoss`).

=================  ==========================  ==================
module             pure function               module class
=================  ==========================  ==================
:mod:`.ranknet`    :func:`ranknet_loss`        :class:`RankNetLoss`
:mod:`.listnet`    :func:`listnet_loss`        :class:`ListNetLoss`
:mod:`.adr_mse`    :func:`adr_mse_loss`        :class:`ADRMSELoss`
:mod:`.lambdaloss` :func:`lambda_loss`         :class:`LambdaLoss`
:mod:`.infonce`    :func:`infonce_loss`        :class:`InfoNCELoss`
:mod:`.approx_ndcg` :func:`approx_ndcg_loss`   :class:`ApproxNDCGLoss`
=================  ==========================  ==================

Shared pieces: :mod:`.batch` (the padded batch), :mod:`.ranks` (hard, target and
approximate ranks; ideal DCG), :mod:`.listwise` (scoring lists with the model),
:mod:`.registry` (:func:`make_loss`: a loss by name, from either implementation) and
:mod:`.inspection` (gradients on known scores; the agreement with the library).
The library is the reference: ``tests/test_losses.py`` shows that the book's RankNet,
ListNet, ADR-MSE and LambdaLoss give the library's values and gradients.
"""

from .adr_mse import ADRMSELoss, adr_mse_loss
from .approx_ndcg import ApproxNDCGLoss, approx_ndcg_loss
from .batch import pad_lists, prepare_batch
from .infonce import InfoNCELoss, infonce_loss
from .inspection import FixedScoresModel, library_agreement, score_gradients
from .lambdaloss import LambdaLoss, lambda_loss, lambda_weights
from .listnet import ListNetLoss, listnet_loss
from .listwise import ListwiseLoss, score_lists
from .ranknet import RankNetLoss, ordered_pairs, pair_logistic, ranknet_loss
from .ranks import approximate_ranks, max_dcg, predicted_ranks, target_ranks
from .registry import BOOK_LOSSES, LIBRARY_LOSSES, LOSS_NAMES, make_loss

__all__ = [
    "BOOK_LOSSES",
    "LIBRARY_LOSSES",
    "LOSS_NAMES",
    "ADRMSELoss",
    "ApproxNDCGLoss",
    "FixedScoresModel",
    "InfoNCELoss",
    "LambdaLoss",
    "ListNetLoss",
    "ListwiseLoss",
    "RankNetLoss",
    "adr_mse_loss",
    "approx_ndcg_loss",
    "approximate_ranks",
    "infonce_loss",
    "lambda_loss",
    "lambda_weights",
    "library_agreement",
    "listnet_loss",
    "make_loss",
    "max_dcg",
    "ordered_pairs",
    "pad_lists",
    "pair_logistic",
    "predicted_ranks",
    "prepare_batch",
    "ranknet_loss",
    "score_gradients",
    "score_lists",
    "target_ranks",
]
