"""RankZephyr as rank_llm ran it when the paper labelled its data (castorini/rank_llm at fd40109,
2024-04): the prompt character for character, the word budget that shrinks to fit the context,
and answers generated to exactly a full ranking's length."""

from __future__ import annotations

import pytest

from rank_distillm import data, models
from rank_distillm.profiles import load_profile
from rank_distillm.teacher import RANKZEPHYR, Request, sliding_window_rerank
from rank_distillm.teacher.backends import Backend, Answer, live_backend
from rank_distillm.teacher.prompts import fit_window, prompt_tokens, ranking_tokens

from .conftest import DL20

# rank_listwise_os_llm.py at fd40109: the system message of ZephyrReranker, _add_prefix_prompt and
# _add_post_prompt with variable_passages=True (RankZephyr), as they read there.
SYSTEM_2024 = "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy to the query"
PREFIX_2024 = ("I will provide you with {num} passages, each indicated by a numerical identifier []. "
               "Rank the passages based on their relevance to the search query: {query}.\n")
POST_2024 = ("Search Query: {query}.\nRank the {num} passages above based on their relevance to the search query. "
             "All the passages should be included and listed using identifiers, in descending order of relevance. "
             "The output format should be [] > [], e.g., [2] > [1], Only respond with the ranking results, "
             "do not say any word or explain.")


@pytest.fixture(scope="module")
def dl20_candidates(runs_dir):
    return data.load_candidates(DL20, runs_dir / "trec-dl-2020" / "bm25.run", depth=20, max_queries=2)


def _content_2024(text: str, max_length: int) -> str:
    """rank_llm's covert_doc_to_prompt_content: strip, fix_text, the first max_length words, [n] -> (n)."""
    import re

    from ftfy import fix_text

    return re.sub(r"\[(\d+)\]", r"(\1)", " ".join(fix_text(text.strip()).split()[:max_length]))


@pytest.mark.parametrize("query", [0, 1])
def test_rankzephyr_prompt_is_rank_llm_2024_character_for_character(dl20_candidates, query):
    from ftfy import fix_text

    c = dl20_candidates[query]
    texts = c.texts[:20]
    messages = RANKZEPHYR.messages(c.query, texts, max_words=300)
    body = PREFIX_2024.format(num=20, query=c.query) + "\n"
    body += "".join(f"[{i}] {_content_2024(t, 300)}\n" for i, t in enumerate(texts, start=1))
    body += POST_2024.format(num=20, query=c.query)
    assert messages == [{"role": "system", "content": SYSTEM_2024}, {"role": "user", "content": fix_text(body)}]
    assert "Answer concisely" not in body  # rank_llm's wording of June 2025, after the paper


class WordTokenizer:
    """A stand-in tokenizer: one token per whitespace-separated word, a BOS token first (as Llama's
    ``encode`` adds one), and a chat template that joins the messages."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [0] * add_special_tokens + [1] * len(text.split())

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return " ".join(m["content"] for m in messages) + " <|assistant|>"


def test_ranking_tokens_is_a_full_answer_minus_the_bos():
    # "[1] > [2] > [3]": 5 words; encode adds a BOS, which rank_llm subtracts again (here: not added)
    assert ranking_tokens(WordTokenizer(), 3) == 5
    assert ranking_tokens(WordTokenizer(), 20) == 39


def test_fit_window_shrinks_the_word_budget_as_rank_llm(dl20_candidates):
    tok = WordTokenizer()
    c = dl20_candidates[0]
    texts = [" ".join([t] * 10) for t in c.texts[:20]]  # long passages: 300 words each after the cut
    full = RANKZEPHYR.messages(c.query, texts, 300)
    n_full = prompt_tokens(tok, RANKZEPHYR, full)
    output = ranking_tokens(tok, 20)
    context = n_full - 500  # 500 + output tokens too many: the budget must shrink
    messages, words = fit_window(RANKZEPHYR, c.query, texts, 300, tokenizer=tok, context_size=context, output_tokens=output)
    assert prompt_tokens(tok, RANKZEPHYR, messages) <= context - output
    # the first step cuts (excess // (4 * passages)) words from every passage, as rank_llm's loop
    first = 300 - (n_full - context + output) // (4 * 20)
    assert words <= first < 300
    # the step before the last did not fit: the budget is not smaller than it had to be
    assert prompt_tokens(tok, RANKZEPHYR, RANKZEPHYR.messages(c.query, texts, words + 1)) > context - output or words == first
    # a prompt that fits is left alone
    assert fit_window(RANKZEPHYR, c.query, texts, 300, tokenizer=tok, context_size=n_full + output,
                      output_tokens=output) == (full, 300)
    with pytest.raises(ValueError, match="no passage text"):
        fit_window(RANKZEPHYR, c.query, texts, 300, tokenizer=tok, context_size=50, output_tokens=output)


class CountingBackend(Backend):
    """Answers the input order and keeps the prompts it was sent."""

    name = "counting"

    def __init__(self):
        self.tokenizer = WordTokenizer()
        self.seen: list[Request] = []

    def generate(self, requests):
        self.seen += requests
        return [Answer(" > ".join(f"[{i + 1}]" for i in range(len(r.docids))), "") for r in requests]


def test_sliding_windows_fit_every_prompt_into_the_context(dl20_candidates):
    backend = CountingBackend()
    texts_long = [data.Candidates(c.qid, c.query, c.docids, [" ".join([t] * 10) for t in c.texts]) for c in dl20_candidates]
    sliding_window_rerank(texts_long, backend, window=10, stride=5, depth=20, progress=False, context_size=1500)
    assert len(backend.seen) == 2 * 3
    for r in backend.seen:
        assert prompt_tokens(backend.tokenizer, RANKZEPHYR, r.messages) <= 1500 - ranking_tokens(backend.tokenizer, 10)
    plain = CountingBackend()
    sliding_window_rerank(texts_long, plain, window=10, stride=5, depth=20, progress=False)
    assert all(prompt_tokens(plain.tokenizer, RANKZEPHYR, r.messages) > 1500 for r in plain.seen)


def test_gpu_teacher_profile_is_rank_llm_2024():
    t = load_profile("gpu")["teacher"]
    assert (t["prompt"], t["window"], t["stride"], t["depth"], t["max_words"]) == ("rankzephyr", 20, 10, 100, 300)
    assert t["max_new_tokens"] == t["min_new_tokens"] == "ranking" and t["context_size"] == 4096
    assert t["model"] == "castorini/rank_zephyr_7b_v1_full"


@pytest.mark.slow
def test_ranking_length_answers_with_smollm2(dl20_candidates, one_torch_thread):
    """A real LLM made to answer exactly a full ranking's tokens (min = max), as rank_llm makes RankZephyr."""
    backend = live_backend("transformers", models.SMOLLM2_GGUF, max_new_tokens="ranking", min_new_tokens="ranking",
                           threads=1)
    n = backend.lengths(backend.tokenizer, 3)
    assert n[0] == n[1] == ranking_tokens(backend.tokenizer, 3) > 0
    c = dl20_candidates[0]
    result = sliding_window_rerank([data.Candidates(c.qid, c.query, c.docids[:3], c.texts[:3])], backend, window=3,
                                   stride=3, depth=3, max_words=12, progress=False, context_size=2048)
    (window,) = result.windows
    assert window["generated_tokens"] == n[0]
