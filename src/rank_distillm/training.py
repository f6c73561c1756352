"""Training: a cross-encoder student from a profile, with ``CrossEncoderTrainer``.

The recipe of the paper, in two stages, each one ``CrossEncoderTrainer`` run:

1. *stage 1* (optional) on human relevance labels of the training year: the BM25 lists with
   their graded qrels (``graded``), 1 relevant + k non-relevant lists (``relevance``, the
   paper's InfoNCE stage), or none;
2. *stage 2* on the teacher's lists (``teacher``: an LLM run over the first-stage
   candidates; ``released``: the Rank-DistiLLM parquet file) with the chosen listwise loss.

A few of the training year's queries are held out (``heldout_queries``): after each epoch
the student re-ranks their first-stage lists and the checkpoint with the best nDCG@10 on
them is kept. The test year is never looked at during training.

Every stage writes ``CrossEncoderTrainer`` checkpoints and resumes from the last one
after an interruption; a finished stage leaves a ``final/`` folder and is skipped on a
rerun. ``metrics.json`` (written atomically) holds the loss curve, the held-out scores,
wall time and training pairs per second.

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
from .outputs import write_json
from .student import build_student, load_student

STAGE1_SOURCES = ("none", "graded", "relevance", "triples")
STAGE2_SOURCES = ("teacher", "released")


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


def _check(section: dict, name: str, fields: tuple[str, ...]) -> None:
    missing = [f for f in fields if f not in section]
    if missing:
        raise KeyError(f"training profile, {name}: missing field(s) {', '.join(missing)}")


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
        raise ValueError(f"heldout_queries ({n}) must be smaller than the training year's {len(qids)} queries")
    held = set(random.Random(seed).sample(sorted(qids), n))
    return [q for q in qids if q not in held], [q for q in qids if q in held]


# --------------------------------------------------------------------------- training data


def _candidates(profile: dict, year: str) -> list:
    d = profile["data"]
    if year not in d["datasets"]:
        raise KeyError(f"training profile: year {year!r} is not in data.datasets ({', '.join(d['datasets'])})")
    data.setup_ir_datasets()
    cfg = profile["training"]
    return data.load_candidates(
        d["datasets"][year], data.resolve_path(d["first_stage"][year]) if not str(d["first_stage"][year]).startswith("irds:")
        else d["first_stage"][year], depth=d["depth"], max_queries=cfg["max_queries"],
    )


def training_lists(profile: dict, train_year: str) -> dict:
    """The stage-1 and stage-2 lists of ``train_year`` and its held-out candidates.

    ``{"stage1": Dataset | None, "stage2": Dataset, "heldout": [Candidates], "train_qids": [...]}``.
    """
    cfg = profile["training"]
    dataset_id = profile["data"]["datasets"][train_year]
    cands = _candidates(profile, train_year)
    train_qids, held_qids = split_heldout([c.qid for c in cands], cfg["heldout_queries"], cfg["seed"])
    train_c = [c for c in cands if c.qid in set(train_qids)]
    heldout = [c for c in cands if c.qid in set(held_qids)]

    s1 = cfg["stage1"]
    if s1["source"] not in STAGE1_SOURCES:
        raise ValueError(f"training.stage1.source: unknown source {s1['source']!r} (use one of {', '.join(STAGE1_SOURCES)})")
    stage1 = None
    if s1["source"] == "graded" and s1["epochs"] > 0:
        stage1 = sampling.graded_lists(dataset_id, train_c, per_list=s1["per_list"], seed=cfg["seed"])
    elif s1["source"] == "relevance" and s1["epochs"] > 0:
        stage1 = sampling.relevance_lists(dataset_id, train_c, negatives=s1["negatives"], seed=cfg["seed"])
    elif s1["source"] == "triples" and s1["epochs"] > 0:  # MS MARCO training triples: (query, positive, negative)
        stage1 = sampling.triples_lists(data.resolve_path(s1["triples"]))

    s2 = cfg["stage2"]
    if s2["source"] not in STAGE2_SOURCES:
        raise ValueError(f"training.stage2.source: unknown source {s2['source']!r} (use one of {', '.join(STAGE2_SOURCES)})")
    if s2["source"] == "teacher":
        spec = s2["teacher"].get(train_year)
        if spec is None:
            raise KeyError(f"training.stage2.teacher: no teacher run for year {train_year!r}")
        stage2 = sampling.distillation_lists(
            data.resolve_path(spec), train_c, depth=s2["depth"], per_list=s2["per_list"],
            sampling=s2["sampling"], labels=s2["labels"], seed=cfg["seed"],
        )
    else:
        stage2 = sampling.released_lists(
            s2["released"], s2["released_queries"], max_queries=s2["released_max_queries"], depth=s2["depth"],
            per_list=s2["per_list"], sampling=s2["sampling"], labels=s2["labels"], seed=cfg["seed"],
        )
    return {"stage1": stage1, "stage2": stage2, "heldout": heldout, "train_qids": train_qids}


# --------------------------------------------------------------------------- evaluation during training


def _heldout_evaluator(candidates: list, dataset_id: str, depth: int, batch_size: int):
    """A sentence-transformers evaluator: nDCG@10 of re-ranking held-out training-year lists."""
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
            score = evaluation.evaluate_run(run, dataset_id, ["nDCG@10"])["nDCG@10"]
            return self.prefix_name_to_metrics({"ndcg@10": score}, self.name)

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


def _pairs(ds) -> int:
    return sum(len(d) for d in ds["docs"])


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
) -> dict:
    """One ``CrossEncoderTrainer`` run; returns this stage's metrics. Resumes from ``out_dir``'s last checkpoint."""
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    from .losses import make_loss
    from .throughput import StepTimer

    out_dir.mkdir(parents=True, exist_ok=True)
    train_ds = dataset.select_columns(["query", "docs", "labels"])
    loss_kwargs = dict(stage.get("loss_kwargs") or {})
    if cfg["mini_batch_size"] is not None:  # pairs per forward pass; 0: the whole batch at once
        loss_kwargs["mini_batch_size"] = cfg["mini_batch_size"]
    try:
        loss = make_loss(loss_name, model, implementation=implementation, **loss_kwargs)
    except ValueError:
        if implementation != "library":
            raise
        loss = make_loss(loss_name, model, implementation="book", **loss_kwargs)  # e.g. infonce: book only
    steps_per_epoch = math.ceil(len(train_ds) / (cfg["queries_per_batch"] * cfg["gradient_accumulation_steps"]))
    total_steps = steps_per_epoch * stage["epochs"]
    use_eval = evaluator is not None
    on_cpu = default_device() == "cpu"
    bf16 = use_bf16(cfg["bf16"])
    args = CrossEncoderTrainingArguments(
        output_dir=str(out_dir),
        num_train_epochs=stage["epochs"],
        per_device_train_batch_size=cfg["queries_per_batch"],
        gradient_accumulation_steps=cfg["gradient_accumulation_steps"],
        learning_rate=stage["lr"],
        learning_rate_mapping=head_learning_rate(model, stage["lr"], stage["head_lr"]),
        weight_decay=WEIGHT_DECAY,
        warmup_steps=int(round(cfg["warmup_ratio"] * total_steps)),
        lr_scheduler_type=cfg["lr_scheduler"],
        bf16=bf16,  # on a CPU with AVX512-BF16/AMX too: autocast to bfloat16
        use_cpu=on_cpu and bf16,
        seed=cfg["seed"],
        data_seed=cfg["seed"],
        logging_steps=max(1, min(cfg["logging_steps"], total_steps)),
        eval_strategy="epoch" if use_eval else "no",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=use_eval,
        metric_for_best_model="eval_heldout_ndcg@10" if use_eval else None,
        greater_is_better=True,
        dataloader_drop_last=False,
        report_to="none",
        disable_tqdm=not cfg["progress_bar"],
    )
    timer = StepTimer(_pairs(train_ds) / steps_per_epoch)  # the one throughput measurement (rank_distillm.throughput)
    trainer = CrossEncoderTrainer(
        model=model, args=args, train_dataset=train_ds, loss=loss, evaluator=evaluator,
        callbacks=[*(callbacks or []), timer],
    )
    checkpoint = _last_checkpoint(out_dir) if resume else None
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    wall = time.perf_counter() - start
    history = trainer.state.log_history
    return {
        "loss": loss_name,
        "lists": len(train_ds),
        "pairs_per_epoch": _pairs(train_ds),
        "epochs": stage["epochs"],
        "steps": trainer.state.global_step,
        "resumed_from": checkpoint,
        "wall_s": round(wall, 1),
        "pairs_per_s": round(timer.pairs_per_s, 2) if timer.pairs_per_s else None,  # optimizer steps only
        "train_loss": [{"step": h["step"], "epoch": h.get("epoch"), "loss": h["loss"]} for h in history if "loss" in h],
        "heldout_ndcg10": [
            {"step": h["step"], "epoch": h.get("epoch"), "ndcg@10": h["eval_heldout_ndcg@10"]}
            for h in history if "eval_heldout_ndcg@10" in h
        ],
        "best_checkpoint": trainer.state.best_model_checkpoint,
    }


# --------------------------------------------------------------------------- a whole student


def new_model(cfg: dict, path: str | None = None):
    """The student ``CrossEncoder``: the profile's backbone with its ``head``, or a saved student; seeded."""
    import transformers

    transformers.set_seed(cfg["seed"])
    if path:
        return load_student(path, max_length=cfg["max_length"])
    return build_student(
        models.resolve_model(cfg["model"]), head=cfg["head"], max_length=cfg["max_length"], separate_layers=cfg.get("separate_layers") or 0
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
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        for sub in ("stage1", "stage2", "final"):
            shutil.rmtree(out / sub, ignore_errors=True)
    final = out / "final"
    metrics_path = out / "metrics.json"
    if resume and final.is_dir() and metrics_path.is_file():
        return TrainResult(final, json.loads(metrics_path.read_text()))

    start = time.perf_counter()
    lists = lists or training_lists(profile, train_year)
    dataset_id = profile["data"]["datasets"][train_year]
    evaluator = (
        _heldout_evaluator(lists["heldout"], dataset_id, cfg["eval_depth"], cfg["eval_batch_size"]) if lists["heldout"] else None
    )
    metrics: dict = {
        "train_year": train_year, "loss": loss, "model": cfg["model"], "max_length": cfg["max_length"], "seed": cfg["seed"],
        "train_queries": len(lists["train_qids"]), "heldout_qids": [c.qid for c in lists["heldout"]],
        "batch": batch_arithmetic(cfg), "stages": {},
    }
    path = None
    for stage_name, ds, loss_name in (("stage1", lists["stage1"], cfg["stage1"]["loss"]), ("stage2", lists["stage2"], loss)):
        stage = cfg[stage_name]
        done = out / stage_name / "final"
        if ds is None or stage["epochs"] <= 0:
            continue
        if resume and done.is_dir() and (out / stage_name / "metrics.json").is_file():
            path = str(done)
            metrics["stages"][stage_name] = json.loads((out / stage_name / "metrics.json").read_text())
            continue
        model = new_model(cfg, path)
        m = train_stage(
            model, ds, loss_name=loss_name, stage=stage, cfg=cfg, out_dir=out / stage_name, evaluator=evaluator,
            resume=resume, implementation=cfg["implementation"], callbacks=callbacks,
        )
        tmp = out / stage_name / "final.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        shutil.rmtree(done, ignore_errors=True)
        os.replace(tmp, done)
        write_json(out / stage_name / "metrics.json", m)
        metrics["stages"][stage_name] = m
        path = str(done)
    if path is None:
        raise ValueError("training profile: neither stage has lists and epochs > 0, nothing to train")
    tmp = out / "final.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(path, tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    metrics["wall_s"] = round(time.perf_counter() - start, 1)
    stages = metrics["stages"].values()
    metrics["train_wall_s"] = round(sum(s["wall_s"] for s in stages), 1)
    rates = [s["pairs_per_s"] for s in stages if s.get("pairs_per_s")]
    metrics["pairs_per_s"] = round(sum(rates) / len(rates), 2) if rates else None
    write_json(metrics_path, metrics)
    return TrainResult(final, metrics)


# --------------------------------------------------------------------------- the profile's students


def _config_hash(profile: dict, student: dict) -> str:
    cfg = {k: v for k, v in profile["training"].items() if k not in ("students", "progress_bar", "eval_batch_size", "student_workers")}
    d = profile["data"]
    key = {"training": cfg, "student": student, "data": {"datasets": d["datasets"], "first_stage": d["first_stage"], "depth": d["depth"]}}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def student_dir(profile: dict, student: dict) -> Path:
    """Where a student of ``profile`` is cached: ``$RANK_DISTILLM_CACHE/students/<hash>``."""
    return data.cache_dir() / "students" / _config_hash(profile, student)


def _train_cached(profile: dict, s: dict, threads: int | None = None) -> None:
    """Train student ``s`` into ``<hash>.partial`` (resuming), then rename it to ``<hash>``."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    folder = student_dir(profile, s)
    partial = folder.with_name(folder.name + ".partial")
    train_student(profile, loss=s["loss"], train_year=s["train_year"], out_dir=partial, resume=True)
    write_json(partial / "student.json", s)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)


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


# --------------------------------------------------------------------------- CLI


def add_train_arguments(parser) -> None:
    parser.add_argument("--profile", default="cpu", help="smoke | cpu | gpu, or the path of a YAML profile")
    parser.add_argument("--loss", help="stage-2 loss (ranknet, listnet, adr-mse, lambdaloss, ...); default: the profile's students")
    parser.add_argument("--train-year", help="the year to train on (a key of data.datasets, e.g. dl20)")
    parser.add_argument("--train-dataset", help="a saved training-list dataset (rank-distillm build-dataset --out) for stage 2")
    parser.add_argument("--out", help="output folder (default: the profile's cached students)")
    parser.add_argument("--no-resume", action="store_true", help="start over instead of resuming from checkpoints")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="profile overrides, e.g. training.stage2.epochs=1")
    parser.add_argument("--force", action="store_true", help="train into --out even if it holds other files")


def _parse_overrides(items: list[str]) -> dict:
    from .profiles import parse_value

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
        key, value = item.split("=", 1)
        out[key] = parse_value(value, what=f"--set {key}")
    return out


def train_command(args) -> int:
    from .cli import print_json
    from .outputs import TRAINING_FOLDER, check_target
    from .profiles import load_profile

    profile = load_profile(args.profile, _parse_overrides(args.set))
    if args.out:
        check_target(args.out, TRAINING_FOLDER, force=args.force, inputs=[args.train_dataset])
    if args.train_dataset and not Path(args.train_dataset).is_dir():
        raise FileNotFoundError(f"--train-dataset {args.train_dataset}: no such dataset folder (rank-distillm build-dataset --out)")
    if not (args.loss or args.train_year or args.train_dataset or args.out):
        for s in trained_students(profile):
            print_json({"name": s.name, "path": str(s.path), "wall_s": s.metrics.get("wall_s"),
                        "pairs_per_s": s.metrics.get("pairs_per_s")})
        return 0
    train_year = args.train_year or profile["training"]["students"][0]["train_year"]
    lists = None
    if args.train_dataset:
        import datasets

        folder = Path(args.train_dataset)
        lists = training_lists(profile, train_year)
        lists["stage2"] = datasets.load_from_disk(str(folder))
    result = train_student(profile, loss=args.loss, train_year=train_year, out_dir=args.out, resume=not args.no_resume, lists=lists)
    print_json({"model_path": str(result.model_path), "wall_s": result.metrics.get("wall_s"),
                "pairs_per_s": result.metrics.get("pairs_per_s")})
    return 0
