"""The paper's protocol and this book's: what the paper does, what each profile does, and why.

:func:`protocol_table` reads the profiles (``gpu`` and ``cpu`` by default) and sets each point
of the protocol beside the paper's code, the source of every claim named by file and commit:

* webis-de/rank-distillm at 07105cf: ``configs/pre-finetune.yaml`` (stage 1),
  ``configs/finetune.yaml`` (stage 2), ``configs/re-rank.yaml`` and ``data/`` (evaluation),
  ``utils/subsample.py`` (the depth ablation);
* webis-de/lightning-ir: ``lightning_ir/cross_encoder/model.py`` and ``tokenizer/tokenizer.py``
  at f3c5c49 (May 2024: the head, the separate truncation), ``lightning_ir/data/dataset.py``
  (``RunDataset``, ``Sampler.single_relevant``) and
  ``lightning_ir/data/external_datasets/rank_distillm.py`` at 98cb3fd (the released files);
* castorini/rank_llm at fd40109 (April 2024): ``src/rank_llm/rerank/rank_listwise_os_llm.py``
  and ``rankllm.py`` (the prompt, the budgets, the parsing);
* sunnweiwei/RankGPT at 0d62bc3: ``specialization.py`` (RankGPT's distillation targets, ``1 / (i + 1)``).

Each row's ``paper`` dict names the profile fields that make the paper's setting; the ``gpu``
column says ``follows the paper`` only where the profile holds exactly those values
(:func:`follows_paper`), so the table cannot claim what the profile does not do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

PRE_FINETUNE = "configs/pre-finetune.yaml (webis-de/rank-distillm@07105cf)"
FINETUNE = "configs/finetune.yaml (webis-de/rank-distillm@07105cf)"
RE_RANK = "configs/re-rank.yaml, data/ (webis-de/rank-distillm@07105cf)"
SUBSAMPLE = "utils/subsample.py (webis-de/rank-distillm@07105cf)"
LIGHTNING_MODEL = "lightning_ir/cross_encoder/model.py, tokenizer/tokenizer.py (webis-de/lightning-ir@f3c5c49)"
LIGHTNING_LOSS = "lightning_ir/loss/pairwise.py, RankNet (webis-de/lightning-ir@19f46e3)"
RANK_LLM = "src/rank_llm/rerank/rank_listwise_os_llm.py, rankllm.py (castorini/rank_llm@fd40109)"
RANKGPT = "specialization.py (sunnweiwei/RankGPT@0d62bc3)"


@dataclass(frozen=True)
class Point:
    """One point of the protocol: the paper's setting as profile fields, and how a profile is described."""

    name: str
    paper_text: str
    source: str
    paper: dict = field(default_factory=dict)  # dotted profile field -> the paper's value
    describe: Callable[[dict], str] = lambda p: ""
    why: str = ""
    check: Callable[[], bool] | None = None  # for code every profile shares: does it behave as the paper's?


def _get(profile: dict, dotted: str):
    node = profile
    for key in dotted.split("."):
        node = node[key]
    return node


def _stage1(p: dict) -> str:
    s = p["training"]["stage1"]
    if s["source"] == "none" or not (s["max_steps"] or s["epochs"]):
        return "none"
    if s["source"] == "run":
        added = ", relevant passages the run missed added" if s["add_docs_not_in_ranking"] else ""
        return (f"{s['dataset']}: 1 judged >= {s['relevant_grade']} + {s['negatives']} of {s['run']} top-{s['depth']}"
                f"{added}, drawn anew at every access; {s['loss']}")
    return f"{s['source']} lists of the training year; {s['loss']}"


def _length(stage: dict) -> str:
    return f"{stage['max_steps']:,} steps" if stage["max_steps"] else f"{stage['epochs']} epochs"


def _steps(p: dict) -> str:
    t = p["training"]
    queries = t["queries_per_batch"] * t["gradient_accumulation_steps"]
    bf16 = {True: "bf16", False: "fp32", "auto": "bf16 where native"}[t["bf16"]]
    stage1 = f"stage 1 {_length(t['stage1'])}, " if _stage1(p) != "none" else ""
    return (f"{stage1}stage 2 {_length(t['stage2'])}; {queries} queries a step; lr {t['stage2']['lr']:g}, "
            f"{t['lr_scheduler']} after {t['warmup_ratio']:.0%} warm-up; {bf16}; {t['model']}")


def _stage2(p: dict) -> str:
    s = p["training"]["stage2"]
    source = s["released"] if s["source"] == "released" else "the training year's teacher run"
    size = "all" if s["per_list"] is None else s["per_list"]
    return f"{source}: {size} of the top-{s['depth']}, targets {s['labels']}; {s['loss']}"


def _selection(p: dict) -> str:
    t = p["training"]
    if t["selection"] == "last" or not t["heldout_queries"]:
        logged = f" (nDCG@10 of {t['heldout_queries']} TREC queries logged, choosing nothing)" if t["heldout_queries"] else ""
        return "the last checkpoint" + logged
    return f"the best epoch on {t['heldout_queries']} held-out training-year queries (nDCG@10)"


def _clipping(p: dict) -> str:
    norm = p["training"]["max_grad_norm"]
    return f"gradient norm clipped at {norm:g}" if norm else "no clipping"


def _log_base(p: dict) -> str:
    base = p["training"]["log_base"]
    return "natural log (lightning-ir's)" if base == "natural" else f"log base {base} (sentence-transformers')"


def _head(p: dict) -> str:
    t = p["training"]
    heads = {"linear": "one linear layer on [CLS]", "classifier": "the library's classification head (dense + linear)",
             "segment-cosine": "the backbone's own query/passage cosine"}
    split = f"; the first {t['separate_layers']} layers encode query and passage apart (PreTTR)" if t["separate_layers"] else ""
    return heads[t["head"]] + split


def _truncation(p: dict) -> str:
    t = p["training"]
    if t["query_length"] or t["passage_length"]:
        return f"query {t['query_length']} and passage {t['passage_length']} tokens, cut apart"
    return f"one joint budget of {t['max_length']} tokens, longest first"


def _prompt(p: dict) -> str:
    from .teacher.prompts import get_template

    t = p["teacher"]
    post = get_template(t["prompt"]).post("q", 20)
    return f"{t['prompt']}: ...{post[post.index('e.g.'):]}"


def _budgets(p: dict) -> str:
    t = p["teacher"]
    fit = f"words per passage shrink to fit {t['context_size']} tokens" if t["context_size"] else "no context check"
    return f"{fit}; max_new_tokens {t['max_new_tokens']}, min_new_tokens {t['min_new_tokens']}"


def _evaluation(p: dict) -> str:
    e, d = p["evaluation"], p["data"]
    years = sorted({year for runs in e["first_stages"].values() for year in runs})
    return f"{' and '.join(e['first_stages'])} top-{d['depth']} of {', '.join(years)}; baseline {e['baseline']}, Holm"


def _depth(p: dict) -> str:
    return {"first-stage": "the teacher's order of the first stage's top-k",
            "teacher": "the teacher's own top-k"}[p["training"]["stage2"]["cut"]]


def _reciprocal(p: dict) -> str:
    from .sampling import target

    return f"1/rank (rank 1 -> {target(1, 10, 'reciprocal'):g}, rank 2 -> {target(2, 10, 'reciprocal'):g})"


def _reciprocal_is_rankgpts() -> bool:
    from .sampling import target

    return all(target(i + 1, 20, "reciprocal") == 1 / (i + 1) for i in range(20))  # 1/(i+1), i 0-based


UNUSABLE = ("[²] > [①]", "I cannot rank these passages.", "")


def _parse_all() -> list:
    from .teacher.windows import parse_permutation

    return [parse_permutation(answer, 2)[0] for answer in UNUSABLE]


def _parses_unusable_answers() -> bool:
    try:
        return all(sorted(order) == [0, 1] for order in _parse_all())
    except Exception:  # noqa: BLE001  - any failure is the answer
        return False


def _parsing(p: dict) -> str:
    """What the parser does with unusable answers (unicode digits, prose, nothing): probed, not assumed."""
    try:
        orders = _parse_all()
    except Exception as error:  # noqa: BLE001  - any failure is the answer
        return f"an answer in unicode digits ('[²] > [①]') raises {type(error).__name__}"
    return "; ".join(f"{a!r} -> {[i + 1 for i in o]}" for a, o in zip(UNUSABLE, orders))


POINTS = [
    Point("stage 1: data and loss",
          "msmarco-passage/train/judged; 1 judged-relevant + 7 of the ColBERTv2 top-200 (single_relevant, "
          "add_docs_not_in_ranking), drawn anew at every access; InfoNCE", PRE_FINETUNE,
          {"training.stage1.source": "run", "training.stage1.run": "irds:msmarco-passage/train/rank-distillm-colbert",
           "training.stage1.dataset": "msmarco-passage/train/judged", "training.stage1.depth": 200,
           "training.stage1.negatives": 7, "training.stage1.relevant_grade": 1,
           "training.stage1.add_docs_not_in_ranking": True, "training.stage1.loss": "infonce"},
          _stage1, "no MS MARCO training collection offline; on 46 training queries stage 1 lowered the held-out score"),
    Point("training length and optimiser",
          "stage 1 20,000 steps, stage 2 3 epochs; 32 queries a step; AdamW lr 1e-5, no scheduler; bf16; ELECTRA-base",
          f"{PRE_FINETUNE}; {FINETUNE}",
          {"training.stage1.max_steps": 20000, "training.stage2.epochs": 3, "training.stage2.lr": 1e-5,
           "training.stage1.lr": 1e-5, "training.lr_scheduler": "constant", "training.warmup_ratio": 0.0,
           "training.bf16": True, "training.model": "google/electra-base-discriminator"},
          _steps, "two CPU cores: a 22M-parameter MiniLM that ships offline, tuned on held-out queries"),
    Point("stage 2: data and loss",
          "RankZephyr's ranking of the ColBERTv2 top-100 of 10,000 queries (rank-distillm-rankzephyr), all 100, "
          "targets depth - rank + 1; RankNet", FINETUNE,
          {"training.stage2.source": "released", "training.stage2.released": "irds:msmarco-passage/train/rank-distillm-rankzephyr",
           "training.stage2.depth": 100, "training.stage2.per_list": None, "training.stage2.labels": "rank",
           "training.stage2.loss": "ranknet"},
          _stage2, "offline: RankVicuna-7B's stored DL runs stand in for RankZephyr's labels"),
    Point("model selection", "none: the last checkpoint of each stage", f"{PRE_FINETUNE}; {FINETUNE}",
          {"training.selection": "last"},
          _selection, "the book's: a few epochs on few queries overfit, and held-out queries say when"),
    Point("gradient clipping", "none (Lightning's default)", f"{PRE_FINETUNE}; {FINETUNE}",
          {"training.max_grad_norm": None}, _clipping, "the book's: the transformers Trainer's default, kept"),
    Point("RankNet's log", "natural log: binary_cross_entropy_with_logits of s_pos - s_neg", LIGHTNING_LOSS,
          {"training.log_base": "natural"}, _log_base,
          "the book's: base 2, sentence-transformers' default (values and gradients 1.4427 x the paper's)"),
    Point("scoring head", "one linear layer on [CLS]", LIGHTNING_MODEL,
          {"training.head": "linear", "training.separate_layers": 0},
          _head, "the book's: a random head needs many queries; the cosine head starts as a ranker"),
    Point("truncation", "query 32 and passage 256 tokens, each cut on its own", LIGHTNING_MODEL,
          {"training.query_length": 32, "training.passage_length": 256},
          _truncation, "the book's: one shorter budget is cheaper on a CPU"),
    Point("teacher prompt", "rank_llm's 2024 wording: '... e.g., [2] > [1], Only respond with the ranking results, "
          "do not say any word or explain.'", RANK_LLM, {"teacher.prompt": "rankzephyr"}, _prompt,
          "the same prompt; the stored RankVicuna logs use RankVicuna's own (replayed, not generated)"),
    Point("teacher budgets", "300 words a passage, fewer until prompt and answer fit 4,096 tokens; "
          "max_new_tokens = min_new_tokens = the tokens of '[1] > ... > [20]' minus one", RANK_LLM,
          {"teacher.context_size": 4096, "teacher.max_new_tokens": "ranking", "teacher.min_new_tokens": "ranking",
           "teacher.max_words": 300},
          _budgets, "SmolLM2-135M on a CPU: short answers, capped, to show and time the live path"),
    Point("evaluation", "BM25 and ColBERTv2 top-100 of TREC DL 2019 and 2020; significance against the distilled model, Holm",
          RE_RANK, {"evaluation.first_stages": None}, _evaluation,
          "offline there is no ColBERTv2 run; the students train on one year and are tested on the other"),
    Point("depth ablation (top-k)", "the teacher's order of the first stage's top-k", SUBSAMPLE,
          {"training.stage2.cut": "first-stage"}, _depth, "the same rule"),
    Point("RankGPT's targets", "1/(i+1) for the 0-based position i, i.e. 1/rank", RANKGPT, {}, _reciprocal,
          "one function for every profile", _reciprocal_is_rankgpts),
    Point("unusable teacher answers", "unicode digits parsed; an unusable answer keeps the input order", RANK_LLM,
          {}, _parsing, "one parser for every profile", _parses_unusable_answers),
]


def follows_paper(point: Point, profile: dict) -> bool:
    """Whether ``profile`` holds the paper's value in every field of ``point``.

    ``evaluation.first_stages``: BM25 and ColBERTv2 for both years, tested against a student.
    """
    for dotted, value in point.paper.items():
        if dotted == "evaluation.first_stages":
            stages = _get(profile, dotted)
            students = {s["name"] for s in profile["training"]["students"]}
            if set(stages) != {"BM25", "ColBERTv2"} or any(set(v) != {"dl19", "dl20"} for v in stages.values()) \
                    or profile["evaluation"]["baseline"] not in students:
                return False
        elif _get(profile, dotted) != value:
            return False
    return True


def protocol_table(gpu: str | dict = "gpu", cpu: str | dict = "cpu"):
    """One row per point: the paper and its source, what ``gpu`` and ``cpu`` do, and why ``cpu`` differs.

    Profiles are names or loaded profiles. ``gpu follows the paper`` is checked field by field
    (:func:`follows_paper`); for code that every profile shares (RankGPT's targets, the parser)
    the code itself is probed.
    """
    import pandas as pd

    from .profiles import load_profile

    g = load_profile(gpu) if isinstance(gpu, str) else gpu
    c = load_profile(cpu) if isinstance(cpu, str) else cpu
    rows = []
    for point in POINTS:
        shared = point.check() if point.check else None
        rows.append({
            "point": point.name, "the paper": point.paper_text, "source": point.source,
            "gpu": point.describe(g), "gpu follows the paper": follows_paper(point, g) if point.paper else shared,
            "cpu": point.describe(c), "cpu follows the paper": follows_paper(point, c) if point.paper else shared,
            "why cpu differs (the book's options)": point.why,
        })
    return pd.DataFrame(rows).set_index("point")
