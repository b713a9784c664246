"""Multi-stage pipelines (MOAM, SimCLRv2, Noisy Student chaining) and teacher pseudo-labelling."""
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from s4l_jax import events, export, runner, train
from s4l_jax.data import pipeline as pipeline_lib
from testing_utils import ROOT, load_config, sigterm_during_step, tiny


def supervised(steps=2, **kw):
  c = tiny(load_config("supervised", "dataset=digits,labels=10pct"), steps=steps)
  c.update(kw)
  return c


def three_stage_config():
  c = ml_collections.ConfigDict()
  c.method = "chain"
  c.run_stages = "all"
  c.stages = ml_collections.ConfigDict(dict(
      a=supervised(), b=supervised(teacher="@a"), c=supervised(init_from="@b")))
  return c


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("chain"))
  return workdir, runner.run(three_stage_config(), workdir)


@pytest.mark.slow
def test_stages_chain_teacher_and_init(chained):
  workdir, results = chained
  assert set(results["stages"]) == {"a", "b", "c"}
  assert results["steps"] == 6 and results["top1"] == results["stages"]["c"]["top1"]
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["method"] == "chain"
  # Stage b trained on the pseudo-labels stage a's export gave every train image.
  with np.load(os.path.join(workdir, "b", "pseudo_labels.npz")) as f:
    labels, confidence = f["labels"], f["confidence"]
  data = pipeline_lib.InMemoryPipeline(supervised())
  predict, _ = export.load_predict(os.path.join(workdir, "a", "export"))
  logits = np.asarray(predict(jnp.asarray(data.train.images)))
  np.testing.assert_array_equal(labels, logits.argmax(-1))
  assert np.all((confidence > 0) & (confidence <= 1))
  with open(os.path.join(workdir, "b", "config.json")) as f:
    assert json.load(f)["pseudo_labels"].endswith("b/pseudo_labels.npz")
  # Stage c started from stage b's weights; its config records the reference as written.
  with open(os.path.join(workdir, "c", "config.json")) as f:
    assert json.load(f)["init_from"] == "@b"


@pytest.mark.slow
def test_copied_workdir_finds_its_stages(chained, tmp_path):
  """A finished pipeline copied elsewhere re-reports; one copied after its first stage
  resumes there, training the rest from the copy's own stage exports."""
  workdir, results = chained
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  again = runner.run(three_stage_config(), copy)
  assert again["top1"] == results["top1"]
  assert again["stages"]["c"]["wall_s"] == results["stages"]["c"]["wall_s"]  # not re-run
  partial = three_stage_config()
  partial.run_stages = "a"
  first = str(tmp_path / "first")
  runner.run(partial, first)
  moved = str(tmp_path / "moved")
  shutil.move(first, moved)
  resumed = runner.run(three_stage_config(), moved)
  assert set(resumed["stages"]) == {"a", "b", "c"}
  with open(os.path.join(moved, "b", "pseudo_labels.json")) as f:
    assert json.load(f)["teacher"] == os.path.join(moved, "a", "export")


@pytest.mark.slow
def test_stage_recorded_with_absolute_paths_still_resumes(chained, tmp_path):
  """config.json of older versions holds the resolved STAGE_ROOT/<stage>/export path."""
  workdir, results = chained
  old = str(tmp_path / "old")
  shutil.copytree(workdir, old)
  path = os.path.join(old, "c", "config.json")
  with open(path) as f:
    recorded = json.load(f)
  recorded["init_from"] = os.path.join(old, "b", "export")
  with open(path, "w") as f:
    json.dump(recorded, f)
  assert runner.run(three_stage_config(), old)["top1"] == results["top1"]


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_resumes_mid_pipeline(chained, tmp_path):
  workdir, results = chained
  again = runner.run(three_stage_config(), workdir)
  assert again["stages"]["a"]["wall_s"] == results["stages"]["a"]["wall_s"]  # not re-run
  # Interrupt after stage a: only a exists; the re-run continues with b and c.
  partial = three_stage_config()
  partial.run_stages = "a"
  fresh = str(tmp_path / "fresh")
  runner.run(partial, fresh)
  assert not os.path.exists(os.path.join(fresh, "b"))
  resumed = runner.run(three_stage_config(), fresh)
  assert set(resumed["stages"]) == {"a", "b", "c"}
  assert resumed["stages"]["b"]["resumed_from_step"] == 0


@pytest.mark.slow
def test_finished_stage_of_another_config_is_not_reused(chained):
  """A finished pipeline re-run with other stage settings stops instead of re-reporting."""
  workdir, results = chained
  changed = three_stage_config()
  changed.stages.a.seed = 1  # (total_steps may change: the recovery from a divergence)
  with pytest.raises(ValueError, match=r"a was started with another config \(seed: 0 -> 1"):
    runner.run(changed, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["top1"] == results["top1"]


@pytest.mark.slow
def test_unknown_stage_and_missing_teacher_fail_fast(tmp_path):
  c = three_stage_config()
  c.run_stages = "z"
  with pytest.raises(ValueError, match="z"):
    runner.run(c, str(tmp_path))
  with pytest.raises(FileNotFoundError, match="export"):
    runner.run(supervised(teacher=str(tmp_path / "nope")), str(tmp_path / "w"))
  with pytest.raises(ValueError, match=r"^init_from='@a': '@<stage>' names a stage's export"):
    runner.run(supervised(init_from="@a"), str(tmp_path / "w"))


def test_unknown_stage_is_named_with_the_arg_that_selects_it(tmp_path):
  c = three_stage_config()
  c.run_stages = "a+z"
  with pytest.raises(ValueError, match=r"^no stage z in this pipeline \(the config arg step=, "
                     r"or --config.run_stages\); its stages: a, b, c, or all$"):
    runner.run(c, str(tmp_path / "w"))


def test_run_refused_by_its_data_leaves_no_workdir(tmp_path):
  """Too many labels for digits: refused when the data is loaded, after config.json."""
  workdir = str(tmp_path / "w")
  with pytest.raises(ValueError, match="asks for"):
    runner.run(supervised(labels="5000"), workdir)
  assert not os.path.exists(workdir)
  os.makedirs(workdir)  # a workdir the run did not create keeps what it holds
  with pytest.raises(ValueError, match="asks for"):
    runner.run(supervised(labels="5000"), workdir)
  assert os.path.isdir(workdir)


def test_pseudo_label_threshold_keeps_confident_and_labeled(tmp_path):
  c = supervised()
  data = pipeline_lib.InMemoryPipeline(c)
  n = len(data.train.labels)
  rng = np.random.default_rng(0)
  path = str(tmp_path / "pl.npz")
  np.savez(path, labels=rng.integers(0, 10, n).astype(np.int32),
           confidence=rng.uniform(size=n).astype(np.float32))
  c.pseudo_labels, c.pseudo_label_threshold = path, 0.5
  student = pipeline_lib.InMemoryPipeline(c)
  with np.load(path) as f:
    expected = set(np.flatnonzero(f["confidence"] >= 0.5)) | set(data.labeled_indices)
  assert data.validation_indices.size  # held out of the student's stream too
  assert set(student.labeled_indices) == expected - set(data.validation_indices)
  truth = data.train.labels[data.labeled_indices]
  np.testing.assert_array_equal(student.train_labels[data.labeled_indices], truth)


@pytest.mark.slow
def test_moam_config_runs_three_steps_end_to_end(tmp_path):
  """configs/moam.py itself: step 1 (rotation+VAT+EntMin) -> pseudo-labels -> fine-tune."""
  c = load_config("moam", "dataset=digits,steps=2")
  for stage in c.stages.values():
    tiny(stage, steps=2)
  results = runner.run(c, str(tmp_path))
  assert list(results["stages"]) == ["step1", "step2", "step3"]
  assert results["stages"]["step1"]["method"] == "moam_step1"
  assert "ema_top1" in results["stages"]["step1"]["evals"]["test"]  # Polyak averaging is on
  assert "rot_avg_top1" in results["stages"]["step1"]["evals"]["test"]
  assert os.path.exists(tmp_path / "step2" / "pseudo_labels.npz")
  assert results["top1"] == results["stages"]["step3"]["top1"]
  assert os.path.exists(tmp_path / "step3" / "export" / "predict.jax")


def test_stage_order_follows_references_not_key_order():
  """A ConfigDict sorts its keys (student10 < student2 < teacher); stages run after the ones
  their `@` references name."""
  stages = {"teacher": supervised()}
  for i in range(1, 12):
    stages[f"student{i}"] = supervised(teacher="@" + list(stages)[-1])
  stages["zfinetune"] = supervised(init_from="@student11")
  config = ml_collections.ConfigDict(stages)
  assert list(config.keys())[:3] == ["student1", "student10", "student11"]
  assert runner.stage_order(config) == ["teacher"] + [f"student{i}" for i in range(1, 12)] + [
      "zfinetune"]
  assert runner.stage_order(three_stage_config().stages) == ["a", "b", "c"]
  config.student3.teacher = "@student30"
  with pytest.raises(ValueError, match=r"^stages.student3 references @student30, no stage"):
    runner.stage_order(config)
  config.student3.teacher, config.teacher.init_from = "@student2", "@student4"
  with pytest.raises(ValueError, match=r"^stages reference each other in a cycle: \['student1'"):
    runner.stage_order(config)


NOISY_STUDENT = ["--config=configs/noisy_student.py:dataset=digits,iterations=2,steps=3",
                 "--config.stages.student1.pseudo_label_temperature=2"]


def _digits_preset():
  """The digits images at the preset's 16 px, as the noisy_student stages see them."""
  return pipeline_lib.InMemoryPipeline(load_config("supervised", "dataset=digits"))


@pytest.fixture(scope="module")
def noisy_student(tmp_path_factory):
  """`python main.py --config=configs/noisy_student.py:dataset=digits,iterations=2,steps=3`."""
  workdir = str(tmp_path_factory.mktemp("noisy_student"))
  proc = subprocess.run([sys.executable, "main.py", f"--workdir={workdir}", *NOISY_STUDENT],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc.stdout


@pytest.mark.slow
def test_noisy_student_config_runs_teacher_and_students_end_to_end(noisy_student):
  workdir, stdout = noisy_student
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert list(results["stages"]) == ["teacher", "student1", "student2"]
  assert results["method"] == "noisy_student" and results["steps"] == 9
  assert results["top1"] == results["stages"]["student2"]["top1"]
  assert f"top-1 {100 * results['top1']:.2f}%" in stdout
  for stage, teacher in (("student1", "teacher"), ("student2", "student1")):
    with open(os.path.join(workdir, stage, "config.json")) as f:
      config = json.load(f)
    assert config["teacher"] == f"@{teacher}"  # recorded as written (a copy resumes)
    assert (config["model"]["dropout"], config["model"]["stochastic_depth"]) == (0.2, 0.9)
    assert config["pseudo_label_type"] == "soft"


@pytest.mark.slow
@pytest.mark.parametrize("stage, teacher, temperature", [("student1", "teacher", 2.0),
                                                         ("student2", "student1", 1.0)])
def test_noisy_student_soft_labels_are_the_teachers_tempered_softmax(noisy_student, stage,
                                                                     teacher, temperature):
  workdir, _ = noisy_student
  with np.load(os.path.join(workdir, stage, "pseudo_labels.npz")) as f:
    probs, labels, confidence = f["probs"].astype(np.float64), f["labels"], f["confidence"]
  images = _digits_preset().train.images
  predict, _ = export.load_predict(os.path.join(workdir, teacher, "export"))
  logits = np.asarray(predict(jnp.asarray(images)), np.float64)
  softmax = lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(
      z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=5e-3)  # stored as float16
  np.testing.assert_allclose(probs, softmax(logits / temperature), atol=1e-3)
  np.testing.assert_array_equal(labels, logits.argmax(-1))
  np.testing.assert_allclose(confidence, softmax(logits).max(-1), rtol=1e-5)


@pytest.mark.slow
def test_noisy_student_export_is_the_noiseless_eval(noisy_student):
  """The student trains with dropout and stochastic depth; its export and its in-process
  evaluation are noiseless and agree; training passes with different rngs differ."""
  workdir, _ = noisy_student
  export_dir = os.path.join(workdir, "student2", "export")
  model, variables, description = export.load_model(export_dir)
  assert (description["model"]["dropout"], description["model"]["stochastic_depth"]) == (0.2, 0.9)
  images = _digits_preset().test.images[:32]
  x = export.to_model_input(jnp.asarray(images))
  evaluate = lambda: np.asarray(model.apply(variables, x, train=False)["classes"])
  np.testing.assert_array_equal(evaluate(), evaluate())
  predict, _ = export.load_predict(export_dir)
  np.testing.assert_allclose(np.asarray(predict(jnp.asarray(images))), evaluate(),
                             rtol=1e-5, atol=1e-5)
  train = lambda seed: np.asarray(model.apply(
      variables, x, train=True, mutable=["batch_stats"],
      rngs={"dropout": jax.random.PRNGKey(seed)})[0]["classes"])
  assert not np.allclose(train(0), train(1))


@pytest.mark.slow
def test_noisy_student_separate_batches_train_end_to_end(tmp_path):
  """`pseudo_ratio=2`: the student draws its ground truth and its pseudo-labelled images in
  two streams (16 + 32 a step) and logs both losses; the teacher keeps one stream."""
  config = load_config("noisy_student", "dataset=digits,iterations=1,steps=3,pseudo_ratio=2")
  for stage in config.stages.values():
    tiny(stage, steps=3, batch=16)
  config.stages.student1.input.pseudo.batch_size = 32
  config.stages.student1.pseudo_label_threshold = 0.0  # a 3-step teacher is near chance
  results = runner.run(config, str(tmp_path))
  assert list(results["stages"]) == ["teacher", "student1"]
  student = events.read_scalars(str(tmp_path / "student1"))
  np.testing.assert_allclose(student["loss"][-1][1],
                             student["sup_loss"][-1][1] + student["pseudo_loss"][-1][1],
                             rtol=1e-5)
  assert "pseudo_loss" not in events.read_scalars(str(tmp_path / "teacher"))
  with open(tmp_path / "student1" / "pseudo_labels.json") as f:
    assert json.load(f)["num_images"] > 0


@pytest.mark.slow
def test_simclrv2_config_runs_three_stages_and_resumes_mid_pipeline(tmp_path):
  """configs/simclrv2.py: pretrain (NT-Xent) -> fine-tune from proj_1 -> distill, resumed after
  the first stage; the fine-tuning starts from the pretrained encoder and first projection
  layer with a zero classifier, and the student learns from the fine-tuned export."""
  def config(arg):
    c = load_config("simclrv2", f"dataset=digits,steps=2{arg}")
    for stage in c.stages.values():
      tiny(stage, steps=2)
    return c
  first = runner.run(config(",step=1"), str(tmp_path))
  assert list(first["stages"]) == ["pretrain"] and not os.path.exists(tmp_path / "finetune")
  results = runner.run(config(""), str(tmp_path))
  assert list(results["stages"]) == ["pretrain", "finetune", "distill"]
  assert results["stages"]["pretrain"]["wall_s"] == first["stages"]["pretrain"]["wall_s"]
  assert results["method"] == "simclrv2" and results["top1"] == results["stages"]["distill"]["top1"]
  with open(tmp_path / "distill" / "config.json") as f:
    assert json.load(f)["frozen_teacher"] == "@finetune"  # recorded as written

  from s4l_jax import initialization  # pylint: disable=g-import-not-at-top
  from s4l_jax.models import build_model  # pylint: disable=g-import-not-at-top
  finetune = config("").stages.finetune
  model = build_model(finetune.model, 10)
  start = initialization.init_variables(model, (8, 8, 3), jax.random.PRNGKey(0),
                                        init_from=str(tmp_path / "pretrain" / "export"),
                                        init_take=finetune.init_take)["params"]
  pretrained = export.load_variables(str(tmp_path / "pretrain" / "export"))["params"]
  assert set(start) == {"trunk", "head_proj_1", "head_classes"}
  for name in ("trunk", "head_proj_1"):
    jax.tree.map(np.testing.assert_array_equal, start[name], pretrained[name])
  jax.tree.map(lambda w: np.testing.assert_array_equal(w, 0.0), start["head_classes"])
  described = export.load_description(str(tmp_path / "finetune" / "export"))
  assert described["model"]["heads"]["classes"]["input"] == "proj_1"


@pytest.mark.slow
def test_simclrv2_memory_runs_end_to_end_and_resumes_bit_identically(tmp_path):
  """`simclrv2.py:dataset=digits,memory=96` (3 steps of keys): the pretraining stage interrupted
  after step 2 and resumed ends in the checkpoint of an uninterrupted run bit for bit, its queue
  (objective_state) still holding step 2's keys; the queue is never exported; fine-tuning and
  distillation follow."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  def config(arg):
    c = load_config("simclrv2", f"dataset=digits,memory=96{arg}")
    for stage in c.stages.values():
      tiny(stage, steps=2)
    tiny(c.stages.pretrain, steps=4)
    return c
  full, resumed = tmp_path / "full", tmp_path / "resumed"
  runner.run(config(",step=1"), str(full))

  with sigterm_during_step(2):
    with pytest.raises(SystemExit, match="SIGTERM: saved step 2"):
      runner.run(config(",step=1"), str(resumed))
  results = runner.run(config(""), str(resumed))
  assert results["stages"]["pretrain"]["resumed_from_step"] == 2
  assert list(results["stages"]) == ["pretrain", "finetune", "distill"]

  with ocp.StandardCheckpointer() as checkpointer:
    a, b = (checkpointer.restore(str(d / "pretrain" / "checkpoints" / "4" / "default"))
            for d in (full, resumed))
  assert a["objective_state"]["queue"].shape == (96, 128)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  exported = export.load_variables(str(resumed / "pretrain" / "export"))
  assert set(exported) == {"params", "batch_stats"}
  jax.tree.map(np.testing.assert_array_equal, exported["params"], b["ema_params"])
