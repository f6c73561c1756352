"""Training: a cross-encoder student from a profile, with ``CrossEncoderTrainer``.

The recipe of the paper, in two stages, each one ``CrossEncoderTrainer`` run:

1. *stage 1* (optional) on human relevance labels: the paper's (``run``): 1 judged-relevant
   + 7 non-relevant passages of a first-stage run's top-200, drawn anew at every access
   (:mod:`rank_distillm.single_relevant`; ``configs/pre-finetune.yaml`` of
   webis-de/rank-distillm at 07105cf: ColBERTv2 over the judged MS MARCO training queries,
   InfoNCE, 20,000 steps of 32 queries); or the book's: the training year's BM25 lists with
   their graded qrels (``graded``), a fixed 1 + k draw from them (``relevance``), MS MARCO
   training triples (``triples``), or none;
2. *stage 2* on the teacher's lists (``teacher``: an LLM run over the first-stage
   candidates; ``released``: the Rank-DistiLLM parquet file) with the chosen listwise loss
   (``configs/finetune.yaml``: RankZephyr's top-100, RankNet, 3 epochs).

Which checkpoint is kept (``selection``): the paper keeps the ``last`` one. The book's
option ``heldout`` holds a few of the training year's queries out (``heldout_queries``):
after each epoch the student re-ranks their first-stage lists and the checkpoint with the
best nDCG@10 on them is kept; epoch 0, the model as it entered the stage, is a candidate too
(with no held-out query, the last one is kept). The test year is never looked at during training. Gradient
clipping (``max_grad_norm``) is the book's option too (Lightning, which the paper trains
with, does not clip by default).

Every stage writes ``CrossEncoderTrainer`` checkpoints and resumes from the last one
after an interruption; a finished stage leaves a ``final/`` folder and is skipped on a
rerun. ``metrics.json`` (written atomically) holds the loss curve, the held-out scores,
wall time and training pairs per second.

Several processes (``accelerate launch``, one per GPU): every process trains (the trainer
splits the batches), only the main one writes, moves or deletes files (the stage's
``final/``, ``metrics.json``, the student cache); the others wait for it at a barrier, and
all of them resume from the same checkpoint.

:func:`trained_students` trains each student of a profile once and caches it under
``$RANK_DISTILLM_CACHE/students/<hash of its config>`` (trained in a ``.partial`` folder,
renamed when done), so later chapters get exactly the same models without retraining.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import data, models, sampling
from .devices import default_device, use_bf16
from .errors import DataError, ProfileError
from .outputs import write_json
from .student import build_student, load_student

STAGE1_SOURCES = ("none", "run", "graded", "relevance", "triples")
STAGE2_SOURCES = ("teacher", "released")
SELECTIONS = ("last", "heldout")


@dataclass
class TrainResult:
    """A trained student: its folder (``CrossEncoder(model_path)``) and its metrics."""

    model_path: Path
    metrics: dict = field(default_factory=dict)


@dataclass
class Student:
    """A student of a profile: trained on ``train_year``, to be tested on ``test_year``."""

    name: str
    loss: str
    train_year: str
    test_year: str
    path: Path
    metrics: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- small helpers


def _state():
    """The processes of this run (``accelerate``'s ``PartialState``: one process without a launcher).

    Without a GPU, ``cpu=True``: only then does accelerate join the processes of a launcher
    (``torchrun``, ``accelerate launch --multi_gpu``) over gloo, as the trainer will.
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _stage_runs(stage: dict) -> bool:
    """Whether a stage trains at all: ``max_steps`` or ``epochs`` above 0."""
    return bool(stage.get("max_steps") or (stage.get("epochs") or 0) > 0)


def _check(section: dict, name: str, fields: tuple[str, ...]) -> None:
    missing = [f for f in fields if f not in section]
    if missing:
        raise ProfileError(f"training profile, {name}: missing field(s) {', '.join(missing)}")


def batch_arithmetic(cfg: dict) -> dict:
    """Queries and passages per optimizer step of stage 2, and passages per forward pass."""
    queries = int(cfg["queries_per_batch"]) * int(cfg["gradient_accumulation_steps"])
    per_list = cfg["stage2"]["per_list"] or cfg["stage2"]["depth"]
    return {
        "queries_per_step": queries,
        "passages_per_query": per_list,
        "pairs_per_step": queries * per_list,
        "pairs_per_forward": cfg["mini_batch_size"] if (cfg["mini_batch_size"] or 0) > 0 else int(cfg["queries_per_batch"]) * per_list,
    }


def split_heldout(qids: list[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    """``(train, heldout)``: ``n`` queries drawn (seeded) from the training year for model selection."""
    import random

    if n <= 0:
        return list(qids), []
    if n >= len(qids):
        raise ProfileError(f"heldout_queries ({n}) must be smaller than the training year's {len(qids)} queries")
    held = set(random.Random(seed).sample(sorted(qids), n))
    return [q for q in qids if q not in held], [q for q in qids if q in held]


# --------------------------------------------------------------------------- training data


def _candidates(profile: dict, year: str) -> list:
    d = profile["data"]
    if year not in d["datasets"]:
        raise ProfileError(f"training profile: year {year!r} is not in data.datasets ({', '.join(d['datasets'])})")
    data.setup_ir_datasets()
    cfg = profile["training"]
    return data.load_candidates(
        d["datasets"][year], data.resolve_path(d["first_stage"][year]) if not str(d["first_stage"][year]).startswith("irds:")
        else d["first_stage"][year], depth=d["depth"], max_queries=cfg["max_queries"],
    )


def list_options(cfg: dict) -> dict:
    """The stage-2 list options of the training profile ``cfg`` for :func:`rank_distillm.sampling.distillation_lists`."""
    s2 = cfg["stage2"]
    return dict(depth=s2["depth"], per_list=s2["per_list"], sampling=s2["sampling"], labels=s2["labels"],
                seed=cfg["seed"], cut=s2["cut"])


def training_lists(profile: dict, train_year: str) -> dict:
    """The stage-1 and stage-2 lists of ``train_year`` and its held-out candidates.

    ``{"stage1": Dataset | None, "stage2": Dataset, "heldout": [Candidates], "train_qids": [...]}``.
    The training year's first-stage candidates are loaded only when something needs them
    (held-out queries, a stage built from them); the paper's recipe (stage 1 from a run,
    stage 2 from the released file) needs them only for held-out queries, and ``train_qids`` are
    then the released file's queries.
    """
    cfg = profile["training"]
    s1, s2 = cfg["stage1"], cfg["stage2"]
    if s1["source"] not in STAGE1_SOURCES:
        raise ProfileError(f"training.stage1.source: unknown source {s1['source']!r} (use one of {', '.join(STAGE1_SOURCES)})")
    if s2["source"] not in STAGE2_SOURCES:
        raise ProfileError(f"training.stage2.source: unknown source {s2['source']!r} (use one of {', '.join(STAGE2_SOURCES)})")
    if cfg["selection"] not in SELECTIONS:
        raise ProfileError(f"training.selection: unknown selection {cfg['selection']!r} (use one of {', '.join(SELECTIONS)})")
    s1_runs = s1["source"] != "none" and _stage_runs(s1)
    needs_year = cfg["heldout_queries"] or s2["source"] == "teacher" or (s1_runs and s1["source"] in ("graded", "relevance"))
    cands = _candidates(profile, train_year) if needs_year else []
    train_qids, held_qids = split_heldout([c.qid for c in cands], cfg["heldout_queries"], cfg["seed"])
    train_c = [c for c in cands if c.qid in set(train_qids)]
    heldout = [c for c in cands if c.qid in set(held_qids)]

    stage1 = None
    if s1_runs and s1["source"] == "run":  # the paper's: 1 + 7 drawn anew from a first-stage run at every access
        from .single_relevant import single_relevant_lists

        stage1 = single_relevant_lists(
            s1["run"], s1["dataset"], depth=s1["depth"], negatives=s1["negatives"], relevant_grade=s1["relevant_grade"],
            add_docs_not_in_ranking=s1["add_docs_not_in_ranking"], docs_dataset_id=s1["docs"], seed=cfg["seed"],
        )
    elif s1_runs and s1["source"] == "graded":
        stage1 = sampling.graded_lists(profile["data"]["datasets"][train_year], train_c, per_list=s1["per_list"], seed=cfg["seed"])
    elif s1_runs and s1["source"] == "relevance":
        stage1 = sampling.relevance_lists(profile["data"]["datasets"][train_year], train_c, negatives=s1["negatives"], seed=cfg["seed"])
    elif s1_runs and s1["source"] == "triples":  # MS MARCO training triples: (query, positive, negative)
        stage1 = sampling.triples_lists(data.resolve_path(s1["triples"]))

    options = list_options(cfg)
    if s2["source"] == "teacher":
        spec = s2["teacher"].get(train_year)
        if spec is None:
            raise ProfileError(f"training.stage2.teacher: no teacher run for year {train_year!r}")
        stage2 = sampling.distillation_lists(data.resolve_path(spec), train_c, **options)
    else:
        stage2 = sampling.released_lists(s2["released"], s2["released_queries"], max_queries=s2["released_max_queries"],
                                         first_stage=s2["released_first_stage"], **options)
        train_qids = list(stage2["qid"])  # training queries are the released file's; the year's are only held out
    return {"stage1": stage1, "stage2": stage2, "heldout": heldout, "train_qids": train_qids}


# --------------------------------------------------------------------------- evaluation during training


def _heldout_evaluator(candidates: list, dataset_id: str, depth: int, batch_size: int, score=None):
    """A sentence-transformers evaluator: nDCG@10 of re-ranking held-out training-year lists.

    ``score(run) -> float`` replaces the mean nDCG@10 against ``dataset_id``'s qrels (e.g. queries of two years).
    """
    from sentence_transformers.evaluation import SentenceEvaluator

    from . import evaluation

    cut = [data.Candidates(c.qid, c.query, c.docids[:depth], c.texts[:depth], c.scores[:depth]) for c in candidates]

    class HeldoutNDCG(SentenceEvaluator):
        def __init__(self):
            super().__init__()
            self.name = "heldout"
            self.primary_metric = "ndcg@10"

        def __call__(self, model, output_path=None, epoch=-1, steps=-1) -> dict:
            run = evaluation.rerank(model, cut, batch_size=batch_size, show_progress_bar=False)
            value = score(run) if score else evaluation.evaluate_run(run, dataset_id, ["nDCG@10"])["nDCG@10"]
            return self.prefix_name_to_metrics({"ndcg@10": value}, self.name)

    return HeldoutNDCG()


# --------------------------------------------------------------------------- one stage


WEIGHT_DECAY = 0.01  # AdamW's (torch's default, as in the paper's lightning-ir set-up); off for biases and LayerNorm
HEAD = r"(^|\.)classifier\."  # the parameters of the library's classifier head (new, randomly initialised)


def head_learning_rate(model, lr: float, head_lr: float | None) -> dict:
    """``learning_rate_mapping`` of ``CrossEncoderTrainingArguments``: the classifier head's own rate.

    Empty when the stage has no other rate for it, or the model has no classifier head
    (``segment-cosine`` adds no parameter). The trainer builds the AdamW groups itself, with
    weight decay off for biases and LayerNorm weights.
    """
    import re

    if not head_lr or head_lr == lr or not any(re.search(HEAD, n) for n, _ in model.named_parameters()):
        return {}
    return {HEAD: head_lr}


def _last_checkpoint(folder: Path) -> str | None:
    ckpts = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    return str(ckpts[-1]) if ckpts else None


TRAIN_COLUMNS = ("query", "docs", "labels")


class _Columns:
    """A transform that keeps only ``columns`` of another transform's output (picklable)."""

    def __init__(self, transform, columns: tuple[str, ...]):
        self.transform, self.columns = transform, columns

    def __call__(self, batch: dict) -> dict:
        out = self.transform(batch)
        return {c: out[c] for c in self.columns}


def training_columns(dataset):
    """The dataset as the trainer reads it: ``query``, ``docs``, ``labels`` only.

    A dataset whose lists are drawn on access (a ``datasets`` transform, the paper's stage 1)
    keeps its transform, narrowed to those columns; any other column would reach the
    model as an input.
    """
    if "docs" in dataset.column_names:
        return dataset.select_columns(list(TRAIN_COLUMNS))
    transform = (dataset.format.get("format_kwargs") or {}).get("transform")
    if transform is None:
        raise DataError(f"training lists need columns {', '.join(TRAIN_COLUMNS)} (got {', '.join(dataset.column_names)})")
    return dataset.with_transform(_Columns(transform, TRAIN_COLUMNS))


def _pairs(ds) -> int:
    """Query-passage pairs in one pass over the lists (lists drawn on access all have the first one's size)."""
    if "docs" in ds.column_names:
        return sum(len(d) for d in ds["docs"])
    return len(ds[0]["docs"]) * len(ds) if len(ds) else 0


def stage_loss(loss_name: str, model, cfg: dict, stage: dict, implementation: str = "library"):
    """The stage's listwise loss module (:func:`rank_distillm.losses.make_loss`) with the profile's mini-batch size.

    ``cfg["mini_batch_size"]``: pairs per forward pass (0: the whole batch at once). A loss the library
    lacks (InfoNCE, ApproxNDCG) is the book's whatever ``implementation`` says.
    """
    from .losses import make_loss

    kwargs = dict(stage.get("loss_kwargs") or {})
    kwargs["log_base"] = cfg.get("log_base")  # RankNet's log: 2 the book's, natural the paper's
    if cfg["mini_batch_size"] is not None:
        kwargs["mini_batch_size"] = cfg["mini_batch_size"]
    try:
        return make_loss(loss_name, model, implementation=implementation, **kwargs)
    except ValueError:
        if implementation != "library":
            raise
        return make_loss(loss_name, model, implementation="book", **kwargs)


def trainer_arguments(cfg: dict, stage: dict, out_dir: Path, model, total_steps: int, evaluate: bool, checkpoints: bool):
    """``CrossEncoderTrainingArguments`` of a stage: the profile's batch, schedule, precision and selection."""
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    keep_best = evaluate and cfg["selection"] == "heldout" and checkpoints
    every = {"steps": cfg["save_steps"]} if cfg.get("save_steps") else {}
    bf16 = use_bf16(cfg["bf16"])
    return CrossEncoderTrainingArguments(
        output_dir=str(out_dir),
        num_train_epochs=stage["epochs"] or 1,
        max_steps=int(stage.get("max_steps") or 0) or -1,
        per_device_train_batch_size=cfg["queries_per_batch"],
        gradient_accumulation_steps=cfg["gradient_accumulation_steps"],
        learning_rate=stage["lr"],
        learning_rate_mapping=head_learning_rate(model, stage["lr"], stage["head_lr"]),
        weight_decay=WEIGHT_DECAY,
        warmup_steps=int(round(cfg["warmup_ratio"] * total_steps)),
        lr_scheduler_type=cfg["lr_scheduler"],
        max_grad_norm=cfg["max_grad_norm"] or 0.0,  # 0: no clipping
        bf16=bf16,  # on a CPU with AVX512-BF16/AMX too: autocast to bfloat16
        use_cpu=default_device() == "cpu" and bf16,
        seed=cfg["seed"],
        data_seed=cfg["seed"],
        logging_steps=max(1, min(cfg["logging_steps"], total_steps)),
        eval_strategy=("steps" if every else "epoch") if evaluate else "no",
        eval_steps=every.get("steps"),
        save_strategy=("steps" if every else "epoch") if checkpoints else "no",
        save_steps=every.get("steps", 500),
        save_total_limit=2,
        load_best_model_at_end=keep_best,
        metric_for_best_model="eval_heldout_ndcg@10" if keep_best else None,
        greater_is_better=True,
        dataloader_drop_last=False,
        # several processes: the listwise losses call the model once per mini_batch_size pairs before one
        # backward pass; DDP's search for unused parameters (on by default for a model that is not a
        # transformers PreTrainedModel) takes each call for an iteration and fails. Every parameter is used.
        ddp_find_unused_parameters=False,
        report_to="none",
        disable_tqdm=not cfg["progress_bar"],
    )


def quiet_logs(trainer):
    """``trainer`` without its printed log dicts (``{'loss': ..., 'epoch': ...}`` lines in a page's
    output); the progress bar stays, and every logged value is still in ``trainer.state.log_history``."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class QuietProgress(ProgressCallback):
        """transformers' progress bar without its ``on_log``, which writes each log dict below the bar."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(QuietProgress)
    trainer.pop_callback(PrinterCallback)
    return trainer


def train_stage(
    model,
    dataset,
    *,
    loss_name: str,
    stage: dict,
    cfg: dict,
    out_dir: Path,
    evaluator=None,
    resume: bool = True,
    implementation: str = "library",
    callbacks: list | None = None,
    checkpoints: bool = True,
) -> dict:
    """One ``CrossEncoderTrainer`` run; returns this stage's metrics. Resumes from ``out_dir``'s last checkpoint.

    ``stage["max_steps"]`` (optimizer steps; the paper's stage 1: 20,000) replaces
    ``stage["epochs"]`` when set. With an ``evaluator``, the held-out score is logged after
    every epoch (or every ``save_steps``); ``cfg["selection"] == "heldout"`` keeps the best
    checkpoint, ``"last"`` the last one. ``cfg["max_grad_norm"]``: null trains without clipping.
    ``checkpoints=False`` saves none (a short run that is cached whole, or a model that trains on
    stored passage states, :mod:`rank_distillm.passage_states`): nothing to resume from, and the
    held-out scores are logged but choose nothing (the last state is kept).
    """
    from sentence_transformers.cross_encoder import CrossEncoderTrainer

    from .throughput import StepTimer

    out_dir.mkdir(parents=True, exist_ok=True)
    train_ds = training_columns(dataset)
    loss = stage_loss(loss_name, model, cfg, stage, implementation)
    queries_per_step = cfg["queries_per_batch"] * cfg["gradient_accumulation_steps"] * _state().num_processes
    steps_per_epoch = math.ceil(len(train_ds) / queries_per_step)
    total_steps = int(stage.get("max_steps") or 0) or steps_per_epoch * stage["epochs"]
    args = trainer_arguments(cfg, stage, out_dir, model, total_steps, evaluator is not None, checkpoints)
    timer = StepTimer(_pairs(train_ds) / steps_per_epoch)  # the one throughput measurement (rank_distillm.throughput)
    trainer = quiet_logs(CrossEncoderTrainer(model=model, args=args, train_dataset=train_ds, loss=loss,
                                             evaluator=evaluator, callbacks=[*(callbacks or []), timer]))
    checkpoint = _last_checkpoint(out_dir) if resume and checkpoints else None
    # epoch 0 is a candidate too: the model as it enters the stage, scored before any step (a resumed run's
    # model is still that one here: the trainer loads the checkpoint inside train())
    start_score = start_state = None
    if args.load_best_model_at_end:
        start_score = float(evaluator(model)[evaluator.primary_metric])
        start_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    metrics = _stage_metrics(trainer, cfg, stage, loss_name, train_ds, timer, time.perf_counter() - start, checkpoint)
    if start_score is not None:
        metrics["heldout_ndcg10"].insert(0, {"step": 0, "epoch": 0.0, "ndcg@10": start_score})
        best = trainer.state.best_metric
        if best is None or start_score >= best:  # ties: the fewest epochs, as crossval.choose_epochs
            model.load_state_dict(start_state)
            metrics["best_checkpoint"] = "epoch 0 (the model before this stage)"
    metrics["chosen_epoch"] = _chosen_epoch(metrics)
    return metrics


def _chosen_epoch(metrics: dict) -> float | None:
    """The epoch whose held-out score the stage kept (``selection: heldout``); ``None`` when it kept the last."""
    if not metrics["best_checkpoint"]:
        return None
    scores = metrics["heldout_ndcg10"]
    if metrics["best_checkpoint"].startswith("epoch 0"):
        return 0.0
    step = int(str(metrics["best_checkpoint"]).rstrip("/").rsplit("-", 1)[-1])
    return next((h["epoch"] for h in scores if h["step"] == step), None)


def _stage_metrics(trainer, cfg: dict, stage: dict, loss_name: str, train_ds, timer, wall: float, checkpoint) -> dict:
    history = trainer.state.log_history
    return {
        "loss": loss_name,
        "lists": len(train_ds),
        "pairs_per_epoch": _pairs(train_ds),
        "epochs": stage["epochs"],
        "max_steps": int(stage.get("max_steps") or 0) or None,
        "processes": _state().num_processes,
        "steps": trainer.state.global_step,
        "resumed_from": checkpoint,
        "wall_s": round(wall, 1),
        "pairs_per_s": round(timer.pairs_per_s, 2) if timer.pairs_per_s else None,  # optimizer steps only
        "train_loss": [{"step": h["step"], "epoch": h.get("epoch"), "loss": h["loss"]} for h in history if "loss" in h],
        "heldout_ndcg10": [
            {"step": h["step"], "epoch": h.get("epoch"), "ndcg@10": h["eval_heldout_ndcg@10"]}
            for h in history if "eval_heldout_ndcg@10" in h
        ],
        "selection": cfg["selection"],
        "best_checkpoint": trainer.state.best_model_checkpoint if trainer.args.load_best_model_at_end else None,
    }


# --------------------------------------------------------------------------- a whole student


def new_model(cfg: dict, path: str | None = None):
    """The student ``CrossEncoder``: the profile's backbone with its ``head``, or a saved student; seeded."""
    import transformers

    transformers.set_seed(cfg["seed"])
    if path:
        return load_student(path, max_length=cfg["max_length"])
    return build_student(
        models.resolve_model(cfg["model"]), head=cfg["head"], max_length=cfg["max_length"], separate_layers=cfg.get("separate_layers") or 0,
        query_length=cfg["query_length"], passage_length=cfg["passage_length"],
    )


def train_student(
    profile: dict,
    *,
    loss: str | None = None,
    train_year: str | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    lists: dict | None = None,
    callbacks: list | None = None,
) -> TrainResult:
    """Train one student as ``profile["training"]`` says; the model ends in ``out_dir/final``.

    ``loss`` and ``train_year`` default to the profile's first student; ``lists`` replaces
    :func:`training_lists` (e.g. a saved dataset); ``callbacks`` go to the trainer. Stage folders
    (``stage1/``, ``stage2/``) hold the trainer's checkpoints; an interrupted call resumes
    where it stopped (``resume=True``), a finished stage is not trained again.
    """
    cfg = profile["training"]
    first = cfg["students"][0]
    loss = loss or first["loss"]
    train_year = train_year or first["train_year"]
    out = Path(out_dir) if out_dir else data.cache_dir() / "runs-training" / f"{train_year}-{loss}"
    state = _state()
    out.mkdir(parents=True, exist_ok=True)
    if not resume and state.is_main_process:
        for sub in ("stage1", "stage2", "final"):
            shutil.rmtree(out / sub, ignore_errors=True)
    state.wait_for_everyone()
    final = out / "final"
    metrics_path = out / "metrics.json"
    if resume and final.is_dir() and metrics_path.is_file():
        return TrainResult(final, json.loads(metrics_path.read_text()))

    start = time.perf_counter()
    with state.main_process_first():  # the main process fills caches (ir_datasets, docs store index, random models) first
        lists = lists or training_lists(profile, train_year)
    dataset_id = profile["data"]["datasets"][train_year]
    evaluator = (
        _heldout_evaluator(lists["heldout"], dataset_id, cfg["eval_depth"], cfg["eval_batch_size"]) if lists["heldout"] else None
    )
    metrics: dict = {
        "train_year": train_year, "loss": loss, "model": cfg["model"], "max_length": cfg["max_length"], "seed": cfg["seed"],
        "train_queries": len(lists["train_qids"]), "heldout_qids": [c.qid for c in lists["heldout"]],
        "selection": cfg["selection"], "batch": batch_arithmetic(cfg), "processes": state.num_processes, "stages": {},
    }
    path = None
    for stage_name, ds, loss_name in (("stage1", lists["stage1"], cfg["stage1"]["loss"]), ("stage2", lists["stage2"], loss)):
        stage = cfg[stage_name]
        done = out / stage_name / "final"
        if ds is None or not _stage_runs(stage):
            continue
        if resume and done.is_dir() and (out / stage_name / "metrics.json").is_file():
            path = str(done)
            metrics["stages"][stage_name] = json.loads((out / stage_name / "metrics.json").read_text())
            continue
        with state.main_process_first():
            model = new_model(cfg, path)
        m = train_stage(
            model, ds, loss_name=loss_name, stage=stage, cfg=cfg, out_dir=out / stage_name, evaluator=evaluator,
            resume=resume, implementation=cfg["implementation"], callbacks=callbacks,
        )
        if state.is_main_process:  # one writer; the others wait below
            tmp = out / stage_name / "final.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(str(tmp))
            shutil.rmtree(done, ignore_errors=True)
            os.replace(tmp, done)
            write_json(out / stage_name / "metrics.json", m)
        state.wait_for_everyone()
        metrics["stages"][stage_name] = m
        path = str(done)
    if path is None:
        raise ProfileError("training profile: neither stage has lists and epochs or max_steps > 0, nothing to train")
    metrics["wall_s"] = round(time.perf_counter() - start, 1)
    stages = metrics["stages"].values()
    metrics["train_wall_s"] = round(sum(s["wall_s"] for s in stages), 1)
    rates = [s["pairs_per_s"] for s in stages if s.get("pairs_per_s")]
    metrics["pairs_per_s"] = round(sum(rates) / len(rates), 2) if rates else None
    if state.is_main_process:
        tmp = out / "final.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(path, tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_json(metrics_path, metrics)
    state.wait_for_everyone()
    return TrainResult(final, metrics)


# --------------------------------------------------------------------------- the profile's students


def _config_hash(profile: dict, student: dict) -> str:
    cfg = {k: v for k, v in profile["training"].items() if k not in ("students", "progress_bar", "eval_batch_size", "student_workers")}
    if cfg.get("log_base") == 2:  # the behaviour from before the field existed: the same key, the same cached students
        cfg.pop("log_base")
    d = profile["data"]
    key = {"training": cfg, "student": student, "data": {"datasets": d["datasets"], "first_stage": d["first_stage"], "depth": d["depth"]}}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def student_dir(profile: dict, student: dict) -> Path:
    """Where a student of ``profile`` is cached: ``$RANK_DISTILLM_CACHE/students/<hash>``."""
    if profile["training"]["selection"] == "heldout":  # epoch 0 became a candidate: students chosen before it are stale
        student = {**student, "selection_candidates": "epoch 0 and every epoch"}
    return data.cache_dir() / "students" / _config_hash(profile, student)


def _train_cached(profile: dict, s: dict, threads: int | None = None) -> None:
    """Train student ``s`` into ``<hash>.partial`` (resuming), then rename it to ``<hash>``."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    folder = student_dir(profile, s)
    partial = folder.with_name(folder.name + ".partial")
    train_student(profile, loss=s["loss"], train_year=s["train_year"], out_dir=partial, resume=True)
    state = _state()
    if state.is_main_process:
        write_json(partial / "student.json", s)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    state.wait_for_everyone()


def trained_students(profile: dict, *, train: bool = True, workers: int | None = None) -> list[Student]:
    """Every student of ``profile["training"]["students"]``, trained once and cached.

    A student is trained in ``<hash>.partial`` (which resumes after an interruption) and
    renamed to ``<hash>`` when done; later calls load it. ``train=False`` raises
    ``FileNotFoundError`` for a student that is not cached yet instead of training it.

    ``workers`` (default: the profile's ``student_workers``) trains that many students at once,
    each in its own process with ``cpu_count // workers`` torch threads. On a CPU, small
    models use threads poorly: two one-thread processes on two cores train about twice as
    many pairs per second as one two-thread process. On a GPU keep 1.
    """
    specs = profile["training"]["students"]
    for i, s in enumerate(specs):
        _check(s, f"students[{i}]", ("name", "loss", "train_year", "test_year"))
    missing = [s for s in specs if not (student_dir(profile, s) / "final").is_dir()]
    if missing and not train:
        s = missing[0]
        raise FileNotFoundError(
            f"student {s['name']!r} is not trained yet ({student_dir(profile, s)}); run the training chapter or `rank-distillm train`"
        )
    workers = min(int(workers or profile["training"].get("student_workers") or 1), len(missing) or 1)
    if workers <= 1:
        for s in missing:
            _train_cached(profile, s)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from tqdm.auto import tqdm

        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [pool.submit(_train_cached, profile, s, threads) for s in missing]
            for job in tqdm(jobs, desc=f"students ({workers} processes x {threads} threads)", unit="student"):
                job.result()
    out = []
    for s in specs:
        folder = student_dir(profile, s)
        metrics = json.loads((folder / "metrics.json").read_text())
        out.append(Student(s["name"], s["loss"], s["train_year"], s["test_year"], folder / "final", metrics))
    return out
