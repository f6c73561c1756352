"""Rank-DistiLLM: distilling listwise LLM re-rankers into cross-encoders.

The package behind the executable book. One module per step of the story:
``data`` (TREC DL, runs, candidates), ``teacher`` (LLM re-ranking with sliding windows),
``sampling`` (training lists), ``losses`` and ``training`` (the student),
``evaluation`` and ``efficiency`` (what it is worth), ``profiles`` (smoke / cpu / gpu).
"""

__version__ = "0.1.0"
