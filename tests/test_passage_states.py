"""Precomputed passage states: the same scores, losses, gradients and training as the split student."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rank_distillm import data
from rank_distillm.passage_states import PassageStates, StateStore, precomputed_student
from rank_distillm.student import build_student

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MAX_LENGTH = 128


@pytest.fixture(scope="module")
def dl19_pairs(data_dir):
    """The BM25 top-100 of the first two DL19 queries: 200 real (query, passage) pairs."""
    data.setup_ir_datasets()
    cands = data.load_candidates(data.DL19, data_dir / "runs/trec-dl-2019/bm25.run", depth=100, max_queries=2)
    return [(c.query, t) for c in cands for t in c.texts]


def _student(minilm_path, separate_layers=5, dropout=True):
    student = build_student(minilm_path, head="segment-cosine", max_length=MAX_LENGTH, separate_layers=separate_layers)
    if not dropout:
        for m in student.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    return student


def _upper_weights(student) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in student.model.named_parameters() if v.requires_grad}


def test_scores_equal_the_split_students_on_real_pairs(minilm_path, dl19_pairs):
    student = _student(minilm_path)
    plain = np.asarray(student.predict(dl19_pairs, batch_size=64))
    fast = precomputed_student(student)
    figures = fast[0].precompute(dl19_pairs, progress=False)
    assert figures["segments"] >= 190 and figures["bytes_per_token"] == 4 * 384
    # some pairs fill max_length: their passages are cut, and the cut passage is its own segment
    lengths = student.preprocess(dl19_pairs)["attention_mask"].sum(1)
    assert int(lengths.max()) == MAX_LENGTH
    scores = np.asarray(fast.predict(dl19_pairs, batch_size=64))
    assert np.abs(scores - plain).max() < 1e-3
    assert figures["segments"] == len(fast[0].store)  # predict found every segment stored: nothing recomputed


@pytest.mark.parametrize("dtype, bound", [("float16", 0.05), ("int8", 0.2)])
def test_smaller_stores_keep_the_ranking(minilm_path, dl19_pairs, dtype, bound):
    from scipy.stats import kendalltau

    student = _student(minilm_path)
    exact = precomputed_student(student).predict(dl19_pairs)
    fast = precomputed_student(student, StateStore(dtype))
    fast[0].precompute(dl19_pairs, progress=False)
    assert fast[0].store.bytes_per_token == {"float16": 2 * 384, "int8": 384 + 4}[dtype]
    scores = fast.predict(dl19_pairs)
    assert 0 < np.abs(scores - exact).max() < bound  # scores on the scale of 20 x cosine
    assert kendalltau(scores, exact).statistic > 0.99


def test_store_round_trips_and_refuses_other_weights(minilm_path, dl19_pairs, tmp_path):
    student = _student(minilm_path)
    fast = precomputed_student(student, StateStore("int8"))
    fast[0].precompute(dl19_pairs[:50], progress=False)
    before = fast.predict(dl19_pairs[:50])
    fast[0].store.save(tmp_path / "states")
    loaded = StateStore.load(tmp_path / "states", fingerprint=fast[0].fingerprint)
    assert len(loaded) == len(fast[0].store) and loaded.dtype == "int8"
    again = precomputed_student(student, loaded)
    np.testing.assert_array_equal(again.predict(dl19_pairs[:50]), before)
    assert len(again[0].store) == len(loaded)  # every segment came from the file

    other = _student(minilm_path, separate_layers=4)
    with pytest.raises(ValueError, match="other lower-layer weights"):
        StateStore.load(tmp_path / "states", fingerprint=PassageStates(other[0]).fingerprint)
    with pytest.raises(ValueError, match="other lower-layer weights"):
        precomputed_student(other, loaded)
    with pytest.raises(FileNotFoundError, match="no passage-state store"):
        StateStore.load(tmp_path / "nothing")


def test_a_full_cross_encoder_has_no_passage_states(minilm_path):
    with pytest.raises(ValueError, match="separate_layers >= 1"):
        precomputed_student(_student(minilm_path, separate_layers=0))


@pytest.mark.parametrize("loss_name", ["ranknet", "listnet"])
def test_loss_and_gradients_equal_the_trainers_path(minilm_path, dl19_pairs, loss_name):
    """The library's listwise loss on the student (lower layers frozen) and on the stored states."""
    from rank_distillm.losses import make_loss

    queries = [dl19_pairs[0][0], dl19_pairs[100][0]]
    docs = [[p for _, p in dl19_pairs[:12]], [p for _, p in dl19_pairs[100:112]]]
    labels = [torch.arange(12, 0, -1).float(), torch.arange(12, 0, -1).float()]

    def loss_and_grads(student, model):
        student.model.eval()  # no dropout: both paths compute the same function
        loss = make_loss(loss_name, model, mini_batch_size=0)([queries, docs], labels)
        loss.backward()
        return loss.detach(), {k: p.grad.clone() for k, p in student.model.named_parameters() if p.grad is not None}

    plain_student = _student(minilm_path)
    PassageStates(plain_student[0])  # freezes the same lower layers, uses nothing else
    plain_loss, plain_grads = loss_and_grads(plain_student, plain_student)
    fast_student = _student(minilm_path)
    fast_loss, fast_grads = loss_and_grads(fast_student, precomputed_student(fast_student))
    torch.testing.assert_close(fast_loss, plain_loss, atol=1e-5, rtol=1e-5)
    assert set(fast_grads) == set(plain_grads) and any(k.startswith("encoder.layer.5.") for k in fast_grads)
    assert not any(k.startswith(("embeddings.", "encoder.layer.0.", "encoder.layer.4.")) for k in fast_grads)
    for k in plain_grads:
        torch.testing.assert_close(fast_grads[k], plain_grads[k], atol=1e-5, rtol=1e-4)


def test_cross_encoder_trainer_trains_the_upper_layers_alike(minilm_path, dl19_pairs, tmp_path):
    """Two CrossEncoderTrainer steps (dropout off): the stored-states model ends where the student ends."""
    import datasets
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import RankNetLoss

    rows = {"query": [], "docs": [], "labels": []}
    for start in (0, 100, 20, 120):
        rows["query"].append(dl19_pairs[start][0])
        rows["docs"].append([p for _, p in dl19_pairs[start : start + 8]])
        rows["labels"].append([float(8 - i) for i in range(8)])
    train = datasets.Dataset.from_dict(rows)

    def trained(student, model, out):
        args = CrossEncoderTrainingArguments(
            output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=2, seed=7, data_seed=7,
            save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
        )
        # plain SGD: its update is the gradient itself (AdamW's first steps, about lr * sign(gradient),
        # would turn float noise in gradients near 0 into whole steps)
        sgd = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        loss = RankNetLoss(model, mini_batch_size=0)
        CrossEncoderTrainer(model=model, args=args, train_dataset=train, loss=loss, optimizers=(sgd, None)).train()
        return _upper_weights(student)

    plain_student = _student(minilm_path, dropout=False)
    PassageStates(plain_student[0])  # the same frozen lower layers
    start = _upper_weights(plain_student)
    plain = trained(plain_student, plain_student, tmp_path / "plain")
    fast_student = _student(minilm_path, dropout=False)
    lower_before = {k: v.clone() for k, v in fast_student.model.state_dict().items() if k.startswith("encoder.layer.0.")}
    fast = trained(fast_student, precomputed_student(fast_student), tmp_path / "fast")
    moved = max(float((plain[k] - start[k]).abs().max()) for k in start)
    assert moved > 1e-3
    for k in plain:
        torch.testing.assert_close(fast[k], plain[k], atol=1e-3 * moved, rtol=0)
    for k, v in lower_before.items():
        torch.testing.assert_close(fast_student.model.state_dict()[k], v, atol=0, rtol=0)
