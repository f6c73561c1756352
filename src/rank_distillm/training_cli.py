"""``rank-distillm train``: train the profile's students (cached), or one student into ``--out``.

``rank-distillm train --profile cpu`` trains every student of the profile once
(:func:`rank_distillm.training.trained_students`); ``--loss``, ``--train-year``,
``--train-dataset`` (a saved ``build-dataset`` folder) or ``--out`` train one student
(:func:`rank_distillm.training.train_student`). Under ``accelerate launch`` one process reports.
"""

from __future__ import annotations

from pathlib import Path

from . import training


def add_train_arguments(parser) -> None:
    parser.add_argument("--profile", default="cpu", help="smoke | cpu | gpu, a variant (gpu-mini, colab, ...) or the path of a YAML profile")
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
    main = training._state().is_main_process  # under accelerate launch, one process reports
    if not (args.loss or args.train_year or args.train_dataset or args.out):
        for s in training.trained_students(profile):
            if main:
                print_json({"name": s.name, "path": str(s.path), "wall_s": s.metrics.get("wall_s"),
                            "pairs_per_s": s.metrics.get("pairs_per_s")})
        return 0
    train_year = args.train_year or profile["training"]["students"][0]["train_year"]
    lists = None
    if args.train_dataset:
        import datasets

        folder = Path(args.train_dataset)
        with training._state().main_process_first():
            lists = training.training_lists(profile, train_year)
        lists["stage2"] = datasets.load_from_disk(str(folder))
    result = training.train_student(profile, loss=args.loss, train_year=train_year, out_dir=args.out, resume=not args.no_resume, lists=lists)
    if main:
        print_json({"model_path": str(result.model_path), "processes": result.metrics.get("processes"),
                    "wall_s": result.metrics.get("wall_s"), "pairs_per_s": result.metrics.get("pairs_per_s")})
    return 0
