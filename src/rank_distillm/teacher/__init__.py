"""The LLM teacher: listwise re-ranking with sliding windows, resumable, with replay.

``sliding_window_rerank(candidates, backend, prompt="rankzephyr", window=20, stride=10,
depth=100, log_path=...)`` re-ranks first-stage candidates window by window from the bottom
up, as RankZephyr does; backends (``transformers``, ``vllm``, ``replay``) share one
interface; every finished window is appended to a JSONL log so that a run can resume.
"""

from .backends import (
    Answer,
    Backend,
    ReplayBackend,
    Request,
    TransformersBackend,
    VLLMBackend,
    live_backend,
    make_backend,
)
from .analysis import origin_shares, prompt_matches, query_costs, rank_shifts, window_costs
from .cli import profile_backend, profile_candidates, profile_job
from .log import WindowLog, read_log, read_windows
from .prompts import RANKGPT, RANKVICUNA, RANKZEPHYR, TEMPLATES, PromptTemplate, get_template, render_fixed
from .windows import (
    TeacherResult,
    parse_permutation,
    repair_counts,
    sliding_window_rerank,
    was_repaired,
    window_schedule,
    windows_per_query,
)

__all__ = [
    "Answer", "Backend", "ReplayBackend", "Request", "TransformersBackend", "VLLMBackend", "live_backend", "make_backend",
    "profile_backend", "profile_candidates", "profile_job",
    "origin_shares", "prompt_matches", "query_costs", "rank_shifts", "window_costs",
    "WindowLog", "read_log", "read_windows",
    "RANKGPT", "RANKVICUNA", "RANKZEPHYR", "TEMPLATES", "PromptTemplate", "get_template", "render_fixed",
    "TeacherResult", "parse_permutation", "repair_counts", "sliding_window_rerank", "was_repaired", "window_schedule", "windows_per_query",
]
