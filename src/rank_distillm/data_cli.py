"""``rank-distillm data``: find (or build) the data folder and prepare the writable ir_datasets cache.

``rank-distillm data [--check]`` says which data folder is in use, building it from its public
sources on first use; ``rank-distillm data download --out DIR [--base-url URL]`` builds one at
``DIR`` (:func:`rank_distillm.sources.download`).
"""

from __future__ import annotations

from .data import DL19, DL20, data_dir, load_qrels, load_queries, setup_ir_datasets


def add_data_arguments(parser) -> None:
    parser.add_argument("--check", action="store_true", help="also load DL19/DL20 queries and qrels")
    sub = parser.add_subparsers(dest="data_action", metavar="ACTION")
    download = sub.add_parser(
        "download", help="build a data folder from the data's public sources (fetched, verified, converted)",
        description="Fetch the 39 raw files the data folder is made from (GitHub, pinned commits), check each "
                    "file's size and sha256, convert them and move the finished folder to --out.")
    download.add_argument("--out", required=True, help="the data folder to create (must not exist yet)")
    download.add_argument("--base-url", default=None,
                          help="where the raw files are: URL/OWNER/REPO/COMMIT/PATH (default: $RANK_DISTILLM_SOURCES_URL "
                               "or https://raw.githubusercontent.com; file:// URLs work)")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")


def data_command(args) -> int:
    if getattr(args, "data_action", None) == "download":
        return download_command(args)
    folder = data_dir(required=args.check)  # the check needs the data; without it, say what is there
    print(f"data folder:       {folder or 'none (online mode: ir_datasets downloads what it needs)'}")
    print(f"IR_DATASETS_HOME:  {setup_ir_datasets() or 'ir_datasets default'}")
    if args.check:
        for dataset_id in (DL19, DL20):
            queries, qrels = load_queries(dataset_id), load_qrels(dataset_id)
            print(f"{dataset_id}: {len(queries)} queries, {sum(map(len, qrels.values()))} judgements")
    return 0


def download_command(args) -> int:
    from . import sources

    built = sources.download(args.out, args.base_url, progress=not args.no_progress)
    if built.existed:
        print(f"{built.path} is already a data folder built from these sources; nothing to do")
    else:
        print(f"built {built.path} in {built.seconds:.1f} s from {built.base_url}: {built.fetched} raw files fetched, "
              f"{built.reused} reused from {sources.raw_dir()} ({built.bytes / 1e6:.1f} MB in all, sha256 verified)")
    return 0
