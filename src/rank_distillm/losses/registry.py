"""Picking a loss by name, from the book or from sentence-transformers.

Training code calls only :func:`make_loss`; a profile's ``training.implementation``
(``book`` or ``library``) says which of the two implementations trains the student.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from .adr_mse import ADRMSELoss
from .approx_ndcg import ApproxNDCGLoss
from .infonce import InfoNCELoss
from .lambdaloss import LambdaLoss
from .listnet import ListNetLoss
from .listwise import ListwiseLoss
from .ranknet import RankNetLoss

LOSS_NAMES = ("ranknet", "listnet", "adr-mse", "lambdaloss", "infonce", "approx-ndcg", "bce", "mse")

BOOK_LOSSES: dict[str, type[ListwiseLoss]] = {
    "ranknet": RankNetLoss,
    "listnet": ListNetLoss,
    "adr-mse": ADRMSELoss,
    "lambdaloss": LambdaLoss,
    "infonce": InfoNCELoss,
    "approx-ndcg": ApproxNDCGLoss,
}

# Names of sentence_transformers.cross_encoder.losses classes. "bce" and "mse" are
# pointwise (columns query, doc, label); the others take (query, docs, labels) lists.
LIBRARY_LOSSES: dict[str, str] = {
    "ranknet": "RankNetLoss",
    "listnet": "ListNetLoss",
    "adr-mse": "ADRMSELoss",
    "lambdaloss": "LambdaLoss",
    "bce": "BinaryCrossEntropyLoss",
    "mse": "MSELoss",
}

ALIASES = {"adrmse": "adr-mse", "lambda": "lambdaloss", "approxndcg": "approx-ndcg", "kl": "listnet",
           "lce": "infonce"}


LOG_LOSSES = ("ranknet", "lambdaloss")  # the losses whose pair terms take a log base


def make_loss(name: str, model, implementation: Literal["library", "book"] = "library", log_base=None,
              **kwargs) -> nn.Module:
    """The loss called ``name`` for ``model``, from sentence-transformers or from the book.

    Names: ``ranknet``, ``listnet``, ``adr-mse``, ``lambdaloss`` (both implementations),
    ``infonce`` and ``approx-ndcg`` (book only: the library has no listwise version),
    ``bce`` and ``mse`` (library only, pointwise: one (query, doc, label) per row).
    ``kwargs`` go to the class (e.g. ``mini_batch_size=16``, ``alpha=1.0``). Underscores
    and case do not matter (``ADR_MSE`` works). ``log_base`` (``2`` or ``natural``, the
    profile's ``training.log_base``) sets ``reduction_log`` of RankNet and LambdaLoss
    (:data:`~rank_distillm.losses.ranknet.LOG_BASES`) and is ignored by the other losses.
    """
    key = name.strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in LOSS_NAMES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    if log_base is not None and key in LOG_LOSSES:
        from .ranknet import reduction_log_of

        kwargs["reduction_log"] = reduction_log_of(log_base)
    if implementation == "library":
        if key not in LIBRARY_LOSSES:
            raise ValueError(f"sentence-transformers has no listwise {key!r} loss; use implementation='book'")
        from sentence_transformers.cross_encoder import losses as st_losses

        return getattr(st_losses, LIBRARY_LOSSES[key])(model, **kwargs)
    if implementation == "book":
        if key not in BOOK_LOSSES:
            raise ValueError(f"the book does not implement {key!r}; use implementation='library'")
        return BOOK_LOSSES[key](model, **kwargs)
    raise ValueError(f"implementation must be 'library' or 'book', got {implementation!r}")
