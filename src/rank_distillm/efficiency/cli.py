"""``rank-distillm bench``: the profile's benchmark (:func:`.report.run_bench`) on the command line."""

from __future__ import annotations

import sys

from ..errors import DataError


def add_bench_arguments(parser) -> None:
    parser.add_argument("--profile", default="cpu", help="smoke | cpu | gpu, or the path of a YAML profile")
    parser.add_argument("--depth", type=int, nargs="+", default=None, help="depths to time (replaces the profile's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (models, rows, summary, ratios); "
                                                            "fields that do not apply to a row are null")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="a JSONL file: each measured row (model, backend, depth, device) is appended as it "
                             "finishes; run again with the same file to resume, skipping the rows already there")


def bench_command(args) -> int:
    from ..profiles import load_profile
    from .report import PAPER_MEMORY_RATIO, PAPER_SPEEDUP, run_bench

    P = load_profile(args.profile)["efficiency"]
    if args.depth and min(args.depth) < 1:
        raise DataError(f"--depth: depths must be positive, not {args.depth}")
    result = run_bench(P, args.depth, log=lambda m: print(m, file=sys.stderr), out=args.out)
    if args.json:
        from ..cli_types import print_json  # strict JSON: null where a field does not apply

        print_json(result)
        return 0
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(pd.DataFrame(result["summary"]).round(4).to_string(index=False))
        print()
        print(pd.DataFrame(result["ratios"]).round(2).to_string(index=False))
    print(f"\nthe paper's (not measured here): up to {PAPER_SPEEDUP:.0f}x faster, {PAPER_MEMORY_RATIO:.0f}x less memory")
    return 0
