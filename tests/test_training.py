"""Training: profiles' batch arithmetic, held-out split, real lists, short real training runs."""

from __future__ import annotations

import json

import pytest
import torch

from rank_distillm import training
from rank_distillm.profiles import PROFILES, load_profile


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(**overrides):
    """The smoke profile cut further, for training runs of a few seconds."""
    base = {
        "training.max_queries": 4, "training.heldout_queries": 0, "training.max_length": 48,
        "training.stage1": dict(load_profile("smoke")["training"]["stage1"], epochs=0),
    }
    base.update(overrides)
    return load_profile("smoke", base)


def _weights(path_or_model):
    from rank_distillm.student import load_student

    model = load_student(path_or_model) if not hasattr(path_or_model, "model") else path_or_model
    return {k: v.detach().clone() for k, v in model.model.state_dict().items()}


def test_gpu_profile_is_the_papers_batch():
    p = load_profile("gpu")["training"]
    b = training.batch_arithmetic(p)
    assert b["queries_per_step"] == 32 and b["passages_per_query"] == 100 and b["pairs_per_step"] == 3200
    assert p["stage2"]["lr"] == 1e-5 and p["stage2"]["epochs"] == 3 and p["bf16"] is True
    assert p["model"] == "google/electra-base-discriminator"
    assert {s["loss"] for s in p["students"]} == {"ranknet", "adr-mse"}
    assert p["stage1"]["loss"] == "infonce" and p["stage1"]["negatives"] == 7


def test_last_checkpoint_is_kept_without_heldout_selection(data_dir, tmp_path):
    """selection: last (the paper's): held-out scores are logged, the last epoch's model is kept."""
    stage2 = dict(load_profile("smoke")["training"]["stage2"], epochs=2, per_list=4)
    p = load_profile("smoke", {"training.max_queries": 5, "training.max_length": 48, "training.selection": "last",
                               "training.stage1": dict(load_profile("smoke")["training"]["stage1"], epochs=0),
                               "training.stage2": stage2})
    r = training.train_student(p, out_dir=tmp_path / "run")
    m = r.metrics["stages"]["stage2"]
    assert m["selection"] == "last" and m["best_checkpoint"] is None and len(m["heldout_ndcg10"]) == 2
    last = max((tmp_path / "run" / "stage2").glob("checkpoint-*"), key=lambda c: int(c.name.split("-")[1]))
    assert int(last.name.split("-")[1]) == m["steps"]
    a, b = _weights(r.model_path), _weights(str(last))
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    with pytest.raises(ValueError, match="training.selection"):
        training.training_lists(load_profile("smoke", {"training.selection": "best"}), "dl20")


def test_every_profile_names_students_with_known_years():
    for name in PROFILES:
        p = load_profile(name)
        for s in p["training"]["students"]:
            assert s["train_year"] != s["test_year"], (name, s)
            assert {s["train_year"], s["test_year"]} <= set(p["data"]["datasets"]), (name, s)


def test_split_heldout_is_seeded_and_disjoint():
    qids = [str(i) for i in range(20)]
    train, held = training.split_heldout(qids, 5, seed=1)
    assert len(held) == 5 and not set(train) & set(held) and set(train) | set(held) == set(qids)
    assert training.split_heldout(qids, 5, seed=1) == (train, held)
    assert training.split_heldout(qids, 5, seed=2)[1] != held
    with pytest.raises(ValueError, match="heldout_queries"):
        training.split_heldout(qids, 20, seed=1)


def test_training_lists_keep_heldout_queries_out(data_dir):
    p = load_profile("smoke")
    lists = training.training_lists(p, "dl20")
    held = {c.qid for c in lists["heldout"]}
    assert len(held) == p["training"]["heldout_queries"]
    assert not held & set(lists["stage2"]["qid"]) and not held & set(lists["stage1"]["qid"])
    # stage 2: labels follow the teacher's order (rank labels, descending), stage 1: qrels grades
    for labels in lists["stage2"]["labels"]:
        assert labels == sorted(labels, reverse=True) and len(labels) == p["training"]["stage2"]["per_list"]
    assert all(0 <= g <= 3 for row in lists["stage1"]["labels"] for g in row)


def test_unknown_source_is_a_clear_error(data_dir):
    p = _tiny(**{"training.stage2": dict(load_profile("smoke")["training"]["stage2"], source="nope")})
    with pytest.raises(ValueError, match="training.stage2.source"):
        training.training_lists(p, "dl20")


def test_training_fits_a_real_list(data_dir, tmp_path):
    """Ten steps on one real teacher list: the RankNet loss on that list must fall, weights change."""
    from sentence_transformers.cross_encoder.losses import RankNetLoss

    stage2 = dict(load_profile("smoke")["training"]["stage2"], epochs=1, lr=3e-4, head_lr=3e-3)
    p = _tiny(**{"training.stage2": stage2, "training.max_queries": 1, "training.warmup_ratio": 0.0,
                 "training.queries_per_batch": 1})
    ds = training.training_lists(p, "dl20")["stage2"]
    assert len(ds) == 1
    model = training.new_model(p["training"])
    before = _weights(model)
    loss = RankNetLoss(model)

    def value():
        with torch.no_grad():
            model.model.eval()
            return float(loss([ds["query"], ds["docs"]], [torch.tensor(x) for x in ds["labels"]]))

    start = value()
    m = training.train_stage(model, ds.select([0] * 10), loss_name="ranknet", stage=stage2, cfg=p["training"], out_dir=tmp_path / "s2")
    end = value()
    assert end < 0.7 * start, (start, end)
    after = _weights(model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert m["steps"] == 10 and len(m["train_loss"]) == 10 and m["pairs_per_s"] > 0


def test_train_student_writes_model_and_metrics(data_dir, tmp_path):
    p = load_profile("smoke", {"training.max_queries": 5, "training.max_length": 48})
    r = training.train_student(p, out_dir=tmp_path / "run")
    assert (r.model_path / "config.json").is_file()
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["stages"].keys() == {"stage1", "stage2"}
    for stage in saved["stages"].values():
        assert stage["train_loss"] and stage["heldout_ndcg10"] and 0 <= stage["heldout_ndcg10"][0]["ndcg@10"] <= 1
    assert saved["wall_s"] > 0 and saved["pairs_per_s"] > 0 and len(saved["heldout_qids"]) == 2
    # a rerun loads the finished student instead of training again
    again = training.train_student(p, out_dir=tmp_path / "run")
    assert again.metrics == saved


def test_resume_after_interruption_gives_the_same_weights(data_dir, tmp_path):
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 2:  # after the first epoch's checkpoint (2 steps)
                raise KeyboardInterrupt

    stage2 = dict(load_profile("smoke")["training"]["stage2"], epochs=2)
    p = _tiny(**{"training.stage2": stage2})
    full = training.train_student(p, out_dir=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        training.train_student(p, out_dir=tmp_path / "cut", callbacks=[Interrupt()])
    assert (tmp_path / "cut" / "stage2" / "checkpoint-2").is_dir() and not (tmp_path / "cut" / "final").exists()
    resumed = training.train_student(p, out_dir=tmp_path / "cut")
    assert resumed.metrics["stages"]["stage2"]["resumed_from"].endswith("checkpoint-2")
    a, b = _weights(full.model_path), _weights(resumed.model_path)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_trained_students_cache(data_dir, tmp_path, monkeypatch):
    home = training.data.setup_ir_datasets()  # keep using the shared copy, not a new one in tmp_path
    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path))
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))
    monkeypatch.delenv("_RANK_DISTILLM_IRDS", raising=False)
    p = _tiny(**{"training.stage2": dict(load_profile("smoke")["training"]["stage2"], per_list=4)})
    with pytest.raises(FileNotFoundError, match="not trained yet"):
        training.trained_students(p, train=False)
    (s,) = training.trained_students(p)
    assert s.path.is_dir() and s.path.parent.parent == tmp_path / "students" and s.train_year == "dl20"
    assert not list((tmp_path / "students").glob("*.partial"))
    stamp = (s.path / "config.json").stat().st_mtime_ns
    (again,) = training.trained_students(p, train=False)
    assert again.path == s.path and (s.path / "config.json").stat().st_mtime_ns == stamp
    other = _tiny(**{"training.seed": 7})
    assert training.student_dir(other, other["training"]["students"][0]) != s.path.parent


def test_cli_reports_bad_input(capsys, tmp_path):
    from rank_distillm import cli

    assert cli.main(["train", "--profile", "smoke", "--set", "training.stage2.epochz=1"]) == 2
    assert "unknown field 'epochz'" in capsys.readouterr().err
    assert cli.main(["train", "--profile", "smoke", "--train-dataset", str(tmp_path / "none")]) == 2
    assert "--train-dataset" in capsys.readouterr().err


def test_students_trained_in_parallel_processes_equal_sequential_ones(data_dir, tmp_path, monkeypatch):
    """workers=2: each student in its own process; the same weights as training it here."""
    home = training.data.setup_ir_datasets()
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))
    monkeypatch.delenv("_RANK_DISTILLM_IRDS", raising=False)
    students = [
        {"name": "a", "loss": "ranknet", "train_year": "dl20", "test_year": "dl19"},
        {"name": "b", "loss": "listnet", "train_year": "dl20", "test_year": "dl19"},
    ]
    p = _tiny(**{"training.stage2": dict(load_profile("smoke")["training"]["stage2"], per_list=4), "training.students": students})
    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path / "parallel"))
    parallel = training.trained_students(p, workers=2)
    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path / "sequential"))
    sequential = training.trained_students(p, workers=1)
    assert [s.name for s in parallel] == ["a", "b"] and all(s.path.is_dir() for s in parallel)
    assert not list((tmp_path / "parallel" / "students").glob("*.partial"))
    for par, seq in zip(parallel, sequential):
        a, b = _weights(par.path), _weights(seq.path)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)




def test_the_heads_learning_rate_goes_through_the_trainers_own_parameter_groups(minilm_path, tmp_path):
    """``learning_rate_mapping`` gives the new classifier head its own rate; the trainer's AdamW groups keep
    weight decay off for biases and LayerNorm weights (the library's rule), on for every other weight."""
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    from rank_distillm.losses import make_loss
    from rank_distillm.student import build_student

    model = build_student(minilm_path, head="classifier", max_length=32)
    mapping = training.head_learning_rate(model, 1e-4, 1e-3)
    assert list(mapping.values()) == [1e-3]
    assert training.head_learning_rate(model, 1e-4, None) == training.head_learning_rate(model, 1e-4, 1e-4) == {}
    assert training.head_learning_rate(build_student(minilm_path, head="segment-cosine", max_length=32), 1e-4, 1e-3) == {}
    args = CrossEncoderTrainingArguments(output_dir=str(tmp_path), learning_rate=1e-4, learning_rate_mapping=mapping,
                                         weight_decay=training.WEIGHT_DECAY, report_to="none", use_cpu=True)
    trainer = CrossEncoderTrainer(model=model, args=args, loss=make_loss("ranknet", model))
    groups = trainer.create_optimizer().param_groups
    setting = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert len(setting) == len(names)
    for name, p in names.items():
        lr, decay = setting[id(p)]
        assert lr == (1e-3 if ".classifier." in f".{name}" else 1e-4), name
        assert decay == (0.0 if name.endswith("bias") or "LayerNorm" in name else 0.01), name


@pytest.mark.parametrize("scores, chosen", [([0.9, 0.5, 0.6], 0), ([0.5, 0.6, 0.7], 2), ([0.5, 0.8, 0.8], 1)])
def test_heldout_selection_has_epoch_0_as_a_candidate(data_dir, tmp_path, scores, chosen):
    """selection: heldout: the model before the stage (epoch 0) is scored and competes with every epoch; ties:
    the fewest epochs (crossval.choose_epochs). The evaluator here replays given held-out scores, one a call."""
    from sentence_transformers.evaluation import SentenceEvaluator

    from rank_distillm.crossval import choose_epochs

    class Replay(SentenceEvaluator):
        def __init__(self):
            super().__init__()
            self.name, self.primary_metric, self.calls = "heldout", "ndcg@10", iter(scores)

        def __call__(self, model, output_path=None, epoch=-1, steps=-1) -> dict:
            return self.prefix_name_to_metrics({"ndcg@10": next(self.calls)}, self.name)

    stage2 = dict(load_profile("smoke")["training"]["stage2"], epochs=2, per_list=4)
    p = _tiny(**{"training.stage2": stage2, "training.selection": "heldout"})
    ds = training.training_lists(p, "dl20")["stage2"]
    model = training.new_model(p["training"])
    start = _weights(model)
    m = training.train_stage(model, ds, loss_name="ranknet", stage=stage2, cfg=p["training"], out_dir=tmp_path / "s2",
                             evaluator=Replay())
    assert [h["ndcg@10"] for h in m["heldout_ndcg10"]] == scores and m["heldout_ndcg10"][0]["epoch"] == 0
    assert m["chosen_epoch"] == choose_epochs(scores) == chosen
    kept = _weights(model)
    same = all(torch.equal(start[k], kept[k]) for k in start)
    assert same == (chosen == 0)  # epoch 0 chosen: the stage leaves the model as it came

def test_training_prints_no_log_dicts_and_keeps_its_progress_bar(data_dir, tmp_path, capfd):
    """A page shows the progress bar, not a ``{'loss': ...}`` line per logging step; the losses stay in the metrics."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    stage2 = dict(load_profile("smoke")["training"]["stage2"], epochs=1)
    p = _tiny(**{"training.stage2": stage2, "training.max_queries": 1, "training.warmup_ratio": 0.0,
                 "training.queries_per_batch": 1, "training.logging_steps": 1, "training.progress_bar": True})
    ds = training.training_lists(p, "dl20")["stage2"]
    model = training.new_model(p["training"])
    capfd.readouterr()
    m = training.train_stage(model, ds.select([0] * 4), loss_name="ranknet", stage=stage2, cfg=p["training"],
                             out_dir=tmp_path / "s2", checkpoints=False)
    out = capfd.readouterr()
    printed = out.out + out.err
    assert len(m["train_loss"]) == 4
    assert "{'loss'" not in printed and "'epoch'" not in printed, printed[-500:]
    assert "it/s]" in printed or "s/it]" in printed, "the progress bar is gone"

    class Fake:
        def __init__(self):
            self.callbacks = [ProgressCallback(), PrinterCallback()]

        def pop_callback(self, cls):
            found = next((c for c in self.callbacks if isinstance(c, cls)), None)
            if found is not None:
                self.callbacks.remove(found)
            return found

        def add_callback(self, cls):
            self.callbacks.append(cls())

    quiet = training.quiet_logs(Fake()).callbacks
    assert len(quiet) == 1 and isinstance(quiet[0], ProgressCallback) and type(quiet[0]) is not ProgressCallback
