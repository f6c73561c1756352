"""Student training throughput: query-passage pairs per second of real optimizer steps.

One measurement serves every figure of how fast the student trains. :class:`StepTimer` is a
``transformers`` ``TrainerCallback``: it times each optimizer step of a
``CrossEncoderTrainer`` (forward, loss and backward of every micro-batch, then the optimizer
step), synchronised with the GPU, leaves out the first ``warmup`` steps and everything
between steps (evaluation, checkpoints), and counts the pairs the steps saw:

    pairs_per_s = pairs of the timed steps / their seconds

Chapter 5's training runs report it (``pairs_per_s`` of a stage's metrics);
:func:`measure_training` runs a few steps of the same trainer on given lists (chapter 8,
``benchmarks/gpu_check.py``, ``benchmarks/training_throughput.py``), with the peak memory
of the run (:class:`rank_distillm.devices.MemoryMeter`); :func:`synthetic_lists` makes
lists of a given shape from a tokenizer's vocabulary when no data is at hand.
"""

from __future__ import annotations

import random
import tempfile
import time

from transformers import TrainerCallback

from . import devices
from .data import Candidates, run_from_rankings


class StepTimer(TrainerCallback):
    """Seconds and pairs of a trainer's optimizer steps after the first ``warmup`` ones.

    ``pairs_per_step``: query-passage pairs one optimizer step sees (queries per step x
    passages per list; for lists of unequal length, their mean).
    """

    def __init__(self, pairs_per_step: float, warmup: int = 0, device: str | None = None):
        self.pairs_per_step, self.warmup, self.device = float(pairs_per_step), int(warmup), device
        self.steps = 0
        self.timed_steps = 0
        self.seconds = 0.0
        self._start = None

    def on_step_begin(self, args, state, control, **kwargs):
        devices.synchronize(self.device or str(args.device))
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        devices.synchronize(self.device or str(args.device))
        self.steps += 1
        if self.steps > self.warmup and self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self.timed_steps += 1
        self._start = None

    @property
    def pairs(self) -> float:
        return self.timed_steps * self.pairs_per_step

    @property
    def pairs_per_s(self) -> float | None:
        return self.pairs / self.seconds if self.seconds > 0 else None


def vocabulary_words(tokenizer, n: int = 3000, seed: int = 0) -> list[str]:
    """Whole alphabetic words from a tokenizer's vocabulary, to write synthetic queries and passages."""
    words = sorted(w for w in tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) > 2)
    return random.Random(seed).sample(words, min(n, len(words)))


def synthetic_candidates(words: list[str], queries: int, passages: int, passage_words: int, seed: int = 0) -> list[Candidates]:
    """``Candidates`` with random queries (8 words) and passages (``passage_words`` words), no data needed."""
    rng = random.Random(seed)
    out = []
    for q in range(queries):
        docids = [f"q{q}-d{d}" for d in range(passages)]
        out.append(Candidates(qid=f"q{q}", query=" ".join(rng.choices(words, k=8)), docids=docids,
                              texts=[" ".join(rng.choices(words, k=passage_words)) for _ in docids],
                              scores=[float(passages - d) for d in range(passages)]))
    return out


def synthetic_lists(tokenizer, queries: int, passages: int, passage_words: int = 300, seed: int = 0):
    """Training lists (:func:`rank_distillm.sampling.distillation_lists`) of random words, in candidate order.

    Each list's targets are the paper's ``depth - rank + 1``; 300 words fill the paper's 256
    passage tokens.
    """
    from .sampling import distillation_lists

    cands = synthetic_candidates(vocabulary_words(tokenizer, seed=seed), queries, passages, passage_words, seed)
    teacher = run_from_rankings({c.qid: c.docids for c in cands})
    return distillation_lists(teacher, cands, depth=passages, labels="rank", seed=seed)


def measure_training(model, lists, *, loss: str = "ranknet", queries_per_step: int = 1, steps: int = 3,
                     warmup: int = 1, lr: float = 1e-5, dtype: str = "float32", mini_batch_size: int | None = None) -> dict:
    """Time ``steps`` optimizer steps (after ``warmup`` untimed ones) of a ``CrossEncoderTrainer``.

    ``model``: a ``CrossEncoder`` on its device; ``lists``: training lists (``query``, ``docs``,
    ``labels``), at least ``(warmup + steps) x queries_per_step`` of them; ``loss``: a name for
    :func:`rank_distillm.losses.make_loss` (``mini_batch_size``: pairs per forward pass);
    ``dtype``: ``float32``, or ``bfloat16`` / ``float16`` mixed precision (the trainer's
    ``bf16`` / ``fp16``, autocast with float32 weights). Returns the steps, pairs, seconds and
    ``pairs_per_s`` of the timed steps, the peak memory of the run (MiB) and what it measures,
    and the last training loss.
    """
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from .losses import make_loss

    total = warmup + steps
    needed = total * queries_per_step
    if len(lists) < needed:
        raise ValueError(f"measure_training: {total} steps of {queries_per_step} lists need {needed} lists, got {len(lists)}")
    lists = lists.select(range(needed)).select_columns(["query", "docs", "labels"])
    device = str(model.device)
    lengths = [len(d) for d in lists["docs"]]
    passages = lengths[0] if len(set(lengths)) == 1 else sum(lengths) / len(lengths)
    timer = StepTimer(queries_per_step * passages, warmup=warmup, device=device)
    kwargs = {} if mini_batch_size is None else {"mini_batch_size": mini_batch_size}
    with tempfile.TemporaryDirectory(prefix="rank-distillm-throughput-") as tmp:
        args = CrossEncoderTrainingArguments(
            output_dir=tmp, max_steps=total, per_device_train_batch_size=queries_per_step, learning_rate=lr,
            lr_scheduler_type="constant", bf16=dtype == "bfloat16", fp16=dtype == "float16",
            use_cpu=not device.startswith("cuda"), save_strategy="no", eval_strategy="no", report_to="none",
            logging_steps=1, disable_tqdm=True, seed=0, data_seed=0, dataloader_pin_memory=device.startswith("cuda"),
        )
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=lists, loss=make_loss(loss, model, **kwargs),
                                      callbacks=[timer])
        trainer.remove_callback(PrinterCallback)  # the losses are in the state's log history; nothing to print
        meter = devices.MemoryMeter(device)
        meter.start()
        trainer.train()
        peak = meter.stop()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"steps": timer.timed_steps, "queries_per_step": queries_per_step, "passages": passages, "pairs": timer.pairs,
            "seconds": timer.seconds, "pairs_per_s": timer.pairs_per_s, "peak_memory_mb": peak, "memory": meter.what,
            "dtype": dtype, "device": device, "last_loss": losses[-1] if losses else None}


def measure_student_training(model: str, steps: int = 2, queries: int = 2, passages: int = 8, max_length: int = 128,
                             device: str | None = None, dtype: str = "auto", loss: str = "ranknet") -> dict:
    """Pairs per second of a cross-encoder's training steps on synthetic lists (:func:`measure_training`).

    ``model``: a name for :func:`rank_distillm.models.resolve_model` or a local folder, or
    ``electra-base-config`` (ELECTRA-base's architecture, random weights: the same cost, no
    download). ``queries`` lists of ``passages`` passages of ``max_length`` tokens per step
    (the paper's 32 + 256 on a GPU), one warm-up step first; ``dtype``: ``auto`` is
    :func:`rank_distillm.devices.choose_dtype` on a GPU, float32 on the CPU.
    """
    import torch
    from sentence_transformers import CrossEncoder

    from .models import random_model, resolve_model

    device = device or devices.default_device()
    dtype = devices.choose_dtype(dtype) if device.startswith("cuda") else "float32"
    path = random_model("electra-base") if model == "electra-base-config" else resolve_model(model)
    torch.manual_seed(0)
    net = CrossEncoder(path, num_labels=1, max_length=max_length, device=device)
    lists = synthetic_lists(net.tokenizer, queries * (steps + 1), passages)
    result = measure_training(net, lists, loss=loss, queries_per_step=queries, steps=steps, warmup=1, dtype=dtype,
                              mini_batch_size=passages)
    return {"model": model, "max_length": max_length, "parameters": sum(p.numel() for p in net.parameters()), **result}
