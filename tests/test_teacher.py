"""The LLM teacher: window schedule, parsing and repair, prompts, replay, resume, backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from rank_distillm import data, evaluation
from rank_distillm.teacher import (
    RANKGPT,
    RANKVICUNA,
    RANKZEPHYR,
    ReplayBackend,
    Request,
    VLLMBackend,
    WindowLog,
    make_backend,
    parse_permutation,
    prompt_matches,
    read_log,
    render_fixed,
    sliding_window_rerank,
    was_repaired,
    window_schedule,
)
from rank_distillm.teacher.prompts import cut_words, neutralise_ids

from .conftest import DL20

LOG = "teacher-logs/trec-dl-2020/rankvicuna-7b.windows.dl20.jsonl"


@pytest.fixture(scope="module")
def log_path(data_dir):
    return data_dir / LOG


@pytest.fixture(scope="module")
def dl20_candidates(runs_dir):
    return data.load_candidates(DL20, runs_dir / "trec-dl-2020" / "bm25.run", depth=100)


# --------------------------------------------------------------------------- schedule


def test_schedule_paper_setting():
    assert window_schedule(100, 20, 10, 100) == [(80, 100), (70, 90), (60, 80), (50, 70), (40, 60),
                                                  (30, 50), (20, 40), (10, 30), (0, 20)]


def test_schedule_depth_not_a_multiple_of_the_stride():
    assert window_schedule(100, 20, 10, 95) == [(75, 95), (65, 85), (55, 75), (45, 65), (35, 55),
                                                 (25, 45), (15, 35), (5, 25), (0, 15)]
    assert window_schedule(100, 20, 10, 25) == [(5, 25), (0, 15)]


def test_schedule_short_lists_and_bad_settings():
    assert window_schedule(7, 20, 10, 100) == [(0, 7)]  # fewer candidates than the window
    assert window_schedule(30, 20, 10, 100) == [(10, 30), (0, 20)]
    assert window_schedule(1, 20, 10, 100) == []  # nothing to order
    with pytest.raises(ValueError, match="stride"):
        window_schedule(100, 20, 0, 100)


def test_schedule_matches_the_stored_log(log_path):
    """The RankVicuna log's start/end positions are exactly our schedule, per query."""
    by_query = {}
    for r in read_log(log_path):
        by_query.setdefault(r["qid"], []).append((r["start"], r["end"]))
    assert len(by_query) == 54
    assert all(w == window_schedule(100, 20, 10, 100) for w in by_query.values())


# --------------------------------------------------------------------------- parsing


def test_parse_clean_permutation():
    order, repair = parse_permutation("[2] > [3] > [1]", 3)
    assert order == [1, 2, 0]
    assert not was_repaired(repair)


@pytest.mark.parametrize(
    "response, order, repair",
    [
        # prose: every digit run counts, everything else is a separator
        ("The most relevant is passage 3, then [1].", [2, 0, 1], {"missing": [2]}),
        ("[2] > [2] > [1] > [3]", [1, 0, 2], {"duplicates": [2]}),
        ("[0] > [4] > [12] > [3] > [1]", [2, 0, 1], {"out_of_range": [0, 4, 12], "missing": [2]}),
        ("", [0, 1, 2], {"missing": [1, 2, 3], "no_ranking": True}),
        ("I cannot rank these passages.", [0, 1, 2], {"missing": [1, 2, 3], "no_ranking": True}),
        ("[3] > [1", [2, 0, 1], {"missing": [2]}),  # cut off by max_new_tokens
        ("[3] > [1] > [2]", [2, 0, 1], {}),
        # Unicode digits count as the digits they stand for (rank_llm's table): "1²" is 12
        ("[③] > [1] > [２]", [2, 0, 1], {"unicode_digits": 2}),
        ("[1²] > [3] > [¹]", [2, 0, 1], {"out_of_range": [12], "missing": [2], "unicode_digits": 2}),
        ("<think>[1] > [2] > [3]</think>[2] > [3] > [1]", [1, 2, 0], {}),  # a reasoning model's answer
        # not text at all (a hand-made or foreign log): the input order, said so
        (None, [0, 1, 2], {"missing": [1, 2, 3], "no_ranking": True, "not_text": "NoneType"}),
        (312, [0, 1, 2], {"missing": [1, 2, 3], "no_ranking": True, "not_text": "int"}),
    ],
)
def test_parse_repair(response, order, repair):
    got_order, got = parse_permutation(response, 3)
    assert got_order == order
    expected = {"duplicates": [], "out_of_range": [], "missing": [], "no_ranking": False,
                "unicode_digits": 0, "not_text": None, **repair}
    assert got == expected
    assert sorted(got_order) == [0, 1, 2]
    assert was_repaired(got) == bool(repair)


# --------------------------------------------------------------------------- prompts


def test_rankvicuna_prompts_reproduce_the_stored_ones(log_path, dl20_candidates):
    """Our RankVicuna template renders the logged prompts character for character.

    The exceptions are windows whose passages carry mojibake that the stored run saw raw
    while ``ir_datasets`` repairs it: there the texts differ before any prompt is built.
    """
    records = read_log(log_path)
    matches = prompt_matches(records, dl20_candidates, RANKVICUNA)
    assert len(matches) == len(records) == 486
    assert matches["same"].sum() == 479, f"{matches['same'].sum()} of {len(records)} prompts reproduced"
    differing = matches[~matches["same"]]
    assert not differing["ascii"].any(), f"windows with ASCII passages differ:\n{differing[differing['ascii']]}"
    # the first record by hand: the function renders what the template renders
    first = records[0]
    texts = {d: t for c in dl20_candidates for d, t in zip(c.docids, c.texts)}
    query = next(c.query for c in dl20_candidates if c.qid == first["qid"])
    by_hand = render_fixed(RANKVICUNA, RANKVICUNA.messages(query, [texts[d] for d in first["docids"]], max_words=300))
    assert bool(matches["same"].iloc[0]) == (by_hand == first["prompt"]) is True


def test_prompt_matches_needs_a_fixed_text_format(log_path, dl20_candidates):
    with pytest.raises(ValueError, match="chat template"):
        prompt_matches(read_log(log_path)[:1], dl20_candidates, RANKZEPHYR)


def test_passages_are_cut_and_ids_neutralised():
    passage = "See [3] and [12] for details. " + "word " * 400
    assert neutralise_ids(passage).startswith("See (3) and (12) for")
    assert len(cut_words(passage, 300).split()) == 300
    msgs = RANKZEPHYR.messages("what is [1]?", [passage, "short  one\n here"], max_words=10)
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert "[1] See (3) and (12) for details. word word word word\n" in user  # 10 words
    assert "[2] short one here\n" in user
    assert "search query: what is (1)?." in user
    assert user.endswith("do not say any word or explain.")
    assert render_fixed(RANKZEPHYR, msgs) is None  # rendered by the model's chat template


def test_rankgpt_is_multi_turn():
    msgs = RANKGPT.messages("q", ["a", "b"], max_words=300)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert msgs[3]["content"] == "[1] a" and msgs[6]["content"] == "Received passage [2]."


# --------------------------------------------------------------------------- replay


def test_replay_reproduces_rankvicuna_through_the_cli(tmp_path, data_dir, runs_dir):
    """The issue's acceptance test: the stored windows over BM25 give the stored run."""
    from rank_distillm.cli import main

    out = tmp_path / "replay.run"
    rc = main(["teach", "--backend", "replay", "--log", str(data_dir / LOG), "--prompt", "rankvicuna",
               "--dataset", DL20, "--candidates", str(runs_dir / "trec-dl-2020" / "bm25.run"), "--out", str(out)])
    assert rc == 0
    run, reference = data.read_run(out), data.read_run(runs_dir / "trec-dl-2020" / "rankvicuna-7b.run")
    assert set(run) == set(reference) and len(run) == 54
    assert all(run.ranking(q) == reference.ranking(q) for q in reference)
    assert evaluation.evaluate_run(run, DL20, ["nDCG@10"])["nDCG@10"] == pytest.approx(0.6611, abs=1e-4)


def test_replay_unknown_window_names_query_and_window(log_path, dl20_candidates):
    with pytest.raises(data.DataError, match=r"query \d+, window 0 .*positions 90-100"):
        sliding_window_rerank(dl20_candidates[:1], ReplayBackend(log_path), window=10, progress=False)


# --------------------------------------------------------------------------- resume


class Interrupting:
    """A backend that passes calls to another and raises after ``calls`` of them."""

    name = "interrupting"

    def __init__(self, backend, calls):
        self.backend, self.calls, self.seen = backend, calls, 0

    def generate(self, requests):
        if self.seen >= self.calls:
            raise KeyboardInterrupt
        self.seen += 1
        return self.backend.generate(requests)


def test_resume_after_interruption_gives_the_uninterrupted_run(tmp_path, log_path, dl20_candidates):
    cands = dl20_candidates[:4]
    settings = dict(prompt="rankvicuna", batch_size=3, progress=False)
    full = sliding_window_rerank(cands, ReplayBackend(log_path), **settings)
    log = tmp_path / "teacher.windows.jsonl"
    with pytest.raises(KeyboardInterrupt):
        sliding_window_rerank(cands, Interrupting(ReplayBackend(log_path), 5), log_path=log, **settings)
    logged = read_log(log)
    assert len(logged) == 5 * 3
    with open(log, "a") as f:  # what kill -9 leaves: half a line, no newline
        f.write('{"qid": "' + cands[0].qid + '", "window": 7, "start": 1')
    counter = Interrupting(ReplayBackend(log_path), 10**6)
    resumed = sliding_window_rerank(cands, counter, log_path=log, **settings)
    assert resumed.resumed == 15
    # 21 windows left: 4 calls for the three started queries together, then 9 for the fourth
    assert len(resumed.windows) == 36 and counter.seen == 4 + 9
    assert resumed.run == full.run and list(resumed.run) == list(full.run)
    assert len(read_log(log)) == 36 and log.read_text().endswith("\n")
    assert [w["response"] for w in resumed.windows] == [w["response"] for w in full.windows]


def test_resume_refuses_a_log_from_other_settings(tmp_path, log_path, dl20_candidates):
    log = tmp_path / "w.jsonl"
    sliding_window_rerank(dl20_candidates[:1], ReplayBackend(log_path), prompt="rankvicuna", log_path=log, progress=False)
    with pytest.raises(data.DataError, match=r"w.jsonl line 1: window 0 of query .* other passages"):
        sliding_window_rerank(dl20_candidates[:1], ReplayBackend(log_path), prompt="rankvicuna", depth=50,
                              log_path=log, progress=False)


class Named(ReplayBackend):
    """A replay backend that says it is a model (as a live backend does)."""

    def __init__(self, path, model_name):
        super().__init__(path)
        self.model_name = model_name


@pytest.mark.parametrize("change, differs", [
    ({"model": "other/model"}, r"model 'other/model'.*\(model differs\)"),
    ({"prompt": "rankzephyr"}, r"prompt template 'rankzephyr'.*\(template differs\)"),
    ({"max_words": 100}, r"100 words per passage.*\(max_words differs\)"),
    ({"model": "other/model", "max_words": 100}, r"\(model and max_words differ\)"),
])
def test_resume_refuses_a_log_written_by_another_teacher(tmp_path, log_path, dl20_candidates, change, differs):
    """Model, prompt template and word budget are recorded per window; a resume with others is refused."""
    log = tmp_path / "w.jsonl"
    first = dict(model="castorini/vicuna", prompt="rankvicuna", max_words=300)
    sliding_window_rerank(dl20_candidates[:1], Named(log_path, first["model"]), prompt=first["prompt"],
                          max_words=first["max_words"], log_path=log, progress=False)
    logged = read_log(log)
    assert {(w["model"], w["template"], w["max_words"]) for w in logged} == {("castorini/vicuna", "rankvicuna", 300)}
    before = log.read_bytes()
    again = {**first, **change}
    with pytest.raises(data.DataError, match=r"w.jsonl line 1: the log was written with model 'castorini/vicuna', "
                                             r"prompt template 'rankvicuna', 300 words per passage, this job uses .*"
                                             + differs):
        sliding_window_rerank(dl20_candidates[:1], Named(log_path, again["model"]), prompt=again["prompt"],
                              max_words=again["max_words"], log_path=log, progress=False)
    assert log.read_bytes() == before
    resumed = sliding_window_rerank(dl20_candidates[:1], Named(log_path, first["model"]), prompt=first["prompt"],
                                    max_words=first["max_words"], log_path=log, progress=False)
    assert resumed.resumed == len(logged) == 9


def test_a_broken_line_inside_the_log_is_an_error(tmp_path):
    log = tmp_path / "w.jsonl"
    good = json.dumps({"qid": "1", "window": 0, "docids": ["a", "b"], "response": "[2] > [1]"})
    log.write_text(good + "\n{not json\n" + good.replace('"window": 0', '"window": 1') + "\n")
    with pytest.raises(data.DataError, match="w.jsonl line 2: not valid JSON"):
        WindowLog(log)
    log.write_text(good + "\n" + json.dumps({"qid": "1", "window": 1}) + "\n")
    with pytest.raises(data.DataError, match=r"line 2: window record lacks field\(s\) \['docids', 'response'\]"):
        read_log(log)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from rank_distillm import data
    from rank_distillm.teacher import ReplayBackend, sliding_window_rerank

    class Slow(ReplayBackend):
        def generate(self, requests):
            time.sleep(0.15)
            return super().generate(requests)

    cands = data.load_candidates(data.DL20, sys.argv[1], depth=100, max_queries=3)
    sliding_window_rerank(cands, Slow(sys.argv[2]), prompt="rankvicuna", log_path=sys.argv[3], batch_size=1,
                          progress=False)
    """
)


def test_resume_after_kill_9(tmp_path, runs_dir, log_path, dl20_candidates):
    """A real process killed with SIGKILL mid-run; the restarted run equals an uninterrupted one."""
    log = tmp_path / "killed.windows.jsonl"
    script = tmp_path / "teach.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(runs_dir / "trec-dl-2020" / "bm25.run"),
                             str(log_path), str(log)], env=dict(os.environ))
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or log.read_text().count("\n") < 6):
        assert proc.poll() is None, "the teacher process ended before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(read_log(log))
    assert 6 <= done < 27
    cands = dl20_candidates[:3]
    resumed = sliding_window_rerank(cands, ReplayBackend(log_path), prompt="rankvicuna", log_path=log, progress=False)
    full = sliding_window_rerank(cands, ReplayBackend(log_path), prompt="rankvicuna", progress=False)
    assert resumed.resumed == done
    assert resumed.run == full.run
    assert len(read_log(log)) == 27


# --------------------------------------------------------------------------- backends


class FakeVLLM:
    """vLLM's ``LLM`` surface: ``generate(prompts, sampling_params)``, ``chat(conversations, sampling_params)``."""

    def __init__(self):
        self.calls = []

    def _out(self, prompt, n):
        return SimpleNamespace(prompt=prompt, prompt_token_ids=list(range(len(prompt.split()))),
                               outputs=[SimpleNamespace(text=" > ".join(f"[{i}]" for i in range(n, 0, -1)),
                                                        token_ids=list(range(3 * n)))])

    def generate(self, prompts, sampling_params):
        self.calls.append(("generate", len(prompts), sampling_params))
        return [self._out(p, p.count("\n[")) for p in prompts]

    def chat(self, conversations, sampling_params):
        self.calls.append(("chat", len(conversations), sampling_params))
        return [self._out("CHAT " + c[-1]["content"], c[-1]["content"].count("\n[")) for c in conversations]


def test_profile_job_measures_afresh_and_labels_resumably(tmp_path, monkeypatch, log_path, runs_dir, dl20_candidates):
    """The chapter's teacher job: a measurement (live_queries) starts afresh, a labelling job resumes."""
    from rank_distillm.profiles import load_profile
    from rank_distillm.teacher import profile_job

    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path))
    settings = {**load_profile("smoke")["teacher"], "prompt": "rankvicuna", "window": 20, "stride": 10, "depth": 100,
                "max_words": 300, "batch_size": 2, "backend": "replay", "model": "rankvicuna-7b", "live_queries": 2}
    stored = data.read_run(runs_dir / "trec-dl-2020" / "rankvicuna-7b.run")
    for _ in range(2):  # a measurement: the same two queries afresh each time, nothing resumed
        result, run_file = profile_job(settings, dl20_candidates, ReplayBackend(log_path), "smoke", progress=False)
        assert result.resumed == 0 and len(result.run) == 2 and len(result.windows) == 18
    assert run_file == tmp_path / "teacher" / "live-smoke.run"
    assert all(data.read_run(run_file).ranking(q) == stored.ranking(q) for q in result.run)
    labelling = {**settings, "live_queries": None}
    first, _ = profile_job(labelling, dl20_candidates[:3], ReplayBackend(log_path), "my/profile.yaml", progress=False)
    again, _ = profile_job(labelling, dl20_candidates[:3], ReplayBackend(log_path), "my/profile.yaml", progress=False)
    assert first.resumed == 0 and again.resumed == 27 and again.run == first.run


def test_vllm_backend_with_an_injected_engine(dl20_candidates):
    fake = FakeVLLM()
    backend = make_backend("vllm", llm=fake, max_new_tokens=50)
    cands = dl20_candidates[:3]
    result = sliding_window_rerank(cands, backend, window=5, stride=5, depth=10, batch_size=3, progress=False)
    assert [c[:2] for c in fake.calls] == [("chat", 3), ("chat", 3)]
    assert fake.calls[0][2].temperature == 0 and fake.calls[0][2].max_tokens == 50
    for c in cands:  # the fake reverses every window: 5-10, then 0-5 (they do not overlap)
        assert result.run.ranking(c.qid)[:10] == c.docids[:5][::-1] + c.docids[5:10][::-1]
    w = result.windows[0]
    assert w["generated_tokens"] == 15 and w["prompt_tokens"] == len(w["prompt"].split())
    assert not was_repaired(w["repair"]) and w["backend"] == "vllm"
    # fixed prompts (RankVicuna) go through generate() as text
    sliding_window_rerank(cands[:1], backend, prompt="rankvicuna", window=5, stride=5, depth=5, progress=False)
    assert fake.calls[-1][:2] == ("generate", 1)


def test_a_written_log_replays_to_the_same_run(tmp_path, dl20_candidates):
    """Round trip: the log a live backend writes answers the same run through ReplayBackend."""
    log = tmp_path / "fake.windows.jsonl"
    live = sliding_window_rerank(dl20_candidates[:2], VLLMBackend(llm=FakeVLLM()), window=6, stride=3, depth=12,
                                 log_path=log, progress=False)
    replayed = sliding_window_rerank(dl20_candidates[:2], ReplayBackend(log), window=6, stride=3, depth=12,
                                     progress=False)
    assert len(read_log(log)) == 2 * 3 and replayed.run == live.run
    assert live.run.ranking(dl20_candidates[0].qid) != dl20_candidates[0].docids


def test_vllm_missing_is_a_clear_error():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="vllm backend needs vLLM"):
            VLLMBackend("some/model")
    else:  # pragma: no cover - on a GPU machine with vLLM
        pytest.skip("vLLM is installed")


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        make_backend("nope")


@pytest.fixture(scope="module")
def smollm2():
    from rank_distillm import models

    return make_backend("transformers", model_name_or_path=models.SMOLLM2_GGUF, max_new_tokens=8, threads=1)


@pytest.mark.slow
def test_transformers_backend_answers_a_window_with_smollm2(smollm2, dl20_candidates):
    c = dl20_candidates[0]
    result = sliding_window_rerank([c], smollm2, window=3, stride=3, depth=3, max_words=12, progress=False)
    (w,) = result.windows
    assert w["prompt"].startswith("<|im_start|>system\nYou are RankLLM")  # SmolLM2's chat template
    assert w["prompt"].rstrip().endswith("<|im_start|>assistant")
    assert w["prompt_tokens"] == len(smollm2.tokenizer(w["prompt"], add_special_tokens=False)["input_ids"])
    assert 1 <= w["generated_tokens"] <= 8 and w["seconds"] > 0
    order, repair = parse_permutation(w["response"], 3)
    assert w["repair"] == repair
    assert result.run.ranking(c.qid)[:3] == [c.docids[i] for i in order]
    assert result.run.ranking(c.qid)[3:] == c.docids[3:]


@pytest.mark.slow
def test_transformers_batching_equals_one_at_a_time(smollm2, dl20_candidates):
    """Left-padded batches of windows from different queries answer as single windows do."""
    requests = []
    for c in dl20_candidates[1:3]:
        msgs = RANKZEPHYR.messages(c.query, c.texts[:2], max_words=8 if c is dl20_candidates[1] else 20)
        requests.append(Request(c.qid, 0, 0, 2, c.docids[:2], msgs))
    batched = smollm2.generate(requests)
    single = [smollm2.generate([r])[0] for r in requests]
    assert [a.response for a in batched] == [a.response for a in single]
    assert [a.prompt_tokens for a in batched] == [a.prompt_tokens for a in single]
    assert batched[0].prompt_tokens != batched[1].prompt_tokens  # the batch really was padded


# --------------------------------------------------------------------------- analysis


def test_rank_shifts_and_costs():
    from rank_distillm.teacher import query_costs, rank_shifts

    before = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    after = {"q": {"c": 3.0, "a": 2.0, "b": 1.0, "z": 0.0}}
    shifts = rank_shifts(before, after)
    assert shifts.set_index("docid")["moved_up"].to_dict() == {"c": 2, "a": -1, "b": -1}
    _, repair = parse_permutation("[2] > [1]", 3)
    windows = [{"qid": "q", "window": i, "prompt_tokens": 10 * (i + 1), "generated_tokens": 5, "seconds": 0.5,
                "repair": repair if i else parse_permutation("[1] > [2]", 2)[1]} for i in range(3)]
    row = query_costs(windows).loc["q"]
    assert (row.windows, row.prompt_tokens, row.generated_tokens, row.seconds, row.repaired) == (3, 60, 15, 1.5, 2)


def test_origin_shares_by_hand_and_on_the_stored_run(runs_dir):
    from rank_distillm.teacher import origin_shares, rank_shifts

    shares = origin_shares([1, 5, 10, 11, 20, 21, 100, 60], edges=(10, 20, 50, 100))
    assert shares.to_dict() == {"1-10": 3 / 8, "11-20": 2 / 8, "21-50": 1 / 8, "51-100": 2 / 8}
    with pytest.raises(ValueError, match="between 1 and 100"):
        origin_shares([0, 5])
    # RankVicuna-7B's top-10 on DL20: counted directly from the two runs
    bm25 = data.read_run(runs_dir / "trec-dl-2020" / "bm25.run")
    vicuna = data.read_run(runs_dir / "trec-dl-2020" / "rankvicuna-7b.run")
    shifts = rank_shifts(bm25, vicuna)
    before = [bm25.ranking(q).index(d) + 1 for q in vicuna for d in vicuna.ranking(q)[:10]]
    assert len(before) == 540
    top10 = origin_shares(shifts.query("rank_after <= 10")["rank_before"], edges=(10, 100))
    assert top10["1-10"] == pytest.approx(sum(r <= 10 for r in before) / 540)


def test_cli_errors_are_clear(tmp_path, runs_dir, capsys):
    from rank_distillm.cli import main

    common = ["teach", "--dataset", DL20, "--candidates", str(runs_dir / "trec-dl-2020" / "bm25.run"),
              "--out", str(tmp_path / "x.run")]
    assert main([*common, "--backend", "replay"]) == 2
    assert "--backend replay needs --log" in capsys.readouterr().err
    assert main([*common, "--backend", "replay", "--log", str(tmp_path / "none.jsonl")]) == 2
    assert "replay log not found" in capsys.readouterr().err
    assert main([*common, "--backend", "transformers"]) == 2
    assert "--backend transformers needs --model" in capsys.readouterr().err
    assert not (tmp_path / "x.run").exists()
