"""RankNet's log base: 2 (the book's, sentence-transformers') or natural (the paper's, lightning-ir's)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from rank_distillm import losses as L
from rank_distillm.losses.ranknet import LOG_BASES, reduction_log_of
from rank_distillm.profiles import load_profile


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(3, 6, generator=g, requires_grad=True)
    labels = torch.randint(0, 4, (3, 6), generator=g).float()
    return scores, labels


def _lightning_ir_ranknet(scores, targets):
    """lightning-ir's RankNet (lightning_ir/loss/pairwise.py @19f46e3): BCE with logits of pos - neg over
    the pairs the targets order (``get_pairwise_idcs``: targets[..., None] > targets[:, None])."""
    query, pos, neg = torch.nonzero(targets[..., None] > targets[:, None], as_tuple=True)
    margin = scores[query, pos] - scores[query, neg]
    return F.binary_cross_entropy_with_logits(margin, torch.ones_like(margin))


def _direct(scores, labels, log):
    total, n = 0.0, 0
    for b in range(scores.shape[0]):
        for i in range(scores.shape[1]):
            for j in range(scores.shape[1]):
                if labels[b, i] > labels[b, j]:
                    total += -log(1 / (1 + math.exp(-(scores[b, i] - scores[b, j]).item())))
                    n += 1
    return total / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_natural_log_is_the_direct_formula_and_lightning_irs(seed):
    scores, labels = _batch(seed)
    natural = L.ranknet_loss(scores, labels, reduction_log="natural")
    assert natural.item() == pytest.approx(_direct(scores, labels, math.log), rel=1e-6)
    assert natural.item() == pytest.approx(_lightning_ir_ranknet(scores, labels).item(), rel=1e-6)
    grad_book = torch.autograd.grad(natural, scores)[0]
    grad_lir = torch.autograd.grad(_lightning_ir_ranknet(scores, labels), scores)[0]
    assert torch.allclose(grad_book, grad_lir, atol=1e-7)


def test_base_2_is_the_natural_log_over_ln_2_in_values_and_gradients():
    scores, labels = _batch(3)
    binary = L.ranknet_loss(scores, labels, reduction_log="binary")
    assert binary.item() == pytest.approx(_direct(scores, labels, math.log2), rel=1e-6)
    g2 = torch.autograd.grad(binary, scores)[0]
    ge = torch.autograd.grad(L.ranknet_loss(scores, labels, reduction_log="natural"), scores)[0]
    assert torch.allclose(g2, ge / math.log(2), atol=1e-7)
    assert 1 / math.log(2) == pytest.approx(1.4427, abs=1e-4)


def test_the_profiles_name_the_base_and_make_loss_uses_it(minilm_path):
    from sentence_transformers import CrossEncoder

    assert {n: load_profile(n)["training"]["log_base"] for n in ("smoke", "cpu", "gpu")} == \
        {"smoke": 2, "cpu": 2, "gpu": "natural"}
    assert reduction_log_of(2) == "binary" and reduction_log_of("natural") == "natural" and set(LOG_BASES) == {2, "natural"}
    with pytest.raises(ValueError, match="training.log_base"):
        reduction_log_of(10)
    model = CrossEncoder(str(minilm_path), num_labels=1, device="cpu")
    for base, expected in LOG_BASES.items():
        assert L.make_loss("ranknet", model, implementation="book", log_base=base).loss_kwargs["reduction_log"] == expected
        assert L.make_loss("ranknet", model, implementation="library", log_base=base).reduction_log == expected
        assert L.make_loss("lambdaloss", model, implementation="book", log_base=base).loss_kwargs["reduction_log"] == expected
    assert "reduction_log" not in L.make_loss("listnet", model, implementation="book", log_base="natural").loss_kwargs
