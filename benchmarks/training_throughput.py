"""Training throughput of the student: query-passage pairs per second, forward + backward.

Times optimizer steps of the profile's stage-2 loss on real teacher lists (the training
year of the profile's first student), after one warm-up step, for one or more maximum
lengths. Prints one row per setting, so a change to the training code can be compared:

    python benchmarks/training_throughput.py --profile cpu
    python benchmarks/training_throughput.py --profile cpu --max-length 128 192 512 --steps 3
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv=None) -> int:
    import torch
    from tqdm.auto import tqdm

    from rank_distillm import training
    from rank_distillm.losses import make_loss
    from rank_distillm.profiles import load_profile

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
    print(f"profile {args.profile}: {cfg['model']}, loss {student['loss']}, {qpb} queries x "
          f"{len(ds['docs'][0])} passages per batch, torch threads {torch.get_num_threads()}")
    print(f"{'max_length':>10} {'steps':>5} {'pairs':>6} {'seconds':>8} {'pairs/s':>8}")
    for max_length in args.max_length or [cfg["max_length"]]:
        model = training.new_model(dict(cfg, max_length=max_length))
        model.model.train()
        loss = make_loss(student["loss"], model, **({"mini_batch_size": cfg["mini_batch_size"]} if cfg["mini_batch_size"] is not None else {}))
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["stage2"]["lr"])
        pairs, elapsed = 0, 0.0
        for step in tqdm(range(args.steps + 1), desc=f"max_length {max_length}", leave=False):
            rows = ds.select(range(step * qpb, (step + 1) * qpb))
            t = time.perf_counter()
            value = loss([rows["query"], rows["docs"]], [torch.tensor(x) for x in rows["labels"]])
            value.backward()
            opt.step()
            opt.zero_grad()
            if step:  # step 0 warms up
                elapsed += time.perf_counter() - t
                pairs += sum(len(d) for d in rows["docs"])
        print(f"{max_length:>10} {args.steps:>5} {pairs:>6} {elapsed:>8.1f} {pairs / elapsed:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
