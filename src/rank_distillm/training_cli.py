"""``rank-distillm train``: train the profile's students (cached), or one student into ``--out``.

``rank-distillm train --profile cpu`` trains every student of the profile once
(:func:`rank_distillm.training.trained_students`); ``--loss``, ``--train-year``,
``--train-dataset`` (a saved ``build-dataset`` folder) or ``--out`` train one student
(:func:`rank_distillm.training.train_student`). Under ``accelerate launch`` one process reports.
"""

from __future__ import annotations

from pathlib import Path

from . import training
from .errors import DataError


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
            raise DataError(f"--set {item!r}: expected FIELD=VALUE")
        key, value = item.split("=", 1)
        out[key] = parse_value(value, what=f"--set {key}")
    return out


def _whole(value, at_least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= at_least


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")


def check_training_profile(profile: dict, loss: str | None = None, train_year: str | None = None) -> None:
    """Refuse, before any work, a profile, loss or year that training would stumble on later.

    Every field that a run reads is checked for its kind and range (``training.stage2.epochs``
    a whole number >= 1, learning rates positive numbers, ...), every loss named (``--loss``,
    the stages', the students') and every year (``--train-year``, the students') must exist:
    a :class:`~rank_distillm.data.DataError` names the field, so that nothing is trained and no
    folder is made for a job that would fail (or, worse, "succeed" with ``epochs: -1``).
    """
    from .losses import LOSS_NAMES
    from .losses.ranknet import LOG_BASES
    from .losses.registry import ALIASES
    from .sampling import CUTS, LABELS, SAMPLINGS

    def fail(field: str, what: str, value) -> None:
        raise DataError(f"{field} must be {what}, not {value!r}")

    def known_loss(field: str, name) -> None:
        key = str(name).strip().lower().replace("_", "-") if isinstance(name, str) else None
        if key is None or ALIASES.get(key, key) not in LOSS_NAMES:
            fail(field, f"a loss ({', '.join(LOSS_NAMES)})", name)

    for section in ("data", "training"):
        if not isinstance(profile.get(section), dict):
            fail(section, "a section of fields (a mapping)", profile.get(section))
    datasets = profile["data"].get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        fail("data.datasets", "a mapping of years to ir_datasets ids", datasets)
    cfg = profile["training"]

    def known_year(field: str, year) -> None:
        if year not in datasets:
            fail(field, f"one of the profile's years ({', '.join(map(str, datasets))}, data.datasets)", year)

    for name in ("stage1", "stage2"):
        if not isinstance(cfg.get(name), dict):
            fail(f"training.{name}", "a section of fields (a mapping)", cfg.get(name))
    for name, stage, least in (("stage1", cfg["stage1"], 0), ("stage2", cfg["stage2"], 1)):
        where = f"training.{name}"
        if not _whole(stage.get("epochs"), least):
            fail(f"{where}.epochs", f"a whole number >= {least}", stage.get("epochs"))
        if stage.get("max_steps") is not None and not _whole(stage["max_steps"], 1):
            fail(f"{where}.max_steps", "null or a whole number >= 1", stage["max_steps"])
        for field in ("lr", "head_lr"):
            if not (_number(stage.get(field)) and stage[field] > 0):
                fail(f"{where}.{field}", "a positive number", stage.get(field))
        if stage.get("per_list") is not None and not _whole(stage["per_list"], 1):
            fail(f"{where}.per_list", "null or a whole number >= 1", stage["per_list"])
        known_loss(f"{where}.loss", stage.get("loss"))
    s2 = cfg["stage2"]
    for field, allowed in (("sampling", SAMPLINGS), ("labels", LABELS), ("cut", CUTS)):
        if s2.get(field) not in allowed:
            fail(f"training.stage2.{field}", f"one of {', '.join(allowed)}", s2.get(field))
    if s2.get("depth") is not None and not _whole(s2["depth"], 1):
        fail("training.stage2.depth", "null or a whole number >= 1", s2["depth"])
    for field in ("queries_per_batch", "gradient_accumulation_steps", "max_length", "eval_depth", "eval_batch_size"):
        if field in cfg and not _whole(cfg[field], 1):
            fail(f"training.{field}", "a whole number >= 1", cfg[field])
    for field in ("max_queries",):
        if cfg.get(field) is not None and not _whole(cfg[field], 1):
            fail(f"training.{field}", "null or a whole number >= 1", cfg[field])
    if "heldout_queries" in cfg and not _whole(cfg["heldout_queries"], 0):
        fail("training.heldout_queries", "a whole number >= 0", cfg["heldout_queries"])
    if "warmup_ratio" in cfg and not (_number(cfg["warmup_ratio"]) and 0 <= cfg["warmup_ratio"] <= 1):
        fail("training.warmup_ratio", "a number from 0 to 1", cfg["warmup_ratio"])
    if cfg.get("max_grad_norm") is not None and not (_number(cfg["max_grad_norm"]) and cfg["max_grad_norm"] >= 0):
        fail("training.max_grad_norm", "null or a number >= 0", cfg["max_grad_norm"])
    if "log_base" in cfg and cfg["log_base"] not in LOG_BASES:
        fail("training.log_base", f"one of {', '.join(map(str, LOG_BASES))}", cfg["log_base"])
    students = cfg.get("students")
    if not isinstance(students, list) or not students or not all(isinstance(x, dict) for x in students):
        fail("training.students", "a list of students ({name, loss, train_year, test_year})", students)
    for i, student in enumerate(students):
        known_loss(f"training.students[{i}].loss", student.get("loss"))
        known_year(f"training.students[{i}].train_year", student.get("train_year"))
        if "test_year" in student:
            known_year(f"training.students[{i}].test_year", student.get("test_year"))
    if loss is not None:
        known_loss("--loss", loss)
    if train_year is not None:
        known_year("--train-year", train_year)


def train_command(args) -> int:
    from .cli_types import print_json
    from .outputs import TRAINING_FOLDER, check_target
    from .profiles import load_profile

    profile = load_profile(args.profile, _parse_overrides(args.set))
    check_training_profile(profile, args.loss, args.train_year)  # everything, before any work
    if args.train_dataset:
        from .data import DataError

        if not Path(args.train_dataset).is_dir():
            raise DataError(f"--train-dataset {args.train_dataset}: no such dataset folder (rank-distillm build-dataset --out)")
    if args.out:
        check_target(args.out, TRAINING_FOLDER, force=args.force, inputs=[args.train_dataset])
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
