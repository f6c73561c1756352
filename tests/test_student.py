"""The student's heads: the segment-cosine head against a hand computation, save/load, errors."""

from __future__ import annotations

import json

import pytest
import torch

from rank_distillm.student import SegmentCosineScore, build_student, load_student

PAIRS = [
    ("what is the capital of france", "Paris is the capital and most populous city of France."),
    ("what is the capital of france", "Bananas are a yellow fruit rich in potassium."),
    ("how do plants make food", "Photosynthesis turns light, water and carbon dioxide into sugar in plants."),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _by_hand(minilm_path: str, pairs) -> torch.Tensor:
    """20 * cos(mean of the query segment, mean of the passage segment) with plain transformers."""
    from transformers import AutoModel, AutoTokenizer

    tok, bert = AutoTokenizer.from_pretrained(minilm_path), AutoModel.from_pretrained(minilm_path).eval()
    enc = tok([q for q, _ in pairs], [p for _, p in pairs], padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        h = bert(**enc).last_hidden_state
    mask, segment = enc["attention_mask"].float(), enc["token_type_ids"].float()
    q_mask, p_mask = mask * (1 - segment), mask * segment
    q = (h * q_mask[..., None]).sum(1) / q_mask.sum(1, keepdim=True)
    p = (h * p_mask[..., None]).sum(1) / p_mask.sum(1, keepdim=True)
    return 20 * torch.nn.functional.cosine_similarity(q, p)


def test_segment_cosine_head_matches_a_hand_computation(minilm_path):
    model = build_student(minilm_path, head="segment-cosine", max_length=64)
    scores = torch.tensor(model.predict(PAIRS))
    torch.testing.assert_close(scores, _by_hand(minilm_path, PAIRS), atol=1e-4, rtol=1e-4)
    # an untrained student already ranks: the relevant passage above the banana
    assert scores[0] > scores[1]


def test_segment_cosine_student_round_trips(minilm_path, tmp_path):
    model = build_student(minilm_path, head="segment-cosine", max_length=64)
    before = model.predict(PAIRS)
    model.save_pretrained(str(tmp_path / "student"))
    assert "rank_distillm.student.SegmentCosineScore" in (tmp_path / "student" / "modules.json").read_text()
    loaded = load_student(tmp_path / "student")
    assert isinstance(loaded[-1], SegmentCosineScore) and loaded[-1].scale == 20.0
    torch.testing.assert_close(torch.tensor(loaded.predict(PAIRS)), torch.tensor(before))


def test_classifier_head_is_the_librarys_cross_encoder(minilm_path, tmp_path):
    model = build_student(minilm_path, head="classifier", max_length=64)
    assert model.num_labels == 1 and type(model.model).__name__ == "BertForSequenceClassification"
    model.save_pretrained(str(tmp_path / "student"))
    torch.testing.assert_close(torch.tensor(load_student(tmp_path / "student").predict(PAIRS)), torch.tensor(model.predict(PAIRS)))


def test_unknown_head_names_the_field(minilm_path):
    with pytest.raises(ValueError, match="training.head: unknown head 'mean'"):
        build_student(minilm_path, head="mean")


def test_segment_head_without_token_types_says_so():
    features = {"token_embeddings": torch.zeros(1, 3, 4), "attention_mask": torch.ones(1, 3)}
    with pytest.raises(ValueError, match="token_type_ids"):
        SegmentCosineScore()(features)


def test_malformed_modules_json_names_the_file(tmp_path):
    (tmp_path / "modules.json").write_text("[{")
    with pytest.raises(ValueError, match=r"modules\.json: not valid JSON"):
        load_student(tmp_path)


def test_own_modules_are_recognised(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.base.modules.transformer.Transformer"}]))
    from rank_distillm.student import _own_modules

    assert not _own_modules(tmp_path)
    (tmp_path / "modules.json").write_text(json.dumps([{"type": "rank_distillm.student.SegmentCosineScore"}]))
    assert _own_modules(tmp_path)


# --------------------------------------------------------------------------- separate layers (PreTTR)


def _bi_encoder(minilm_path: str, pairs) -> torch.Tensor:
    """20 * cos of the backbone used as the bi-encoder it was trained as: query and passage encoded alone, mean-pooled."""
    from transformers import AutoModel, AutoTokenizer

    tok, bert = AutoTokenizer.from_pretrained(minilm_path), AutoModel.from_pretrained(minilm_path).eval()

    def embed(texts):
        enc = tok(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            h = bert(**enc).last_hidden_state
        m = enc["attention_mask"].float()[..., None]
        return (h * m).sum(1) / m.sum(1)

    return 20 * torch.nn.functional.cosine_similarity(embed([q for q, _ in pairs]), embed([p for _, p in pairs]))


def test_all_layers_separate_is_exactly_the_bi_encoder(minilm_path):
    model = build_student(minilm_path, head="segment-cosine", max_length=128, separate_layers=6)
    torch.testing.assert_close(torch.tensor(model.predict(PAIRS)), _bi_encoder(minilm_path, PAIRS), atol=1e-4, rtol=1e-4)


def test_no_separate_layers_is_the_joint_cross_encoder(minilm_path):
    from rank_distillm.student import SplitLayersTransformer

    split = SplitLayersTransformer(minilm_path, separate_layers=0, processor_kwargs={"model_max_length": 64})
    joint = build_student(minilm_path, head="segment-cosine", max_length=64)
    features = joint[0].preprocess(PAIRS)
    with torch.no_grad():
        a = joint[0](dict(features))["token_embeddings"]
        b = split(dict(features))["token_embeddings"]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("separate_layers", [3, 5])
def test_separate_layers_lie_between_bi_and_cross_encoder_and_ignore_padding(minilm_path, separate_layers):
    model = build_student(minilm_path, head="segment-cosine", max_length=128, separate_layers=separate_layers)
    together = torch.tensor(model.predict(PAIRS))
    alone = torch.tensor([model.predict([pair])[0] for pair in PAIRS])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)  # the block mask leaves padding out
    assert not torch.allclose(together, _bi_encoder(minilm_path, PAIRS), atol=1e-3)  # the top layers do interact


def test_separate_layers_round_trip_and_eager_attention_agrees(minilm_path, tmp_path):
    from rank_distillm.student import SplitLayersTransformer

    model = build_student(minilm_path, head="segment-cosine", max_length=64, separate_layers=4)
    before = torch.tensor(model.predict(PAIRS))
    model.save_pretrained(str(tmp_path / "student"))
    loaded = load_student(tmp_path / "student")
    assert isinstance(loaded[0], SplitLayersTransformer) and loaded[0].separate_layers == 4
    torch.testing.assert_close(torch.tensor(loaded.predict(PAIRS)), before)
    eager = SplitLayersTransformer(
        minilm_path, separate_layers=4, processor_kwargs={"model_max_length": 64}, config_kwargs={"num_labels": 1},
        model_kwargs={"attn_implementation": "eager"},
    )
    assert eager._attention == "eager"
    loaded[0] = eager
    torch.testing.assert_close(torch.tensor(loaded.predict(PAIRS)), before, atol=1e-4, rtol=1e-4)


def test_separate_layers_errors_name_the_field(minilm_path):
    with pytest.raises(ValueError, match="separate_layers: 7 is not between 0 and the model's 6 layers"):
        build_student(minilm_path, head="segment-cosine", separate_layers=7)
    with pytest.raises(ValueError, match="training.separate_layers needs head: segment-cosine"):
        build_student(minilm_path, head="classifier", separate_layers=2)


# --------------------------------------------------------------------------- the paper's student


def test_linear_head_is_one_linear_layer_on_cls(tmp_path):
    """head: linear (lightning-ir's): s = w . h_[CLS] + c on the last layer, and nothing else; round trip."""
    from transformers import AutoModel, AutoTokenizer

    from rank_distillm.models import resolve_model

    path = resolve_model("random:electra-tiny")
    torch.manual_seed(3)
    model = build_student(path, head="linear", max_length=64)
    linear = model[2].linear
    assert (linear.in_features, linear.out_features) == (64, 1)
    heads = [n for n, p in model.named_parameters() if not n.startswith("0.")]
    assert heads == ["2.linear.weight", "2.linear.bias"]  # no dense/GELU layer, unlike the classifier head
    tok, electra = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    enc = tok([q for q, _ in PAIRS], [p for _, p in PAIRS], padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        by_hand = linear(electra(**enc).last_hidden_state[:, 0]).squeeze(-1)
    torch.testing.assert_close(torch.tensor(model.predict(PAIRS)), by_hand, atol=1e-5, rtol=1e-5)
    model.save_pretrained(str(tmp_path / "s"))
    again = load_student(tmp_path / "s")
    torch.testing.assert_close(torch.tensor(again.predict(PAIRS)), by_hand, atol=1e-5, rtol=1e-5)


def test_query_and_passage_are_cut_separately(minilm_path, tmp_path):
    """query_length / passage_length: each side keeps its own first tokens (lightning-ir's 32 / 256);
    a joint max_length cuts longest-first instead."""
    query = "what is the capital city of france and how many people live there today"
    passage = "Paris is the capital and most populous city of France with two million residents in the city proper."
    tokenize = build_student(minilm_path, head="linear", max_length=512)[0].tokenizer
    q_tokens, p_tokens = tokenize.tokenize(query), tokenize.tokenize(passage)
    model = build_student(minilm_path, head="linear", query_length=5, passage_length=7, max_length=15)
    ids = model[0].preprocess([(query, passage)])["input_ids"][0].tolist()
    assert tokenize.convert_ids_to_tokens(ids) == ["[CLS]", *q_tokens[:5], "[SEP]", *p_tokens[:7], "[SEP]"]
    joint = build_student(minilm_path, head="linear", max_length=15)
    joint_tokens = tokenize.convert_ids_to_tokens(joint[0].preprocess([(query, passage)])["input_ids"][0].tolist())
    assert joint_tokens != tokenize.convert_ids_to_tokens(ids)  # longest-first takes from both sides
    model.save_pretrained(str(tmp_path / "cut"))
    assert load_student(tmp_path / "cut")[0].preprocess([(query, passage)])["input_ids"][0].tolist() == ids
    # the classifier head takes the same budgets; separate_layers keeps its passage [CLS] after the cut
    classifier = build_student(minilm_path, head="classifier", query_length=5, passage_length=7)
    assert classifier[0].preprocess([(query, passage)])["input_ids"][0].tolist() == ids
    split = build_student(minilm_path, head="segment-cosine", separate_layers=2, query_length=5, passage_length=7)
    split_ids = split[0].preprocess([(query, passage)])["input_ids"][0].tolist()
    assert tokenize.convert_ids_to_tokens(split_ids) == ["[CLS]", *q_tokens[:5], "[SEP]", "[CLS]", *p_tokens[:7], "[SEP]"]


def test_untrained_sweep_starts_from_bm25_and_ends_at_the_bi_encoder(minilm_path, runs_dir):
    """The sweep's rows: BM25's own order, the classifier head, then 0..6 separate layers; the last is the bi-encoder's nDCG@10."""
    from sentence_transformers import SentenceTransformer

    from rank_distillm import data, evaluation
    from rank_distillm.evaluation import untrained_sweep

    data.setup_ir_datasets()
    cands = data.load_candidates(data.DL19, runs_dir / "trec-dl-2019" / "bm25.run", depth=10, max_queries=3)
    sweep = untrained_sweep(minilm_path, cands, data.DL19, max_length=128, batch_size=32)
    assert list(sweep["separate layers"].iloc[2:]) == list(range(7)) and sweep["head"].iloc[1] == "classifier"
    bm25 = evaluation.evaluate_run(data.Run({c.qid: dict(zip(c.docids, c.scores)) for c in cands}), data.DL19, ["nDCG@10"])
    assert sweep["nDCG@10"].iloc[0] == pytest.approx(bm25["nDCG@10"])
    bi = evaluation.rerank(SentenceTransformer(minilm_path), cands, show_progress_bar=False)
    assert sweep["nDCG@10"].iloc[-1] == pytest.approx(evaluation.evaluate_run(bi, data.DL19, ["nDCG@10"])["nDCG@10"], abs=1e-4)
