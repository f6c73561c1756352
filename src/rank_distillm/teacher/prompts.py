"""Listwise prompts: RankZephyr, RankVicuna and RankGPT, as ``castorini/rank_llm`` builds them.

A prompt is a list of chat messages (``{"role": ..., "content": ...}``). Two ways to turn it
into the text the LLM reads:

- ``conversation="chat"``: the model's own chat template (``tokenizer.apply_chat_template``),
  which is how RankZephyr and RankGPT are run and how any instruction-tuned model is asked;
- ``conversation="vicuna"``: FastChat's fixed Vicuna v1.1 format
  (``"{system} USER: {user} ASSISTANT:"``), which RankVicuna was trained with. The text is
  fixed by the template, so it is rendered here (:func:`render_fixed`) and the stored
  RankVicuna logs are reproduced character for character.

Each passage is repaired with ``ftfy.fix_text`` (curly quotes become straight ones, broken
encodings and full-width characters are repaired), then cut to a word budget
(``max_words``; rank_llm uses ``300 * 20 / window``), then ``[n]`` inside it becomes
``(n)`` so that it cannot be read as an identifier, in rank_llm's order
(:func:`passage_content`); the query's ``[n]`` too, and the whole prompt is cleaned with
``ftfy.fix_text`` once more, as rank_llm does.

The wording is rank_llm's when the paper labelled its data (``src/rank_llm/rerank/
rank_listwise_os_llm.py`` at fd40109, April 2024): RankZephyr's instruction ends ``e.g., [2] >
[1], Only respond with the ranking results, do not say any word or explain.`` The same
file fixes the budgets: a prompt longer than the context minus the answer's tokens gets a
smaller word budget per passage until it fits (:func:`fit_window`), and the answer is
generated to exactly the token length of ``[1] > [2] > ... > [window]`` minus one
(:func:`ranking_tokens`, rank_llm's ``num_output_tokens``, used as both ``min_new_tokens``
and ``max_new_tokens``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

Messages = list[dict[str, str]]

_NUMBER = re.compile(r"\[(\d+)\]")


def neutralise_ids(text: str) -> str:
    """``[3]`` -> ``(3)``: a passage must not contain something that reads as an identifier."""
    return _NUMBER.sub(r"(\1)", text)


def cut_words(text: str, max_words: int | None) -> str:
    """The first ``max_words`` whitespace-separated words, joined by single spaces."""
    text = text.replace("Title: Content: ", "").strip()
    words = text.split()
    return " ".join(words if max_words is None else words[: int(max_words)])


def default_max_words(window: int) -> int:
    """rank_llm's passage budget: 300 words for a window of 20, scaled with the window."""
    return int(300 * (20 / window))


def _fix_text(text: str) -> str:
    try:
        from ftfy import fix_text
    except ImportError:  # pragma: no cover - ftfy is a dependency
        return text
    return fix_text(text)


def passage_content(text: str, max_words: int | None) -> str:
    """A passage as the prompt shows it, in rank_llm's order (``convert_doc_to_prompt_content``, then
    ``_replace_number``): repaired (``ftfy``) first, then cut to ``max_words``, then ``[n]`` -> ``(n)``.

    The order matters: a repair can merge or split words (so the cut falls elsewhere), and
    turns full-width ``［３］`` into ``[3]``, which the neutralisation then makes ``(3)``.
    """
    return neutralise_ids(cut_words(_fix_text(text), max_words))


@dataclass(frozen=True)
class PromptTemplate:
    """One listwise prompt: its wording and how its messages become text."""

    name: str
    system: str
    prefix: Callable[[str, int], str]
    post: Callable[[str, int], str]
    conversation: str = "chat"  # "chat" (the model's chat template) or "vicuna" (fixed text)
    multi_turn: bool = False  # RankGPT: one user turn per passage, acknowledged by the assistant

    def messages(self, query: str, passages: list[str], max_words: int | None = 300) -> Messages:
        """The chat messages for one window (passages best-first in the current order)."""
        query = neutralise_ids(query)
        num = len(passages)
        contents = [passage_content(p, max_words) for p in passages]
        if self.multi_turn:
            msgs = [{"role": "system", "content": self.system},
                    {"role": "user", "content": self.prefix(query, num)},
                    {"role": "assistant", "content": "Okay, please provide the passages."}]
            for i, content in enumerate(contents, start=1):
                msgs.append({"role": "user", "content": f"[{i}] {content}"})
                msgs.append({"role": "assistant", "content": f"Received passage [{i}]."})
            msgs.append({"role": "user", "content": self.post(query, num)})
        else:
            body = f"{self.prefix(query, num)}\n"
            body += "".join(f"[{i}] {content}\n" for i, content in enumerate(contents, start=1))
            body += self.post(query, num)
            msgs = [{"role": "system", "content": self.system}, {"role": "user", "content": body}]
        return [{"role": m["role"], "content": _fix_text(m["content"])} for m in msgs]


def render_fixed(template: PromptTemplate, messages: Messages) -> str | None:
    """The exact prompt text when the template fixes the conversation format, else ``None``.

    ``None`` means: render with the model's chat template (the backend does it).
    """
    if template.conversation == "chat":
        return None
    if template.conversation == "vicuna":
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        text = system + " "
        for m in messages:
            if m["role"] == "user":
                text += f"USER: {m['content']} "
            elif m["role"] == "assistant":
                text += f"ASSISTANT: {m['content']}</s>"
        return text + "ASSISTANT:"
    raise ValueError(f"prompt {template.name!r}: unknown conversation format {template.conversation!r}")


_RANKLLM_PREFIX = (
    "I will provide you with {num} passages, each indicated by a numerical identifier []. "
    "Rank the passages based on their relevance to the search query: {query}.\n"
)


def _rankllm_post(example: str):
    """rank_llm's closing instruction; RankZephyr and RankVicuna differ only in its end."""
    return lambda query, num: (
        f"Search Query: {query}.\nRank the {num} passages above based on their relevance to the search "
        "query. All the passages should be included and listed using identifiers, in descending order of "
        f"relevance. The output format should be [] > [], e.g., {example}"
    )


# rank_llm at fd40109 (2024-04): ZephyrReranker runs with variable_passages=True, hence "[2] > [1]"
RANKZEPHYR = PromptTemplate(
    name="rankzephyr",
    system="You are RankLLM, an intelligent assistant that can rank passages based on their relevancy to the query",
    prefix=lambda query, num: _RANKLLM_PREFIX.format(num=num, query=query),
    post=_rankllm_post("[2] > [1], Only respond with the ranking results, do not say any word or explain."),
)

RANKVICUNA = PromptTemplate(
    name="rankvicuna",
    system="You are RankVicuna, an intelligent assistant that can rank passages based on their relevancy to the query.",
    prefix=lambda query, num: _RANKLLM_PREFIX.format(num=num, query=query),
    post=_rankllm_post("[4] > [2], Only respond with the ranking results, do not say any word or explain. "),
    conversation="vicuna",
)

RANKGPT = PromptTemplate(
    name="rankgpt",
    system="You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query.",
    prefix=lambda query, num: (
        f"I will provide you with {num} passages, each indicated by number identifier []. \n"
        f"Rank the passages based on their relevance to query: {query}."
    ),
    post=lambda query, num: (
        f"Search Query: {query}. \nRank the {num} passages above based on their relevance to the search "
        "query. The passages should be listed in descending order using identifiers. The most relevant "
        "passages should be listed first. The output format should be [] > [], e.g., [1] > [2]. "
        "Only response the ranking results, do not say any word or explain."
    ),
    multi_turn=True,
)

TEMPLATES = {t.name: t for t in (RANKZEPHYR, RANKVICUNA, RANKGPT)}


# --------------------------------------------------------------------------- token budgets (rank_llm at fd40109)


def ranking_tokens(tokenizer, window: int) -> int:
    """Tokens of a full answer for ``window`` passages, ``[1] > [2] > ... > [window]``, without special tokens.

    rank_llm's ``num_output_tokens`` (``len(encode(...)) - 1``: the encoded string less the BOS
    token that RankZephyr's Llama tokenizer adds), counted here without special tokens so that it
    holds for tokenizers that add none too; rank_llm uses it as both ``min_new_tokens`` and
    ``max_new_tokens`` of RankZephyr's generation.
    """
    return len(tokenizer.encode(" > ".join(f"[{i}]" for i in range(1, window + 1)), add_special_tokens=False))


def prompt_tokens(tokenizer, template: PromptTemplate, messages: Messages) -> int:
    """The prompt's length as rank_llm counts it: ``len(tokenizer.encode(rendered prompt))``."""
    text = render_fixed(template, messages)
    if text is None:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer.encode(text))


def fit_window(template: PromptTemplate, query: str, passages: list[str], max_words: float, *, tokenizer,
               context_size: int, output_tokens: int) -> tuple[Messages, int]:
    """The window's messages with a word budget small enough for the context: ``(messages, words per passage)``.

    rank_llm's ``create_prompt`` loop: while the prompt has more than ``context_size -
    output_tokens`` tokens, cut ``max(1, excess // (4 * passages))`` more words from every
    passage's budget. A prompt that does not fit even with no passage words is a ``ValueError``.
    """
    budget = context_size - output_tokens
    words = max_words
    while True:
        kept = max(0, int(words))
        messages = template.messages(query, passages, kept)
        n = prompt_tokens(tokenizer, template, messages)
        if n <= budget:
            return messages, kept
        if kept == 0:
            raise ValueError(f"the prompt for query {query!r} has {n} tokens with no passage text, more than the "
                             f"context of {context_size} minus {output_tokens} for the answer")
        words -= max(1, (n - budget) // (len(passages) * 4))


def get_template(prompt: str | PromptTemplate) -> PromptTemplate:
    """A template by name (``rankzephyr``, ``rankvicuna``, ``rankgpt``) or as it is."""
    if isinstance(prompt, PromptTemplate):
        return prompt
    try:
        return TEMPLATES[prompt.lower()]
    except KeyError:
        raise ValueError(f"unknown prompt {prompt!r}: use one of {sorted(TEMPLATES)}") from None
