"""k-fold cross-validation over the 97 judged TREC DL 2019 + 2020 queries (research for issue 17).

Every query is judged by a student that never saw it: the 97 queries split into ``K_OUTER`` folds
(stratified by year, seed 42); the student of fold ``f`` trains on the other folds' queries (each
with its own year's stored teacher ranking) and re-ranks fold ``f``'s BM25 top-100. Settings are
chosen without the outer test folds: inside each outer training set, an inner ``K_INNER``-fold
cross-validation scores every setting (pooled nDCG@10 of its inner held-out runs), and outer fold
``f`` uses the setting with the best inner score of *its own* training queries.

Students train on precomputed passage states (``rank_distillm.passage_states``): the first 5 of
MiniLM's 6 layers are frozen, their states computed once for all 9,700 pairs, and only the top
layer trains (``CrossEncoderTrainer`` with the library's listwise losses).

    python research/kfold.py precompute                      # the layer-5 states of all pairs
    python research/kfold.py baselines                       # per-query nDCG@10 of the fixed systems
    python research/kfold.py inner SETTING [SETTING ...] --outer 0 1   # inner CV, logged to logs/inner.jsonl
    python research/kfold.py table                           # inner scores of every logged setting
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
LOGS = HERE.parent / "src" / "rank_distillm" / "research_logs"  # shipped with the package: chapter 05 reads them
SEED = 42
K_OUTER, K_INNER = 5, 4
MAX_LENGTH, SEPARATE = 128, 5
YEARS = {"dl19": "msmarco-passage/trec-dl-2019/judged", "dl20": "msmarco-passage/trec-dl-2020/judged"}
RUN_DIRS = {"dl19": "trec-dl-2019", "dl20": "trec-dl-2020"}
TEACHERS = {  # name -> file per year (a year without the file has no list from that teacher)
    "rankvicuna": "rankvicuna-7b.run",
    "rankvicuna2": "rankvicuna-7b-second-run.run",
    "rankgpt": "rankgpt-gpt-3.5-turbo.run",
}


# --------------------------------------------------------------------------- data


@dataclass
class Collection:
    cands: dict  # qid -> Candidates (BM25 top-100)
    year: dict  # qid -> "dl19" | "dl20"
    runs: dict  # name -> Run over both years ("bm25" and the TEACHERS)
    qrels: dict  # qid -> {docid: grade}


def load_collection() -> Collection:
    from rank_distillm import data

    data.setup_ir_datasets()
    root = data.data_dir() / "runs"
    cands, year, qrels, runs = {}, {}, {}, {}
    for y, dataset in YEARS.items():
        for c in data.load_candidates(dataset, root / RUN_DIRS[y] / "bm25.run", depth=100):
            cands[c.qid], year[c.qid] = c, y
        qrels.update(data.load_qrels(dataset))
        for name, file in {"bm25": "bm25.run", **TEACHERS}.items():
            if (root / RUN_DIRS[y] / file).is_file():
                runs.setdefault(name, data.Run()).update(data.read_run(root / RUN_DIRS[y] / file))
    return Collection(cands, year, runs, {q: qrels[q] for q in cands})


_COLLECTION = None


def _cached_collection() -> Collection:
    global _COLLECTION
    if _COLLECTION is None:
        _COLLECTION = load_collection()
    return _COLLECTION


load_collection.cached = _cached_collection


def stratified_folds(qids: list[str], year: dict, k: int, seed: int) -> list[list[str]]:
    """``k`` folds, each year's queries shuffled (seeded) and dealt in turn, the second year going on where the first stopped."""
    order = []
    for y in sorted(set(year[q] for q in qids)):
        own = sorted(q for q in qids if year[q] == y)
        random.Random(f"{seed}:{y}").shuffle(own)
        order += own
    folds = [[] for _ in range(k)]
    for i, q in enumerate(order):
        folds[i % k].append(q)
    return folds


def outer_folds(col: Collection) -> list[list[str]]:
    return stratified_folds(sorted(col.cands), col.year, K_OUTER, SEED)


def inner_folds(col: Collection, outer: int) -> list[list[str]]:
    train = [q for i, f in enumerate(outer_folds(col)) if i != outer for q in f]
    return stratified_folds(train, col.year, K_INNER, SEED + 1 + outer)


def subset(col: Collection, qids: list[str], n: int, seed: int = SEED) -> list[str]:
    """``n`` of ``qids``, stratified by year, nested (a smaller ``n`` gives a prefix of a larger one's order)."""
    folds = stratified_folds(qids, col.year, len(qids), seed)  # one query per fold: the year-interleaved order
    order = [f[0] for f in folds]
    return order[:n]


def ndcg10(col: Collection, run: dict) -> dict[str, float]:
    """Per-query nDCG@10 (ir_measures, each year against its qrels)."""
    import ir_measures

    measure = ir_measures.parse_measure("nDCG@10")
    out = {}
    for y in YEARS:
        part = {q: dict(d) for q, d in run.items() if col.year.get(q) == y}
        if part:
            qrels = {q: col.qrels[q] for q in part}
            out.update({m.query_id: float(m.value) for m in ir_measures.iter_calc([measure], qrels, part)})
    return out


# --------------------------------------------------------------------------- settings


DEFAULTS = {
    "arch": "joint",  # joint: the top layer sees query and passage (the split student); separate: the bi-encoder's
    # own top layer (a fine-tuned bi-encoder); gated: joint, with a learned per-head bias on cross-segment attention
    "gate_init": 0.0,  # gated: the initial bias (very negative: starts as the bi-encoder)
    "gate_lr": 0.05,  # gated: the bias's own learning rate (AdamW moves a parameter by about lr a step)
    "teachers": ["rankvicuna"],  # lists per query: the own year's RankVicuna; + rankvicuna2 (DL20), rankgpt
    "depth": 100,  # the teacher's top-depth is distilled
    "per_list": 30,  # passages a list (random from the top-depth, teacher order); null: all
    "sampling": None,  # null: random when per_list is set, else top; hard: the top-depth + BM25's next ones as 0
    "resample": True,  # a new random draw every epoch (else the same draw each epoch)
    "labels": "rank",  # depth - rank + 1
    "qrels_weight": 0.0,  # combined target: (depth - rank + 1) / depth + w * grade (graded qrels, unjudged 0)
    "qrels_lists": 0,  # extra lists per query from the BM25 top-100 with graded qrels as labels (0: none)
    "qrels_per_list": 30,
    "loss": "ranknet",
    "lr": 2e-5,
    "epochs": 2,
    "queries_per_batch": 2,
    "warmup_ratio": 0.1,
    "scheduler": "linear",
    "weight_decay": 0.01,
    "attention_dropout": 0.0,  # in the trained (upper) layer; MiniLM's own is 0.1, but on a CPU sdpa with dropout is ~10x slower
    "hidden_dropout": 0.0,
    "bf16": True,  # autocast, as the cpu profile's bf16: auto on this AMX CPU (about 2x faster training)
    "seed": SEED,
}

SETTINGS_FILE = HERE / "settings.json"


def settings() -> dict[str, dict]:
    return json.loads(SETTINGS_FILE.read_text())


def setting(name: str) -> dict:
    table = settings()
    if name not in table:
        raise SystemExit(f"unknown setting {name!r}: add it to {SETTINGS_FILE}")
    unknown = set(table[name]) - set(DEFAULTS)
    if unknown:
        raise SystemExit(f"setting {name!r}: unknown fields {sorted(unknown)}")
    return {**DEFAULTS, **table[name]}


def setting_hash(cfg: dict) -> str:
    return hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- training lists


def training_rows(col: Collection, cfg: dict, qids: list[str]) -> dict:
    """The listwise rows (``query``, ``docs``, ``labels``) of one training run, all epochs in order."""
    from rank_distillm import sampling

    rows = {"query": [], "docs": [], "labels": []}
    for epoch in range(cfg["epochs"] if cfg["resample"] else 1):
        seed = cfg["seed"] + 1000 * epoch
        epoch_rows = []
        for q in qids:
            c = col.cands[q]
            for t in cfg["teachers"]:
                run = col.runs[t]
                if q not in run:
                    continue
                ds = sampling.distillation_lists(
                    _one(run, q), [c], depth=cfg["depth"], per_list=cfg["per_list"],
                    sampling=cfg["sampling"] or ("random" if cfg["per_list"] else "top"), labels=cfg["labels"], seed=seed,
                )
                docs, labels, docids = ds[0]["docs"], ds[0]["labels"], ds[0]["docids"]
                if cfg["qrels_weight"]:
                    grades = col.qrels[q]
                    labels = [y / cfg["depth"] + cfg["qrels_weight"] * grades.get(d, 0) for y, d in zip(labels, docids)]
                epoch_rows.append((c.query, docs, labels))
            for i in range(cfg["qrels_lists"]):
                ds = sampling.graded_lists(YEARS[col.year[q]], [c], per_list=cfg["qrels_per_list"], seed=seed + 17 * (i + 1))
                epoch_rows.append((c.query, ds[0]["docs"], ds[0]["labels"]))
        random.Random(seed).shuffle(epoch_rows)
        for query, docs, labels in epoch_rows:
            rows["query"].append(query)
            rows["docs"].append(docs)
            rows["labels"].append([float(x) for x in labels])
    return rows


def _one(run, qid):
    from rank_distillm.data import Run

    out = Run(source=getattr(run, "source", None))
    out[qid] = run[qid]
    return out


# --------------------------------------------------------------------------- models


def states_dir() -> Path:
    from rank_distillm import data

    return data.cache_dir() / "research" / f"states-sl{SEPARATE}-len{MAX_LENGTH}-float32"


def new_student():
    import transformers

    from rank_distillm import models
    from rank_distillm.student import build_student

    transformers.set_seed(SEED)
    return build_student(models.resolve_model(models.MINILM), head="segment-cosine", max_length=MAX_LENGTH,
                         separate_layers=SEPARATE)


_STORE = None


def store():
    global _STORE
    from rank_distillm.passage_states import StateStore

    if _STORE is None:
        _STORE = StateStore.load(states_dir())
    return _STORE


def fast_model(cfg: dict):
    """``(student, model)``: a fresh split student and the model that trains it on the stored states."""
    from gated import GatedPassageStates  # research-only architectures (research/gated.py)

    from rank_distillm.passage_states import precomputed_student

    import torch

    student = new_student()
    for layer in student[0].model.encoder.layer[SEPARATE:]:
        for name, m in layer.named_modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = cfg["attention_dropout"] if name == "attention.self.dropout" else cfg["hidden_dropout"]
    if cfg["arch"] == "joint":
        return student, precomputed_student(student, store())
    return student, GatedPassageStates.model(student, store(), arch=cfg["arch"], gate_init=cfg["gate_init"])


def train(col: Collection, cfg: dict, qids: list[str], out_dir: Path) -> tuple:
    """Train a student on ``qids`` with setting ``cfg``; ``(model, figures)``."""
    import datasets
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    from rank_distillm.losses import make_loss

    student, model = fast_model(cfg)
    if cfg["epochs"] == 0:  # the untrained student of this architecture
        return model, {"train_queries": len(qids), "lists": 0, "pairs": 0, "train_wall_s": 0.0, "pairs_per_s": None,
                       "steps": 0, "loss_curve": []}
    rows = training_rows(col, cfg, qids)
    train_ds = datasets.Dataset.from_dict(rows)
    steps = -(-len(train_ds) // cfg["queries_per_batch"])
    args = CrossEncoderTrainingArguments(
        output_dir=str(out_dir), num_train_epochs=1, per_device_train_batch_size=cfg["queries_per_batch"],
        learning_rate=cfg["lr"], warmup_steps=int(round(cfg["warmup_ratio"] * steps)), lr_scheduler_type=cfg["scheduler"],
        weight_decay=cfg["weight_decay"], seed=cfg["seed"], data_seed=cfg["seed"], save_strategy="no", report_to="none",
        disable_tqdm=True, use_cpu=True, bf16=cfg["bf16"], logging_steps=max(1, steps // 5),
    )
    # all pairs of a batch in one forward pass (the library reads mini_batch_size 0 as "one pair per query")
    loss = make_loss(cfg["loss"], model, mini_batch_size=-1)
    import torch

    gate = [p for n, p in model.named_parameters() if n.endswith("gate") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.endswith("gate") and p.requires_grad]
    groups = [{"params": rest, "lr": cfg["lr"], "weight_decay": cfg["weight_decay"]}]
    if gate:
        groups.append({"params": gate, "lr": cfg["gate_lr"], "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=cfg["lr"])
    # one pass over rows that hold every epoch's lists (a new draw each epoch), shuffled by the trainer
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train_ds, loss=loss, optimizers=(optimizer, None))
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    pairs = sum(len(d) for d in rows["docs"])
    extra = {"gate": [round(float(x), 3) for x in gate[0].detach()]} if gate else {}
    return model, {**extra, "train_queries": len(qids), "lists": len(train_ds), "pairs": pairs, "train_wall_s": round(wall, 1),
                   "pairs_per_s": round(pairs / wall, 1), "steps": steps,
                   "loss_curve": [h["loss"] for h in trainer.state.log_history if "loss" in h]}


def rerank(col: Collection, model, qids: list[str]) -> dict:
    from rank_distillm import evaluation

    model.eval()
    return evaluation.rerank(model, [col.cands[q] for q in qids], batch_size=100, show_progress_bar=False)


# --------------------------------------------------------------------------- commands


def _log(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _logged(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def cmd_precompute(args) -> None:
    import torch

    from rank_distillm.passage_states import precomputed_student

    torch.set_num_threads(args.threads)
    col = load_collection()
    pairs = [(c.query, t) for q in sorted(col.cands) for c in [col.cands[q]] for t in c.texts]
    model = precomputed_student(new_student())
    figures = model[0].precompute(pairs, progress=True)
    model[0].store.save(states_dir())
    figures.update(passages=len({d for c in col.cands.values() for d in c.docids}), threads=args.threads,
                   load=os.getloadavg(), dir=str(states_dir()))
    _log(LOGS / "precompute.jsonl", figures)
    print(json.dumps(figures))


def cmd_baselines(args) -> None:
    """Per-query nDCG@10 of BM25, the teachers, the untrained split student and the bi-encoder, for all 97 queries."""
    import torch

    torch.set_num_threads(args.threads)
    col = load_collection()
    out = {name: ndcg10(col, {q: run[q] for q in col.cands if q in run}) for name, run in col.runs.items()}
    qids = sorted(col.cands)
    for name, arch in (("untrained_split", "joint"), ("biencoder", "separate")):
        _, model = fast_model({**DEFAULTS, "arch": arch, "gate_init": -1e4})
        out[name] = ndcg10(col, rerank(col, model, qids))
    from rank_distillm import evaluation, models

    st = evaluation.load_reranker(models.resolve_model(models.MINILM), bi_encoder=True)  # the chapter's zero-shot bi-encoder
    out["biencoder_st"] = ndcg10(col, evaluation.rerank(st, [col.cands[q] for q in qids], show_progress_bar=False))
    (LOGS / "baselines.json").write_text(json.dumps(out, indent=1))
    import numpy as np

    print({k: round(float(np.mean(list(v.values()))), 4) for k, v in out.items()})


def _claim(name: str) -> bool:
    """Claim a task for this process (several workers share one task list); False if another has it."""
    folder = LOGS / "claims"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(folder / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def cmd_inner(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    col = load_collection()
    log = LOGS / "inner.jsonl"
    for name in args.settings:
        cfg = setting(name)
        h = setting_hash(cfg)
        for inner in args.inner:
            for outer in args.outer:
                done = any(r["hash"] == h and r["outer"] == outer and r["inner"] == inner for r in _logged(log))
                if done or not _claim(f"{h}-{outer}-{inner}"):
                    continue
                folds = inner_folds(col, outer)
                val = folds[inner]
                train_q = [q for i, f in enumerate(folds) if i != inner for q in f]
                model, figures = train(col, cfg, train_q, Path("/tmp") / f"kfold-{os.getpid()}")
                scores = ndcg10(col, rerank(col, model, val))
                record = {"setting": name, "hash": h, "cfg": cfg, "outer": outer, "inner": inner,
                          "ndcg10": scores, "mean": sum(scores.values()) / len(scores), **figures,
                          "load": os.getloadavg(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
                _log(log, record)
                print(f"{name} outer {outer} inner {inner}: {record['mean']:.4f} ({figures['train_wall_s']} s, "
                      f"{figures['pairs_per_s']} pairs/s)", flush=True)


def baselines() -> dict[str, dict[str, float]]:
    return json.loads((LOGS / "baselines.json").read_text())


def choose(outer: int, rule: str) -> str:
    """The setting outer fold ``outer`` uses, from its own training queries' inner scores only.

    ``screen``: the best score on inner fold 0 among every setting logged there; ``cv``: the best
    pooled 4-fold inner score among the settings with all 4 inner folds logged for this outer fold.
    """
    t = inner_table(inner=[0] if rule == "screen" else None)
    t = t[t["outer"] == outer]
    if rule == "cv":
        t = t[t["queries"] == len([q for f in inner_folds(load_collection.cached(), outer) for q in f])]
    if t.empty:
        raise SystemExit(f"outer fold {outer}: no inner scores for rule {rule!r}")
    return str(t.sort_values("ndcg10", ascending=False).iloc[0]["setting"])


def inner_table(names: list[str] | None = None, inner: list[int] | None = None):
    """Per setting and outer fold: the pooled inner nDCG@10 over the validated training queries of that
    outer fold, and the same queries' scores of the bi-encoder and the untrained split student."""
    import numpy as np
    import pandas as pd

    base = baselines()
    rows = {}
    for r in _logged(LOGS / "inner.jsonl"):
        if (names and r["setting"] not in names) or (inner is not None and r["inner"] not in inner):
            continue
        rows.setdefault((r["setting"], r["hash"], r["outer"]), {}).update(r["ndcg10"])
    out = []
    for (name, h, outer), scores in rows.items():
        q = list(scores)
        out.append({"setting": name, "hash": h, "outer": outer, "queries": len(q), "ndcg10": np.mean(list(scores.values())),
                    "vs_biencoder": np.mean([scores[x] - base["biencoder_st"][x] for x in q]),
                    "vs_untrained": np.mean([scores[x] - base["untrained_split"][x] for x in q])})
    return pd.DataFrame(out)


def cmd_table(args) -> None:
    import pandas as pd

    t = inner_table(inner=args.inner)
    if t.empty:
        print("nothing logged yet")
        return
    pd.set_option("display.width", 250)
    for value in ("ndcg10", "vs_biencoder"):
        wide = t.pivot_table(index=["setting"], columns="outer", values=value)
        wide["mean"] = wide.mean(axis=1)
        wide["folds"] = wide.drop(columns="mean").notna().sum(axis=1)
        print(f"--- {value} (inner folds {args.inner or 'all'}) ---")
        print(wide.sort_values("mean", ascending=False).round(4).to_string())


def cmd_final(args) -> None:
    """Each outer fold's student (its own setting, or ``--setting``) trained on ``n`` of its training queries
    for each ``--sizes`` (0: all), re-ranking the outer test fold; logged to logs/outer.jsonl."""
    import torch

    torch.set_num_threads(args.threads)
    col = load_collection()
    log = LOGS / "outer.jsonl"
    folds = outer_folds(col)
    for n in args.sizes:
        for outer in args.outer:
            name = args.setting or choose(outer, args.rule)
            cfg = setting(name)
            h = setting_hash(cfg)
            done = any(r["hash"] == h and r["outer"] == outer and r["n"] == n for r in _logged(log))
            if done or not _claim(f"outer-{h}-{outer}-{n}"):
                continue
            train_all = [q for i, f in enumerate(folds) if i != outer for q in f]
            train_q = train_all if n == 0 else subset(col, train_all, n)
            model, figures = train(col, cfg, train_q, Path("/tmp") / f"kfold-{os.getpid()}")
            start = time.perf_counter()
            scores = ndcg10(col, rerank(col, model, folds[outer]))
            record = {"setting": name, "rule": None if args.setting else args.rule, "hash": h, "cfg": cfg, "outer": outer,
                      "n": n, "train_qids": train_q, "ndcg10": scores, "mean": sum(scores.values()) / len(scores), **figures,
                      "rerank_s": round(time.perf_counter() - start, 1), "load": os.getloadavg(),
                      "time": time.strftime("%Y-%m-%d %H:%M:%S")}
            _log(log, record)
            print(f"{name} outer {outer} n {n or len(train_q)}: {record['mean']:.4f} ({figures['train_wall_s']} s, "
                  f"{figures['pairs_per_s']} pairs/s)", flush=True)


def pooled(setting_name: str | None = None, rule: str | None = None, n: int = 0) -> dict[str, float]:
    """Per-query nDCG@10 of the pooled outer-fold runs (every query from the fold that held it out)."""
    out = {}
    for r in _logged(LOGS / "outer.jsonl"):
        if r["n"] == n and (setting_name is None or r["setting"] == setting_name) and (rule is None or r["rule"] == rule):
            out.update(r["ndcg10"])
    return out


def cmd_report(args) -> None:
    import pandas as pd

    from rank_distillm import statistics

    col = load_collection()
    base = baselines()
    student = pooled(args.setting, args.rule)
    if len(student) != len(col.cands):
        raise SystemExit(f"pooled run has {len(student)} of {len(col.cands)} queries: run `final` for every outer fold")
    qids = sorted(student)
    table = pd.DataFrame({"student": [student[q] for q in qids]}, index=qids)
    for name, key in (("BM25", "bm25"), ("bi-encoder", "biencoder_st"), ("teacher (RankVicuna)", "rankvicuna"),
                      ("RankGPT-3.5", "rankgpt"), ("untrained split", "untrained_split")):
        table[name] = [base[key][q] for q in qids]
    tests = statistics.paired_tests(table.drop(columns="untrained split"), baseline="student")
    pd.set_option("display.width", 250)
    print(tests.round(4).to_string())
    s, b, t = table["student"].mean(), table["BM25"].mean(), table["teacher (RankVicuna)"].mean()
    print(f"gap closed (student - BM25) / (teacher - BM25): {(s - b) / (t - b):.3f}")
    years = pd.Series({q: col.year[q] for q in qids})
    print(table.groupby(years).mean().round(4).to_string())
    rows = []
    for n in args.sizes:
        run = pooled(args.setting, args.rule, n)
        if len(run) == len(col.cands):
            mean, low, high = statistics.mean_ci([run[q] for q in qids])
            rows.append({"n": n, "ndcg10": mean, "ci_low": low, "ci_high": high})
    if rows:
        print(pd.DataFrame(rows).round(4).to_string(index=False))


def main(argv=None) -> int:
    sys.path.insert(0, str(HERE))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("precompute", "baselines", "inner", "table", "final", "report"):
        p = sub.add_parser(name)
        p.add_argument("--threads", type=int, default=1)
        if name in ("inner", "table"):
            p.add_argument("--inner", type=int, nargs="+", default=None if name == "table" else list(range(K_INNER)))
        if name == "inner":
            p.add_argument("settings", nargs="+")
        if name in ("final", "report"):
            p.add_argument("--setting", default=None, help="one setting for every fold (default: each fold's own choice)")
            p.add_argument("--rule", default="cv", choices=("cv", "screen"))
            p.add_argument("--sizes", type=int, nargs="+", default=[0], help="training queries (0: all of the fold's)")
        if name in ("inner", "final"):
            p.add_argument("--outer", type=int, nargs="+", default=list(range(K_OUTER)))
    args = parser.parse_args(argv)
    commands = {"precompute": cmd_precompute, "baselines": cmd_baselines, "inner": cmd_inner, "table": cmd_table,
                "final": cmd_final, "report": cmd_report}
    commands[args.command](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
