"""Training throughput of the student: query-passage pairs per second, forward + backward.

Times optimizer steps of ``CrossEncoderTrainer`` with the profile's stage-2 loss on real
teacher lists (the training year of the profile's first student), after one warm-up step,
for one or more maximum lengths: the book's one throughput measurement
(``rank_distillm.throughput.measure_training``, the figure chapter 5's training reports).
Prints one row per setting, so a change to the training code can be compared:

    python benchmarks/training_throughput.py --profile cpu
    python benchmarks/training_throughput.py --profile cpu --max-length 128 192 512 --steps 3
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv=None) -> int:
    import torch
    from tqdm.auto import tqdm

    from rank_distillm import training
    from rank_distillm.devices import use_bf16
    from rank_distillm.profiles import load_profile
    from rank_distillm.throughput import measure_training

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--max-length", type=int, nargs="*", help="default: the profile's max_length")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per setting (after 1 warm-up step)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    profile = load_profile(args.profile, {"training.heldout_queries": 0})
    cfg = profile["training"]
    student = cfg["students"][0]
    qpb = cfg["queries_per_batch"]
    profile["training"]["max_queries"] = qpb * (args.steps + 1)
    ds = training.training_lists(profile, student["train_year"])["stage2"]
    dtype = "bfloat16" if use_bf16(cfg["bf16"]) else "float32"
    print(f"profile {args.profile}: {cfg['model']}, loss {student['loss']}, {qpb} queries x "
          f"{len(ds['docs'][0])} passages per batch, {dtype}, torch threads {torch.get_num_threads()}")
    print(f"{'max_length':>10} {'steps':>5} {'pairs':>6} {'seconds':>8} {'pairs/s':>8}")
    for max_length in tqdm(args.max_length or [cfg["max_length"]], desc="max_length", leave=False):
        model = training.new_model(dict(cfg, max_length=max_length))
        m = measure_training(model, ds, loss=student["loss"], queries_per_step=qpb, steps=args.steps, warmup=1,
                             lr=cfg["stage2"]["lr"], dtype=dtype, mini_batch_size=cfg["mini_batch_size"])
        print(f"{max_length:>10} {m['steps']:>5} {m['pairs']:>6.0f} {m['seconds']:>8.1f} {m['pairs_per_s']:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
