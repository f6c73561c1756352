"""Where the teacher follows rank_llm to the letter: passage repair before the cut, and the window loop."""

from __future__ import annotations

import pytest

from rank_distillm.teacher.prompts import get_template, passage_content
from rank_distillm.teacher.windows import window_schedule


def test_a_passage_is_repaired_before_it_is_cut_and_then_neutralised():
    broken = "one\u00e2\u20ac\u0192two three"  # mojibake of an em space: one word until repaired
    assert passage_content(broken, 1) == "one"  # rank_llm: fix_text, then the first max_words words
    assert passage_content("see ［３］ and [4]", None) == "see (3) and (4)"  # full width: repaired, then (n)
    prompt = get_template("rankzephyr").messages("q [1]", ["see ［３］", broken], max_words=1)[-1]["content"]
    assert "[1] see\n" in prompt and "[2] one\n" in prompt and "(3)" not in prompt  # cut to one word each
    full = get_template("rankzephyr").messages("q", ["see ［３］"], max_words=10)[-1]["content"]
    assert "[1] see (3)\n" in full and "［" not in full


def _rank_llm_windows(rank_end: int, window: int, step: int, rank_start: int = 0) -> list[tuple[int, int]]:
    """rank_llm's ``sliding_windows`` loop (src/rank_llm/rerank/rankllm.py), the windows it re-ranks."""
    out = []
    end_pos, start_pos = rank_end, rank_end - window
    while end_pos > rank_start and start_pos + step != rank_start:
        start_pos = max(start_pos, rank_start)
        out.append((start_pos, end_pos))
        end_pos -= step
        start_pos -= step
    return out


@pytest.mark.parametrize("depth", [2, 5, 10, 19, 20, 21, 25, 50, 95, 100])
@pytest.mark.parametrize("window,stride", [(20, 10), (20, 5), (4, 2), (5, 10), (3, 7), (20, 20), (10, 30)])
def test_the_schedule_is_rank_llms_loop_and_never_holds_an_empty_window(depth, window, stride):
    ours = window_schedule(depth, window, stride, depth)
    assert all(end > start for start, end in ours)
    if depth - window == -stride:  # rank_llm re-ranks nothing there; the schedule answers the one window
        assert _rank_llm_windows(depth, window, stride) == [] and ours == [(0, depth)]
    else:
        assert ours == _rank_llm_windows(depth, window, stride)
