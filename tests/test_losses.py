"""The book's losses: hand-computed values, padding, and agreement with sentence-transformers."""

from __future__ import annotations

import math

import pytest
import torch
from sentence_transformers.cross_encoder import losses as st_losses
from torch.nn import functional as F

from rank_distillm import losses as L

LOG2 = math.log(2)


def random_batch(seed: int, lengths=(7, 3, 12, 1, 5), grades: int = 4, scale: float = 2.0):
    """Lists of different lengths (one of a single document), padded, with many tied labels."""
    g = torch.Generator().manual_seed(seed)
    scores = [(torch.randn(n, generator=g) * scale).tolist() for n in lengths]
    labels = [torch.randint(0, grades, (n,), generator=g).float().tolist() for n in lengths]
    s, mask = L.pad_lists(scores, fill=-3.0)
    y, _ = L.pad_lists(labels, fill=7.0)  # padding that would matter if it leaked in
    return s, y, mask


def teacher_batch(seed: int, lengths=(30, 20, 25)):
    """Teacher-style targets: depth - rank + 1 for a random teacher order (no ties)."""
    g = torch.Generator().manual_seed(seed)
    labels = [(100 - torch.randperm(n, generator=g)).float().tolist() for n in lengths]
    scores = [torch.randn(n, generator=g).tolist() for n in lengths]
    s, mask = L.pad_lists(scores)
    y, _ = L.pad_lists(labels)
    return s, y, mask


def run_module(module_cls, scores, labels, mask, **kwargs):
    """Value and d loss / d logits of a (library or book) module, through the stand-in model."""
    logits = scores[mask].detach().clone().requires_grad_(True)
    inputs, label_lists = L.FixedScoresModel.lists(labels, mask)
    module = module_cls(L.FixedScoresModel(logits), **kwargs)
    value = module(inputs, label_lists)
    (grad,) = torch.autograd.grad(value, logits)
    return value.item(), grad


# --- hand-computed values on tiny lists ---------------------------------------------------


def test_ranknet_by_hand():
    one = torch.tensor([[1.0, 0.0]])
    assert L.ranknet_loss(torch.zeros(1, 2), one).item() == pytest.approx(1.0)  # -log2 sigmoid(0)
    assert L.ranknet_loss(torch.zeros(1, 2), one, reduction_log="natural").item() == pytest.approx(LOG2)
    # pairs (a>b): s_a - s_b = 1, 2, 1 -> mean of softplus(-d) / ln 2
    value = L.ranknet_loss(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[3.0, 2.0, 1.0]]))
    expected = (2 * math.log1p(math.exp(-1)) + math.log1p(math.exp(-2))) / 3 / LOG2
    assert value.item() == pytest.approx(expected, rel=1e-6)
    # tied labels make no pair: nothing to learn, a zero that still back-propagates
    scores = torch.tensor([[0.3, -0.2]], requires_grad=True)
    tied = L.ranknet_loss(scores, torch.tensor([[1.0, 1.0]]))
    tied.backward()
    assert tied.item() == 0.0 and scores.grad.abs().sum().item() == 0.0


def test_listnet_by_hand():
    uniform = L.listnet_loss(torch.zeros(1, 4), torch.zeros(1, 4))
    assert uniform.item() == pytest.approx(math.log(4))  # cross-entropy of a uniform list
    assert L.listnet_loss(torch.zeros(1, 4), torch.zeros(1, 4), kl=True).item() == pytest.approx(0.0, abs=1e-6)
    # KL is cross-entropy minus the target's entropy, and matches torch's kl_div
    s, y, mask = random_batch(3)
    kl = L.listnet_loss(s, y, mask, kl=True)
    rows = [F.kl_div(torch.log_softmax(s[b, mask[b]], -1), torch.softmax(y[b, mask[b]], -1), reduction="sum")
            for b in range(len(s))]
    assert kl.item() == pytest.approx(torch.stack(rows).mean().item(), rel=1e-5)
    _, grad_ce = L.score_gradients(L.listnet_loss, s, y, mask)
    _, grad_kl = L.score_gradients(L.listnet_loss, s, y, mask, kl=True)
    torch.testing.assert_close(grad_ce, grad_kl)


def test_adr_mse_by_hand():
    # equal scores: every ApproxRank is 1 + 2 * 0.5 = 2; targets 1, 2, 3
    value = L.adr_mse_loss(torch.zeros(1, 3), torch.tensor([[3.0, 2.0, 1.0]]))
    assert value.item() == pytest.approx((1 / math.log2(2) + 0 + 1 / math.log2(4)) / 3)
    approx = L.approximate_ranks(torch.tensor([[10.0, 0.0, -10.0]]), torch.ones(1, 3, dtype=torch.bool))
    assert approx[0].tolist() == pytest.approx([1.0, 2.0, 3.0], abs=1e-3)


def test_adr_mse_ties_differ_on_purpose():
    """Average ranks (library, default) reach 0 on tied labels with tied scores; ordinal ranks cannot."""
    scores, labels = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    assert L.target_ranks(labels, torch.ones(1, 2, dtype=torch.bool)).tolist() == [[1.5, 1.5]]
    assert L.adr_mse_loss(scores, labels).item() == pytest.approx(0.0)
    first = L.adr_mse_loss(scores, labels, ties="first").item()
    assert first == pytest.approx((0.25 / 1 + 0.25 / math.log2(3)) / 2)
    # the library sides with "average" ...
    s, y, mask = random_batch(11)
    library, _ = run_module(st_losses.ADRMSELoss, s, y, mask)
    assert library == pytest.approx(L.adr_mse_loss(s, y, mask).item(), rel=1e-5)
    assert abs(library - L.adr_mse_loss(s, y, mask, ties="first").item()) > 1e-2
    # ... and without ties (teacher rankings) the two definitions agree
    s, y, mask = teacher_batch(12)
    torch.testing.assert_close(L.adr_mse_loss(s, y, mask, ties="first"), L.adr_mse_loss(s, y, mask))


def test_lambda_loss_by_hand():
    # two documents, labels 1 > 0, equal scores (ranks 1, 2 by position): maxDCG = 1, G = (1, 0)
    # lambdarank: |1/log2(2) - 1/log2(3)| ; ndcg2: delta_1 = 1/log2(2) - 1/log2(3); -log2 sigmoid(0) = 1
    w = 1 - 1 / math.log2(3)
    scores, labels = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
    assert L.lambda_loss(scores, labels, weighting="lambdarank").item() == pytest.approx(w)
    assert L.lambda_loss(scores, labels, weighting="ndcg2").item() == pytest.approx(w)
    assert L.lambda_loss(scores, labels).item() == pytest.approx(11 * w)  # mu = 10
    assert L.lambda_loss(scores, labels, weighting="none").item() == pytest.approx(1.0)


def test_lambda_without_weights_is_ranknet():
    s, y, mask = random_batch(5)
    torch.testing.assert_close(L.lambda_loss(s, y, mask, weighting="none", k=4), L.ranknet_loss(s, y, mask, k=4))


def test_infonce_by_hand_and_as_cross_entropy():
    assert L.infonce_loss(torch.zeros(1, 8), torch.tensor([[1.0] + [0.0] * 7])).item() == pytest.approx(math.log(8))
    value = L.infonce_loss(torch.tensor([[math.log(3), 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
    assert value.item() == pytest.approx(-math.log(3 / 5))
    # one positive per list: torch's cross_entropy with the positive's index
    g = torch.Generator().manual_seed(8)
    s = torch.randn(3, 8, generator=g)
    y = torch.stack([torch.randperm(8, generator=g).float() for _ in range(3)])  # one positive per row
    mask = torch.ones_like(s, dtype=torch.bool)
    target = y.argmax(-1)
    torch.testing.assert_close(L.infonce_loss(s, y, mask), F.cross_entropy(s, target))
    # two positives: the mean of their log-probabilities
    two = L.infonce_loss(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 0.0]]))
    log_q = torch.log_softmax(torch.tensor([1.0, 0.0, 0.0]), -1)
    assert two.item() == pytest.approx(-(log_q[0] + log_q[1]).item() / 2)


def test_infonce_matches_library_multiple_negatives_ranking():
    """One query with a positive and hard negatives, no in-batch negatives, scale 1, no activation."""
    logits = torch.tensor([0.7, 1.2, -0.3, 0.1], requires_grad=True)
    model = L.FixedScoresModel(logits)
    library = st_losses.MultipleNegativesRankingLoss(model, num_negatives=None, scale=1.0,
                                                     activation_fn=torch.nn.Identity())
    lib_value = library([["q"], ["0"], ["1"], ["2"], ["3"]], torch.ones(1))
    book_value = L.InfoNCELoss(model)([["q"], [["0", "1", "2", "3"]]], [torch.tensor([1.0, 0.0, 0.0, 0.0])])
    (g_lib,) = torch.autograd.grad(lib_value, logits)
    (g_book,) = torch.autograd.grad(book_value, logits)
    assert book_value.item() == pytest.approx(lib_value.item(), rel=1e-6)
    torch.testing.assert_close(g_book, g_lib)


def test_approx_ndcg_by_hand():
    # equal scores: every ApproxRank is 2; one relevant document (gain 1), maxDCG = 1
    value = L.approx_ndcg_loss(torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]]))
    assert value.item() == pytest.approx(1 - 1 / math.log2(3))
    # a confident correct order approaches nDCG = 1, the reverse order does not
    labels = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    good = L.approx_ndcg_loss(torch.tensor([[30.0, 20.0, 10.0, 0.0]]), labels).item()
    bad = L.approx_ndcg_loss(torch.tensor([[0.0, 10.0, 20.0, 30.0]]), labels).item()
    assert good == pytest.approx(0.0, abs=1e-4) and bad > 0.3


# --- padding -----------------------------------------------------------------------------

PURE = [L.ranknet_loss, L.listnet_loss, L.adr_mse_loss, L.lambda_loss, L.infonce_loss, L.approx_ndcg_loss]


@pytest.mark.parametrize("loss", PURE, ids=lambda f: f.__name__)
def test_padding_never_leaks(loss):
    s, y, mask = random_batch(21)
    value, grad = L.score_gradients(loss, s, y, mask)
    noisy_s = s.masked_fill(~mask, float("nan"))
    noisy_y = y.masked_fill(~mask, float("inf"))
    value2, grad2 = L.score_gradients(loss, noisy_s, noisy_y, mask)
    assert math.isfinite(value) and value == pytest.approx(value2, rel=1e-6)
    assert torch.isfinite(grad2).all()
    assert grad2[~mask].abs().sum().item() == 0.0
    torch.testing.assert_close(grad, grad2)
    # a row on its own gives the same value as without the other rows' padding
    if loss in (L.listnet_loss, L.infonce_loss, L.approx_ndcg_loss):  # per-list means
        n = int(mask[2].sum())
        alone = loss(s[2:3, :n], y[2:3, :n], mask[2:3, :n]).item()
        per_row = loss(s[2:3], y[2:3], mask[2:3]).item()
        assert alone == pytest.approx(per_row, rel=1e-6)


# --- agreement with sentence-transformers ------------------------------------------------

CASES = [
    ("ranknet", L.RankNetLoss, st_losses.RankNetLoss, {}, {}),
    ("ranknet-k-sigma-ln", L.RankNetLoss, st_losses.RankNetLoss, dict(k=3, sigma=2.0, reduction_log="natural"),
     dict(k=3, sigma=2.0, reduction_log="natural")),
    ("listnet", L.ListNetLoss, st_losses.ListNetLoss, {}, {}),
    ("adr-mse", L.ADRMSELoss, st_losses.ADRMSELoss, {}, {}),
    ("adr-mse-alpha", L.ADRMSELoss, st_losses.ADRMSELoss, dict(alpha=2.5), dict(alpha=2.5)),
    ("lambdaloss", L.LambdaLoss, st_losses.LambdaLoss, {}, {}),
    ("lambdaloss-k-mu", L.LambdaLoss, st_losses.LambdaLoss, dict(k=4, mu=5.0),
     dict(k=4, weighting_scheme=st_losses.NDCGLoss2PPScheme(mu=5.0))),
    ("lambdarank", L.LambdaLoss, st_losses.LambdaLoss, dict(weighting_scheme="lambdarank"),
     dict(weighting_scheme=st_losses.LambdaRankScheme())),
    ("ndcg2", L.LambdaLoss, st_losses.LambdaLoss, dict(weighting_scheme="ndcg2"),
     dict(weighting_scheme=st_losses.NDCGLoss2Scheme())),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("batch", ["graded-ties-padding", "teacher-labels"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_values_and_gradients_as_library(case, batch, seed):
    _, book_cls, library_cls, book_kwargs, library_kwargs = case
    s, y, mask = random_batch(seed) if batch == "graded-ties-padding" else teacher_batch(seed)
    lib_value, lib_grad = run_module(library_cls, s, y, mask, **library_kwargs)
    book_value, book_grad = run_module(book_cls, s, y, mask, **book_kwargs)
    assert math.isfinite(lib_value) and lib_value > 0
    assert book_value == pytest.approx(lib_value, rel=1e-5, abs=1e-6)
    assert lib_grad.abs().max() > 0
    torch.testing.assert_close(book_grad, lib_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mini_batch_size", [1, 4, 0, None])
def test_mini_batches_do_not_change_the_loss(mini_batch_size):
    s, y, mask = random_batch(4)
    reference, grad = run_module(L.LambdaLoss, s, y, mask)
    value, grad2 = run_module(L.LambdaLoss, s, y, mask, mini_batch_size=mini_batch_size)
    assert value == pytest.approx(reference, rel=1e-6)
    torch.testing.assert_close(grad, grad2)


def test_library_agreement_table():
    s, y, mask = random_batch(9)
    rows = L.library_agreement(s, y, mask)
    assert [r["loss"] for r in rows] == ["ranknet", "listnet", "adr-mse", "lambdaloss"]
    for row in rows:
        assert row["max |value diff|"] < 1e-5 and row["max |grad diff|"] < 1e-5
        assert row["book"] == pytest.approx(row["library"], rel=1e-5)


def test_input_errors():
    model = L.FixedScoresModel(torch.zeros(3))
    with pytest.raises(ValueError, match="do not match"):
        L.RankNetLoss(model)([["q"], [["0", "1"]]], [torch.tensor([1.0, 0.0, 2.0])])
    with pytest.raises(ValueError, match="single tensor"):
        L.RankNetLoss(model)([["q"], [["0", "1"]]], torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="shape"):
        L.ranknet_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="weighting"):
        L.lambda_loss(torch.zeros(1, 2), torch.zeros(1, 2), weighting="ndcg3")


# --- the registry -------------------------------------------------------------------------


def test_make_loss_picks_the_implementation():
    model = L.FixedScoresModel(torch.zeros(3))
    for name, library_name in L.LIBRARY_LOSSES.items():
        assert type(L.make_loss(name, model)) is getattr(st_losses, library_name)
    for name, cls in L.BOOK_LOSSES.items():
        loss = L.make_loss(name, model, implementation="book")
        assert type(loss) is cls and loss.model is model
    assert isinstance(L.make_loss("ADR_MSE", model, "book", alpha=2.0), L.ADRMSELoss)
    assert L.make_loss("lambdaloss", model, "book", k=10).get_config_dict()["k"] == 10
    assert L.make_loss("ranknet", model, mini_batch_size=8).mini_batch_size == 8
    assert "burges" in L.make_loss("ranknet", model, "book").citation.lower()
    with pytest.raises(ValueError, match="implementation='book'"):
        L.make_loss("approx-ndcg", model)
    with pytest.raises(ValueError, match="implementation='library'"):
        L.make_loss("bce", model, implementation="book")
    with pytest.raises(ValueError, match="unknown loss"):
        L.make_loss("hinge", model)
    with pytest.raises(TypeError):
        L.make_loss("listnet", model, "book", alpha=1.0)


# --- a real cross-encoder -------------------------------------------------------------------


def test_book_loss_trains_a_real_cross_encoder(minilm_path, tmp_path):
    """Book and library RankNet agree on a real MiniLM, and the book's plugs into CrossEncoderTrainer."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

    torch.manual_seed(0)
    model = CrossEncoder(minilm_path, num_labels=1, max_length=32)
    queries = ["what are pandas", "capital of france"]
    docs = [["pandas are bears from china", "a panda eats bamboo", "fish swim"],
            ["paris is the capital of france", "lyon is a french city"]]
    labels = [torch.tensor([3.0, 2.0, 1.0]), torch.tensor([2.0, 1.0])]
    book = L.make_loss("ranknet", model, implementation="book", mini_batch_size=2)
    library = L.make_loss("ranknet", model, implementation="library", mini_batch_size=2)
    model.eval()  # no dropout, so both see the same scores
    with torch.no_grad():
        assert book([queries, docs], labels).item() == pytest.approx(library([queries, docs], labels).item(), rel=1e-5)

    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    data = Dataset.from_dict({"query": queries, "docs": docs, "labels": [x.tolist() for x in labels]})
    args = CrossEncoderTrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2,
                                         learning_rate=1e-3, report_to="none", save_strategy="no",
                                         logging_steps=1, use_cpu=True, seed=0)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=book)
    result = trainer.train()
    assert math.isfinite(result.training_loss) and result.training_loss > 0
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))
