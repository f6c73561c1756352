"""The book's own listwise losses, next to sentence-transformers' ones.

Two layers, as in ``sentence_transformers.cross_encoder.losses``:

* **Pure functions** on a padded batch of lists: ``scores`` [B, L] (the student's logits),
  ``labels`` [B, L] (targets; larger = more relevant, e.g. ``depth - rank + 1`` for a
  teacher ranking) and a boolean ``mask`` [B, L] (``True`` = a real document, ``False`` =
  padding). Padded entries may hold anything; they never reach the loss or its gradient.
  :func:`ranknet_loss`, :func:`listnet_loss`, :func:`adr_mse_loss`, :func:`lambda_loss`,
  :func:`infonce_loss`, :func:`approx_ndcg_loss`.
* **Modules** with the constructor and call signature of the library's listwise
  cross-encoder losses (``Loss(model, ..., mini_batch_size=None)``,
  ``forward([queries, docs_lists], labels_lists, prompt=None, task=None)``,
  ``get_config_dict()``, ``citation``), so they plug into ``CrossEncoderTrainer`` in place
  of the library's: :class:`RankNetLoss`, :class:`ListNetLoss`, :class:`ADRMSELoss`,
  :class:`LambdaLoss`, :class:`InfoNCELoss`, :class:`ApproxNDCGLoss`.

:func:`make_loss` picks either implementation by name; training code calls only that.
The library is the reference: ``tests/test_losses.py`` shows that the book's RankNet,
ListNet, ADR-MSE and LambdaLoss give the library's values and gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.util import batch_to_device, fullname
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
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
    "library_agreement",
    "listnet_loss",
    "make_loss",
    "pad_lists",
    "predicted_ranks",
    "ranknet_loss",
    "score_gradients",
    "score_lists",
    "target_ranks",
]


# --------------------------------------------------------------------------------------
# Helpers shared by the losses
# --------------------------------------------------------------------------------------


def _prepare(scores: Tensor, labels: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes; return float scores and labels with padded entries set to 0, and a bool mask."""
    if scores.dim() != 2:
        raise ValueError(f"scores must be a [batch, list] matrix, got shape {tuple(scores.shape)}")
    if labels.shape != scores.shape:
        raise ValueError(f"labels have shape {tuple(labels.shape)}, scores {tuple(scores.shape)}")
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    if mask.shape != scores.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, scores {tuple(scores.shape)}")
    mask = mask.to(device=scores.device, dtype=torch.bool)
    # torch.where, not multiplication: padding may hold -inf or nan, and 0 * inf is nan.
    scores = torch.where(mask, scores.float(), torch.zeros((), device=scores.device))
    labels = torch.where(mask, labels.to(scores.device).float(), torch.zeros((), device=scores.device))
    return scores, labels, mask


def _zero_loss(scores: Tensor) -> Tensor:
    """A zero that keeps the graph (so ``backward`` works on a batch without valid pairs)."""
    return scores.sum() * 0.0


def _max_dcg(gains: Tensor, k: int | None, eps: float) -> Tensor:
    """DCG@k of the ideal order (gains sorted, discount log2(1 + position)), at least ``eps``."""
    ideal = torch.sort(gains, dim=-1, descending=True).values[:, :k]
    discount = torch.log2(torch.arange(2, ideal.shape[-1] + 2, device=gains.device).float())
    return (ideal / discount).sum(-1).clamp(min=eps)


def pad_lists(lists: Sequence[Sequence[float]], fill: float = 0.0) -> tuple[Tensor, Tensor]:
    """Stack lists of different lengths into a [B, L] matrix and its boolean mask."""
    if not lists:
        raise ValueError("pad_lists needs at least one list")
    width = max(len(x) for x in lists)
    matrix = torch.full((len(lists), width), float(fill))
    mask = torch.zeros((len(lists), width), dtype=torch.bool)
    for i, values in enumerate(lists):
        matrix[i, : len(values)] = torch.as_tensor(values, dtype=torch.float)
        mask[i, : len(values)] = True
    return matrix, mask


def predicted_ranks(scores: Tensor, mask: Tensor) -> Tensor:
    """The student's ranks, 1 = highest score; padding ranks after every real document.

    Ties between scores are broken by list position (a stable sort), so the result is
    deterministic. Returns a float matrix like ``scores``.
    """
    scores = scores.float().masked_fill(~mask, float("-inf"))
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(1, scores.shape[-1] + 1, device=scores.device).expand_as(order)
    ranks.scatter_(-1, order, positions)
    return ranks.float()


def target_ranks(labels: Tensor, mask: Tensor, ties: Literal["average", "first"] = "average") -> Tensor:
    """The ranks the labels ask for, 1 = largest label.

    ``ties="average"``: documents sharing a label share their average rank (labels 3, 1, 1
    give ranks 1, 2.5, 2.5), as the library's ``ADRMSELoss`` does. ``ties="first"``:
    ordinal ranks, ties broken by list position (1, 2, 3), as ranking a sorted teacher
    list by position does.
    """
    labels = labels.float()
    valid_j = mask[:, None, :]
    if ties == "average":
        greater = ((labels[:, None, :] > labels[:, :, None]) & valid_j).sum(-1).float()
        equal = ((labels[:, None, :] == labels[:, :, None]) & valid_j).sum(-1).float()
        return greater + (equal + 1.0) / 2.0
    if ties == "first":
        return predicted_ranks(labels, mask)
    raise ValueError(f"ties must be 'average' or 'first', got {ties!r}")


def approximate_ranks(scores: Tensor, mask: Tensor, alpha: float = 1.0) -> Tensor:
    r"""ApproxRank (Qin et al., 2010): a differentiable rank for every document.

    .. math:: \hat\pi_i = 1 + \sum_{j \ne i,\ j \text{ valid}} \sigma\big(\alpha (s_j - s_i)\big)

    Each other document that scores higher adds (almost) one; ``alpha`` sharpens the
    sigmoid towards the hard rank.
    """
    diffs = scores[:, None, :] - scores[:, :, None]  # [b, i, j] = s_j - s_i
    others = mask[:, None, :] & ~torch.eye(scores.shape[-1], dtype=torch.bool, device=scores.device)
    return 1.0 + (torch.sigmoid(alpha * diffs) * others).sum(-1)


# --------------------------------------------------------------------------------------
# The losses as pure functions
# --------------------------------------------------------------------------------------


def ranknet_loss(
    scores: Tensor,
    labels: Tensor,
    mask: Tensor | None = None,
    sigma: float = 1.0,
    k: int | None = None,
    reduction_log: Literal["natural", "binary"] = "binary",
) -> Tensor:
    r"""RankNet: a logistic loss on every pair the labels order.

    .. math:: \mathcal{L} = \frac{1}{|P|} \sum_{(i,j) \in P} -\log_b \sigma\big(\sigma_s (s_i - s_j)\big),
       \qquad P = \{(i, j) : y_i > y_j\}

    The mean runs over all ordered pairs of the whole batch (so a long list counts more
    than a short one), and tied labels make no pair; both as in the library.

    Args:
        scores, labels, mask: [B, L] padded batch (see the module docstring).
        sigma: slope of the sigmoid (the library's ``sigma``).
        k: keep only pairs where at least one document is in the student's top ``k``.
        reduction_log: ``"binary"`` (log2, the library's default) or ``"natural"`` (ln, as
            in Burges et al. and the paper's formula); they differ by the factor ln 2.

    References: Burges et al., "Learning to Rank using Gradient Descent", ICML 2005;
    ``sentence_transformers.cross_encoder.losses.RankNetLoss``.
    """
    scores, labels, mask = _prepare(scores, labels, mask)
    pairs = (labels[:, :, None] > labels[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    if k is not None:
        top = predicted_ranks(scores, mask) <= k
        pairs &= top[:, :, None] | top[:, None, :]
    if not pairs.any():
        return _zero_loss(scores)
    losses = -F.logsigmoid(sigma * (scores[:, :, None] - scores[:, None, :]))[pairs]
    if reduction_log == "binary":
        losses = losses / math.log(2)
    return losses.mean()


def _soft_cross_entropy(scores: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Per list: :math:`-\\sum_i t_i \\log \\mathrm{softmax}(s)_i` over the valid documents."""
    log_q = torch.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return -torch.where(mask, target * log_q, torch.zeros(())).sum(-1)


def listnet_loss(scores: Tensor, labels: Tensor, mask: Tensor | None = None, kl: bool = False) -> Tensor:
    r"""ListNet: cross-entropy between the softmax of the labels and the softmax of the scores.

    .. math:: \mathcal{L} = -\frac{1}{B}\sum_b \sum_i p_i \log q_i,\qquad
       p = \mathrm{softmax}(y),\ q = \mathrm{softmax}(s)

    With ``kl=True`` it returns the KL divergence :math:`\mathrm{KL}(p \,\|\, q) =
    \sum_i p_i \log p_i - \sum_i p_i \log q_i` instead (the paper's "KL" loss). The two
    differ by the entropy of ``p``, a constant of the labels, so they have the same
    gradient; the library's ``ListNetLoss`` returns the cross-entropy. Note the scale:
    with teacher labels ``100 - rank + 1`` the target softmax puts 63 % of its mass on
    the first document, so ListNet mostly teaches the top.

    References: Cao et al., "Learning to Rank: From Pairwise Approach to Listwise
    Approach", ICML 2007; ``sentence_transformers.cross_encoder.losses.ListNetLoss``.
    """
    scores, labels, mask = _prepare(scores, labels, mask)
    target = torch.softmax(labels.masked_fill(~mask, float("-inf")), dim=-1)
    per_list = _soft_cross_entropy(scores, target, mask)
    if kl:
        log_p = torch.log_softmax(labels.masked_fill(~mask, float("-inf")), dim=-1)
        per_list = per_list + torch.where(mask & (target > 0), target * log_p, torch.zeros(())).sum(-1)
    return per_list.mean()


def adr_mse_loss(
    scores: Tensor,
    labels: Tensor,
    mask: Tensor | None = None,
    alpha: float = 1.0,
    ties: Literal["average", "first"] = "average",
) -> Tensor:
    r"""ADR-MSE: approximate discounted rank mean squared error (Rank-DistiLLM).

    .. math:: \mathcal{L} = \frac{1}{N} \sum_{i\ \text{valid}} \frac{(\hat\pi_i - r_i)^2}{\log_2(r_i + 1)}

    :math:`\hat\pi_i` is the ApproxRank of document *i* (:func:`approximate_ranks`),
    :math:`r_i` its rank by label (:func:`target_ranks`) and *N* the number of real
    documents in the batch. The discount makes an error at the top cost more.

    Ties: ``ties="average"`` (default) gives tied documents their average rank, which the
    ApproxRank reaches when the student scores them equally, as in the library's
    ``ADRMSELoss``; ``ties="first"`` breaks ties by list position, which then asks the
    student to separate documents the labels do not separate (its minimum is above 0).
    Teacher rankings have no ties, and there the two agree (a test pins both facts).

    References: Schlatt et al., "Rank-DistiLLM", ECIR 2025; Qin et al., "A general
    approximation framework for direct optimization of information retrieval measures",
    Information Retrieval 2010; ``sentence_transformers.cross_encoder.losses.ADRMSELoss``.
    """
    scores, labels, mask = _prepare(scores, labels, mask)
    approx = approximate_ranks(scores, mask, alpha)
    ranks = target_ranks(labels, mask, ties)
    per_doc = (approx - ranks) ** 2 / torch.log2(ranks + 1.0)
    return per_doc[mask].mean()


_WEIGHTINGS = ("none", "lambdarank", "ndcg2", "ndcg2++")


def lambda_loss(
    scores: Tensor,
    labels: Tensor,
    mask: Tensor | None = None,
    weighting: Literal["none", "lambdarank", "ndcg2", "ndcg2++"] = "ndcg2++",
    mu: float = 10.0,
    sigma: float = 1.0,
    k: int | None = None,
    reduction_log: Literal["natural", "binary"] = "binary",
    eps: float = 1e-10,
) -> Tensor:
    r"""LambdaLoss: RankNet's pairs, each weighted by how much it matters for nDCG.

    .. math:: \mathcal{L} = -\frac{1}{|P|} \sum_{(i,j) \in P} w_{ij} \log_b \sigma\big(\sigma_s (s_i - s_j)\big)

    with :math:`P = \{y_i > y_j\}` as in :func:`ranknet_loss`. Let :math:`r_i` be the
    student's rank of document *i*, :math:`D(r) = \log_2(1 + r)`, and
    :math:`G_i = (2^{y_i} - 1) / \mathrm{maxDCG@k}` the normalised gain. Weightings:

    * ``"none"``: :math:`w = 1` (RankNet);
    * ``"lambdarank"``: :math:`w = |1/D(r_i) - 1/D(r_j)|\,|G_i - G_j|`;
    * ``"ndcg2"``: :math:`w = \delta_{|r_i - r_j|}\,|G_i - G_j|` with
      :math:`\delta_n = 1/D(n) - 1/D(n+1)`;
    * ``"ndcg2++"`` (the default, LambdaLoss paper's best): :math:`\mu \cdot` ndcg2 + lambdarank.

    Negative labels count as gain 0, as in the library. ``k`` keeps pairs with at least
    one document in the student's top ``k`` and cuts maxDCG at ``k``.

    Ties between *scores* are broken by list position (a stable sort); the library sorts
    with ``torch.sort``, which does not promise any order among ties, so on tied scores the
    weights may differ. With distinct scores both give the same value and gradient.

    References: Wang et al., "The LambdaLoss Framework for Ranking Metric Optimization",
    CIKM 2018; ``sentence_transformers.cross_encoder.losses.LambdaLoss`` with
    ``NDCGLoss2PPScheme``.
    """
    if weighting not in _WEIGHTINGS:
        raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {weighting!r}")
    scores, labels, mask = _prepare(scores, labels, mask)
    width = scores.shape[-1]
    k_cut = k or width
    ranks = predicted_ranks(scores, mask)

    pairs = (labels[:, :, None] > labels[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    if k is not None:
        top = ranks <= k
        pairs &= top[:, :, None] | top[:, None, :]
    if not pairs.any():
        return _zero_loss(scores)

    if weighting == "none":
        weights = torch.ones_like(scores)[:, :, None]
    else:
        gains = torch.where(mask, 2.0 ** labels.clamp(min=0.0) - 1.0, torch.zeros(()))
        max_dcg = _max_dcg(gains, k_cut, eps)
        gain = gains / max_dcg[:, None]
        gain_gap = (gain[:, :, None] - gain[:, None, :]).abs()
        inv_discount = 1.0 / torch.log2(1.0 + ranks)
        lambdarank = (inv_discount[:, :, None] - inv_discount[:, None, :]).abs() * gain_gap
        gap = (ranks[:, :, None] - ranks[:, None, :]).abs()
        delta = (1.0 / torch.log2(1.0 + gap) - 1.0 / torch.log2(2.0 + gap)).abs()
        delta = torch.where(gap > 0, delta, torch.zeros(()))  # 1/log2(1) is inf on the diagonal
        ndcg2 = delta * gain_gap
        weights = {"lambdarank": lambdarank, "ndcg2": ndcg2, "ndcg2++": mu * ndcg2 + lambdarank}[weighting]

    losses = -(weights * F.logsigmoid(sigma * (scores[:, :, None] - scores[:, None, :])))[pairs]
    if reduction_log == "binary":
        losses = losses / math.log(2)
    return losses.mean()


def infonce_loss(scores: Tensor, labels: Tensor, mask: Tensor | None = None, temperature: float = 1.0) -> Tensor:
    r"""InfoNCE / localised contrastive estimation: find the positive among the list.

    .. math:: \mathcal{L} = -\frac{1}{B} \sum_b \frac{1}{|P_b|} \sum_{i \in P_b}
       \log \frac{\exp(s_i / T)}{\sum_{j\ \text{valid}} \exp(s_j / T)}

    :math:`P_b` are the documents holding the list's largest label (in the paper's stage 1,
    one judged positive among 7 sampled negatives). That is the cross-entropy of the
    softmax over the list against a uniform target on the positives. With one positive
    it is the library's ``MultipleNegativesRankingLoss`` without in-batch negatives
    (``scale=1``, no activation; a test checks).

    References: Gao et al., "Rethink Training of BERT Rerankers in Multi-Stage Retrieval
    Pipeline" (localised contrastive estimation), ECIR 2021; van den Oord et al.,
    "Representation Learning with Contrastive Predictive Coding", 2018.
    """
    scores, labels, mask = _prepare(scores, labels, mask)
    best = labels.masked_fill(~mask, float("-inf")).max(-1, keepdim=True).values
    positives = mask & (labels == best)
    target = positives.float() / positives.sum(-1, keepdim=True).clamp(min=1)
    return _soft_cross_entropy(scores / temperature, target, mask).mean()


def approx_ndcg_loss(
    scores: Tensor,
    labels: Tensor,
    mask: Tensor | None = None,
    alpha: float = 1.0,
    gain: Literal["exp2", "linear"] = "exp2",
    eps: float = 1e-10,
) -> Tensor:
    r"""ApproxNDCG: one minus nDCG computed with ApproxRank instead of the hard rank.

    .. math:: \mathcal{L} = \frac{1}{B}\sum_b \Big(1 - \frac{1}{\mathrm{maxDCG}}
       \sum_i \frac{G_i}{\log_2(1 + \hat\pi_i)}\Big),\qquad G_i = 2^{y_i} - 1

    (``gain="linear"``: :math:`G_i = y_i`). :math:`\hat\pi_i` is :func:`approximate_ranks`
    with sharpness ``alpha``. Negative labels count as gain 0. With graded teacher labels
    (``100 - rank + 1``) and ``2^y`` gains almost all the weight sits on the first
    document; the chapter shows it.

    References: Qin et al., "A general approximation framework for direct optimization of
    information retrieval measures", Information Retrieval 2010; Bruch et al., "Revisiting
    Approximate Metric Optimization in the Age of Deep Neural Networks", SIGIR 2019.
    """
    scores, labels, mask = _prepare(scores, labels, mask)
    if gain == "exp2":
        gains = 2.0 ** labels.clamp(min=0.0) - 1.0
    elif gain == "linear":
        gains = labels.clamp(min=0.0)
    else:
        raise ValueError(f"gain must be 'exp2' or 'linear', got {gain!r}")
    gains = torch.where(mask, gains, torch.zeros(()))
    approx = approximate_ranks(scores, mask, alpha)
    dcg = torch.where(mask, gains / torch.log2(1.0 + approx), torch.zeros(())).sum(-1)
    max_dcg = _max_dcg(gains, None, eps)
    return (1.0 - dcg / max_dcg).mean()


# --------------------------------------------------------------------------------------
# Modules for CrossEncoderTrainer
# --------------------------------------------------------------------------------------


def score_lists(
    model,
    inputs: list,
    labels: list,
    mini_batch_size: int | None = None,
    activation_fn: nn.Module | None = None,
    prompt: str | None = None,
    task: str | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Score every (query, document) pair of a listwise batch; return (scores, labels, mask).

    ``inputs = [queries, docs_lists]`` and ``labels`` (one sequence per query) as
    ``CrossEncoderTrainer`` passes them for a dataset with columns ``query``, ``docs``,
    ``labels``. The model is called on ``mini_batch_size`` pairs at a time (``None``: as
    many pairs as there are queries; ``<= 0``: all at once), the same scheme and the same
    model calls (``model.preprocess``, ``model(tokens)["scores"]``) as the library's
    listwise losses.
    """
    if isinstance(labels, Tensor):
        raise ValueError("listwise losses expect one label list per query, got a single tensor")
    if len(inputs) != 2:
        raise ValueError(f"listwise losses expect two inputs (queries, docs_lists), got {len(inputs)}")
    queries, docs_lists = inputs
    lengths = [len(docs) for docs in docs_lists]
    if lengths != [len(x) for x in labels]:
        raise ValueError(f"documents per query {lengths} do not match labels per query {[len(x) for x in labels]}")
    if min(lengths, default=0) == 0:
        raise ValueError("every query needs at least one document")
    pairs = [(query, doc) for query, docs in zip(queries, docs_lists) for doc in docs]
    step = mini_batch_size or len(queries)
    if step <= 0:
        step = len(pairs)
    logits = []
    for start in range(0, len(pairs), step):
        tokens = model.preprocess(pairs[start : start + step], prompt=prompt, task=task)
        tokens = batch_to_device(tokens, model.device)
        logits.append(model(tokens)["scores"].view(-1))
    flat = torch.cat(logits).float()
    if activation_fn is not None:
        flat = activation_fn(flat)
    label_lists = [torch.as_tensor(x, dtype=torch.float).view(-1) for x in labels]
    # Split the flat logits back into lists; pad_sequence keeps the autograd graph.
    scores = nn.utils.rnn.pad_sequence(list(flat.split(lengths)), batch_first=True)
    label_matrix = nn.utils.rnn.pad_sequence(label_lists, batch_first=True).to(scores.device)
    mask = nn.utils.rnn.pad_sequence([torch.ones(n, dtype=torch.bool) for n in lengths], batch_first=True)
    return scores, label_matrix, mask.to(scores.device)


class ListwiseLoss(nn.Module):
    """Base class: score the lists with the model, then apply :meth:`compute`.

    Subclasses set ``loss_fn`` (one of the pure functions) and list their own keyword
    arguments in ``config_keys``; the constructor and ``forward`` match the library's
    listwise cross-encoder losses, so ``CrossEncoderTrainer`` accepts either.
    """

    loss_fn: Callable[..., Tensor]
    config_keys: tuple[str, ...] = ()
    bibtex: str = ""

    def __init__(
        self,
        model,
        activation_fn: nn.Module | None = nn.Identity(),
        mini_batch_size: int | None = None,
        **loss_kwargs,
    ) -> None:
        super().__init__()
        unknown = set(loss_kwargs) - set(self.config_keys)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(unknown)}")
        self.model = model
        self.activation_fn = activation_fn or nn.Identity()
        self.mini_batch_size = mini_batch_size
        self.loss_kwargs = loss_kwargs
        if getattr(model, "num_labels", 1) != 1:
            raise ValueError(f"{type(self).__name__} needs a model with 1 output label, got {model.num_labels}")

    def compute(self, scores: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        """The loss of a padded batch of scores (what the pure function computes)."""
        return type(self).loss_fn(scores, labels, mask, **self.loss_kwargs)

    def forward(self, inputs: list, labels: list, prompt: str | None = None, task: str | None = None) -> Tensor:
        scores, label_matrix, mask = score_lists(
            self.model, inputs, labels, self.mini_batch_size, self.activation_fn, prompt, task
        )
        return self.compute(scores, label_matrix, mask)

    def get_config_dict(self) -> dict:
        return {
            **self.loss_kwargs,
            "activation_fn": fullname(self.activation_fn),
            "mini_batch_size": self.mini_batch_size,
        }

    @property
    def citation(self) -> str:
        return self.bibtex


class RankNetLoss(ListwiseLoss):
    """RankNet (:func:`ranknet_loss`); arguments as the library's ``RankNetLoss``."""

    loss_fn = staticmethod(ranknet_loss)
    config_keys = ("k", "sigma", "reduction_log")
    bibtex = """
@inproceedings{burges2005learning,
  title={Learning to Rank using Gradient Descent},
  author={Burges, Chris and Shaked, Tal and Renshaw, Erin and Lazier, Ari and Deeds, Matt and Hamilton, Nicole and Hullender, Greg},
  booktitle={Proceedings of the 22nd international conference on Machine learning},
  pages={89--96},
  year={2005}
}
"""

    def __init__(self, model, k=None, sigma=1.0, reduction_log="binary", activation_fn=nn.Identity(),
                 mini_batch_size=None) -> None:
        super().__init__(model, activation_fn, mini_batch_size, k=k, sigma=sigma, reduction_log=reduction_log)


class ListNetLoss(ListwiseLoss):
    """ListNet / KL divergence (:func:`listnet_loss`); arguments as the library's ``ListNetLoss``."""

    loss_fn = staticmethod(listnet_loss)
    config_keys = ("kl",)
    bibtex = """
@inproceedings{cao2007learning,
    title={Learning to Rank: From Pairwise Approach to Listwise Approach},
    author={Cao, Zhe and Qin, Tao and Liu, Tie-Yan and Tsai, Ming-Feng and Li, Hang},
    booktitle={Proceedings of the 24th international conference on Machine learning},
    pages={129--136},
    year={2007}
}
"""

    def __init__(self, model, activation_fn=nn.Identity(), mini_batch_size=None, kl=False) -> None:
        super().__init__(model, activation_fn, mini_batch_size, kl=kl)


_RANK_DISTILLM_BIBTEX = """
@inproceedings{schlatt2025rankdistillm,
    title={Rank-DistiLLM: Closing the Effectiveness Gap Between Cross-Encoders and LLMs for Passage Re-ranking},
    author={Schlatt, Ferdinand and Fr{\\"o}be, Maik and Scells, Harrisen and Zhuang, Shengyao and Koopman, Bevan and Zuccon, Guido and Stein, Benno and Potthast, Martin and Hagen, Matthias},
    booktitle={Advances in Information Retrieval (ECIR 2025)},
    year={2025},
    doi={10.1007/978-3-031-88714-7_31},
}
"""


class ADRMSELoss(ListwiseLoss):
    """ADR-MSE (:func:`adr_mse_loss`); arguments as the library's ``ADRMSELoss``."""

    loss_fn = staticmethod(adr_mse_loss)
    config_keys = ("alpha", "ties")
    bibtex = _RANK_DISTILLM_BIBTEX

    def __init__(self, model, alpha=1.0, activation_fn=nn.Identity(), mini_batch_size=None, ties="average") -> None:
        super().__init__(model, activation_fn, mini_batch_size, alpha=alpha, ties=ties)


class LambdaLoss(ListwiseLoss):
    """LambdaLoss with NDCG-Loss2++ weighting (:func:`lambda_loss`).

    Arguments as the library's ``LambdaLoss``, except that ``weighting_scheme`` is a name
    (``"ndcg2++"``, ``"ndcg2"``, ``"lambdarank"``, ``"none"``) and ``mu`` is its own argument.
    """

    loss_fn = staticmethod(lambda_loss)
    config_keys = ("weighting", "mu", "k", "sigma", "eps", "reduction_log")
    bibtex = """
@inproceedings{wang2018lambdaloss,
  title={The LambdaLoss Framework for Ranking Metric Optimization},
  author={Wang, Xuanhui and Li, Cheng and Golbandi, Nadav and Bendersky, Michael and Najork, Marc},
  booktitle={Proceedings of the 27th ACM international conference on information and knowledge management},
  pages={1313--1322},
  year={2018}
}
"""

    def __init__(self, model, weighting_scheme="ndcg2++", k=None, sigma=1.0, eps=1e-10, reduction_log="binary",
                 activation_fn=nn.Identity(), mini_batch_size=None, mu=10.0) -> None:
        super().__init__(model, activation_fn, mini_batch_size, weighting=weighting_scheme, mu=mu, k=k,
                         sigma=sigma, eps=eps, reduction_log=reduction_log)


class InfoNCELoss(ListwiseLoss):
    """InfoNCE / localised contrastive estimation (:func:`infonce_loss`) on (query, docs, labels) lists."""

    loss_fn = staticmethod(infonce_loss)
    config_keys = ("temperature",)
    bibtex = """
@inproceedings{gao2021lce,
  title={Rethink Training of {BERT} Rerankers in Multi-Stage Retrieval Pipeline},
  author={Gao, Luyu and Dai, Zhuyun and Callan, Jamie},
  booktitle={Advances in Information Retrieval (ECIR 2021)},
  year={2021}
}
"""

    def __init__(self, model, activation_fn=nn.Identity(), mini_batch_size=None, temperature=1.0) -> None:
        super().__init__(model, activation_fn, mini_batch_size, temperature=temperature)


class ApproxNDCGLoss(ListwiseLoss):
    """ApproxNDCG (:func:`approx_ndcg_loss`) on (query, docs, labels) lists."""

    loss_fn = staticmethod(approx_ndcg_loss)
    config_keys = ("alpha", "gain", "eps")
    bibtex = """
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

    def __init__(self, model, alpha=1.0, activation_fn=nn.Identity(), mini_batch_size=None, gain="exp2",
                 eps=1e-10) -> None:
        super().__init__(model, activation_fn, mini_batch_size, alpha=alpha, gain=gain, eps=eps)


# --------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------

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

POINTWISE_LOSSES = ("bce", "mse")


def make_loss(name: str, model, implementation: Literal["library", "book"] = "library", **kwargs) -> nn.Module:
    """The loss called ``name`` for ``model``, from sentence-transformers or from the book.

    Names: ``ranknet``, ``listnet``, ``adr-mse``, ``lambdaloss`` (both implementations),
    ``infonce`` and ``approx-ndcg`` (book only: the library has no listwise version),
    ``bce`` and ``mse`` (library only, pointwise: one (query, doc, label) per row).
    ``kwargs`` go to the class (e.g. ``mini_batch_size=16``, ``alpha=1.0``). Underscores
    and case do not matter (``ADR_MSE`` works).
    """
    key = name.strip().lower().replace("_", "-")
    key = {"adrmse": "adr-mse", "lambda": "lambdaloss", "approxndcg": "approx-ndcg", "kl": "listnet",
           "lce": "infonce"}.get(key, key)
    if key not in LOSS_NAMES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    if implementation == "library":
        if key not in LIBRARY_LOSSES:
            raise ValueError(
                f"sentence-transformers has no listwise {key!r} loss; use implementation='book'"
            )
        from sentence_transformers.cross_encoder import losses as st_losses

        return getattr(st_losses, LIBRARY_LOSSES[key])(model, **kwargs)
    if implementation == "book":
        if key not in BOOK_LOSSES:
            raise ValueError(f"the book does not implement {key!r}; use implementation='library'")
        return BOOK_LOSSES[key](model, **kwargs)
    raise ValueError(f"implementation must be 'library' or 'book', got {implementation!r}")


# --------------------------------------------------------------------------------------
# Looking inside: gradients and the check against the library (the chapter uses these)
# --------------------------------------------------------------------------------------


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
