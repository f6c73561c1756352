"""``rank-distillm data``: find the offline data and prepare the writable ir_datasets cache."""

from __future__ import annotations

from .data import DL19, DL20, data_dir, load_qrels, load_queries, setup_ir_datasets


def add_data_arguments(parser) -> None:
    parser.add_argument("--check", action="store_true", help="also load DL19/DL20 queries and qrels")


def data_command(args) -> int:
    folder = data_dir(required=False)
    print(f"offline data:      {folder or 'none (online mode: ir_datasets downloads what it needs)'}")
    print(f"IR_DATASETS_HOME:  {setup_ir_datasets() or 'ir_datasets default'}")
    if args.check:
        for dataset_id in (DL19, DL20):
            queries, qrels = load_queries(dataset_id), load_qrels(dataset_id)
            print(f"{dataset_id}: {len(queries)} queries, {sum(map(len, qrels.values()))} judgements")
    return 0
