"""Trainer: sharded == single-device step, resume == uninterrupted, export == in-process."""
import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import config_lib, distributed, export, objectives, optim, runner, train
from s4l_jax import train_state
from s4l_jax.models import build_model
from testing_utils import load_config, sigterm_during_step, tiny, write_image_folder


def digits_config(**kw):
  c = tiny(load_config("supervised", "dataset=digits,labels=10pct"), **kw)
  c.eval_every_steps = 0
  return c


@pytest.mark.slow
def test_sharded_step_matches_single_device():
  """One step on 8 devices (global BN) == the same step on 1 device, to float32 round-off."""
  assert jax.device_count() == 8
  config = digits_config(batch=32)
  model = build_model(config.model, 10)
  variables = jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)),
                                        train=False))
  schedule = optim.make_schedule(config.lr, 0.1, 10, 100)
  tx = optim.make_optimizer(config.optimizer, schedule, variables["params"])
  step = train.make_train_step(model, objectives.get("supervised"), tx, config, decay=0.9)
  rng = np.random.default_rng(0)
  raw = {"labeled": {"image": rng.integers(0, 256, (32, 8, 8, 3), dtype=np.uint8),
                     "label": rng.integers(0, 10, (32,)).astype(np.int32)}}
  outs = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = distributed.make_mesh(devices)
    repl = distributed.replicated(mesh)
    state = jax.device_put(train_state.create(variables, tx, use_ema=True), repl)
    jitted = jax.jit(step, in_shardings=(repl, distributed.data_sharding(mesh), repl),
                     out_shardings=(repl, repl))
    batch = distributed.to_global(raw, mesh)
    assert len(batch["labeled"]["image"].sharding.device_set) == len(devices)
    outs.append(jax.device_get(jitted(state, batch, {})))
  (s1, m1), (s8, m8) = outs
  np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-6)
  np.testing.assert_allclose(m1["grad_norm"], m8["grad_norm"], rtol=1e-5)
  # Params after one update (= gradients, through SGD), BN running stats and EMA.
  for a, b in zip(jax.tree.leaves((s1.params, s1.batch_stats, s1.ema_params)),
                  jax.tree.leaves((s8.params, s8.batch_stats, s8.ema_params))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("full"))
  return workdir, runner.run(digits_config(steps=6), workdir)


@pytest.mark.slow
def test_run_writes_results_config_and_export(uninterrupted):
  workdir, results = uninterrupted
  with open(os.path.join(workdir, "results.json")) as f:
    on_disk = json.load(f)
  for key in ("method", "dataset", "labels", "steps", "top1", "top5", "wall_s", "images_per_s"):
    assert key in on_disk
  assert on_disk["steps"] == 6 and on_disk["top1"] == results["top1"]
  assert 0.0 <= on_disk["top1"] <= on_disk["top5"] <= 1.0
  # top1 / top5: the final test numbers; validation_*: those of the held-out train images.
  assert set(on_disk["evals"]) == {"validation", "test"}
  assert on_disk["evals"]["test"] == dict(top1=on_disk["top1"], top5=on_disk["top5"])
  assert on_disk["evals"]["validation"] == dict(top1=on_disk["validation_top1"],
                                                top5=on_disk["validation_top5"])
  assert on_disk["num_validation"] == 145  # 10% of each class of digits' 1,437 train images
  assert os.path.exists(os.path.join(workdir, "config.json"))
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  description = export.load_description(os.path.join(workdir, "export"))
  assert description["input_size"] == [8, 8, 3] and len(description["class_names"]) == 10


@pytest.mark.slow
@pytest.mark.parametrize("lost", ["export/predict.jax", "export/variables", "results.json"])
def test_finished_run_missing_a_result_rewrites_it_from_the_final_checkpoint(
    uninterrupted, tmp_path, lost, caplog):
  """"Finished" means results.json and a complete export: a re-run restores what was deleted
  from the final checkpoint (same weights, same accuracy), and says so."""
  workdir = str(tmp_path / "w")
  shutil.copytree(uninterrupted[0], workdir)
  path = os.path.join(workdir, *lost.split("/"))
  shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
  assert train.unfinished_parts(workdir)
  results = runner.run(digits_config(steps=6), workdir)
  assert not train.unfinished_parts(workdir)
  assert any(f"lacks {lost}" in r.getMessage() for r in caplog.records)
  assert results["top1"] == uninterrupted[1]["top1"]
  got = export.load_variables(os.path.join(workdir, "export"))
  want = export.load_variables(os.path.join(uninterrupted[0], "export"))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_resume_gives_identical_weights(uninterrupted, tmp_path):
  full_dir, full = uninterrupted
  workdir = str(tmp_path / "resumed")
  with sigterm_during_step(3):
    with pytest.raises(SystemExit, match="SIGTERM: saved step 3"):
      train.run(digits_config(steps=6), workdir)
  resumed = runner.run(digits_config(steps=6), workdir)
  assert resumed["resumed_from_step"] == 3
  a = export.load_variables(os.path.join(full_dir, "export"))
  b = export.load_variables(os.path.join(workdir, "export"))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert resumed["top1"] == full["top1"] and resumed["top5"] == full["top5"]


@pytest.mark.slow
def test_export_reproduces_in_process_logits(uninterrupted):
  workdir, results = uninterrupted
  export_dir = os.path.join(workdir, "export")
  predict, _ = export.load_predict(export_dir)
  config = digits_config(steps=6)
  model = build_model(config.model, 10)
  variables = export.load_variables(export_dir)
  images = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
  expected = model.apply(variables, export.to_model_input(jnp.asarray(images)), train=False)
  np.testing.assert_allclose(predict(images), expected["classes"], rtol=1e-5, atol=1e-5)
  from s4l_jax import evaluate  # pylint: disable=g-import-not-at-top
  scored = evaluate.evaluate_export(export_dir, "digits", rotation_average=True)
  assert scored["count"] == 360
  assert scored["top1"] == pytest.approx(results["top1"], abs=1e-9)
  assert scored["top5"] == pytest.approx(results["top5"], abs=1e-9)
  held_out = evaluate.evaluate_export(export_dir, "digits", split="validation")
  assert held_out["count"] == results["num_validation"]
  assert held_out["top1"] == pytest.approx(results["validation_top1"], abs=1e-9)
  assert held_out["top5"] == pytest.approx(results["validation_top5"], abs=1e-9)
  # Rotation averaging, recomputed independently: numpy rot90 of the test images.
  from s4l_jax.data import sources  # pylint: disable=g-import-not-at-top
  test = sources.load_split("digits", "test", image_size=8)
  mean_logits = np.mean([predict(np.ascontiguousarray(np.rot90(test.images, k, axes=(1, 2))))
                         for k in range(4)], axis=0)
  assert scored["rot_avg_top1"] == pytest.approx(np.mean(mean_logits.argmax(1) == test.labels),
                                                 abs=1e-9)


@pytest.mark.slow
def test_folder_dataset_smoke(tmp_path):
  root = write_image_folder(tmp_path / "imgs")
  config = tiny(load_config("supervised", f"dataset=folder:{root},labels=all"), steps=3,
                batch=8)
  config.input.eval_batch_size = 8
  results = runner.run(config, str(tmp_path / "w"))
  assert results["num_labeled"] == 33 and results["steps"] == 3  # 36 less 10% validation
  assert results["evals"]["test"]["top1"] >= 0.0
  assert np.isfinite(results["top1"])


@pytest.mark.slow
def test_nan_loss_stops_without_checkpointing_it(tmp_path):
  config = digits_config(steps=6)
  config.lr.base = 1e30  # diverges within a step or two
  config.lr.warmup_epochs = 0.0
  with pytest.raises(FloatingPointError, match="step"):
    runner.run(config, str(tmp_path))
  from s4l_jax import checkpointing  # pylint: disable=g-import-not-at-top
  steps = checkpointing.Checkpointer(str(tmp_path / "checkpoints"), 2, 2)
  latest = steps.latest_step()
  assert latest is None or latest < 6
  assert not os.path.exists(tmp_path / "results.json")


@pytest.mark.slow
def test_in_memory_training_never_imports_tensorflow(tmp_path):
  """GPU machines often have no TensorFlow: a digits run must not import it."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  script = f"""
import sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
from testing_utils import load_config, tiny
from s4l_jax import runner
c = tiny(load_config("supervised", "dataset=digits"), steps=2)
print("top1", runner.run(c, {str(tmp_path)!r})["top1"])
print("loaded", sorted(m for m in sys.modules if m.split(".")[0].startswith("tensorflow")))
"""
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "top1" in proc.stdout
  assert "loaded []" in proc.stdout, proc.stdout
  assert os.path.exists(tmp_path / "export" / "predict.jax")


@pytest.mark.slow
def test_divergence_guard_covers_batch_norm_statistics():
  """Poisoned BN running statistics leave loss, gradients and params finite (train mode uses the
  batch's statistics), so only batch_stats_norm shows them; the guard must stop on it."""
  config = digits_config(batch=16)
  model = build_model(config.model, 10)
  variables = jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)),
                                        train=False))
  assert jax.tree.leaves(variables["batch_stats"])
  tx = optim.make_optimizer(config.optimizer, optim.make_schedule(config.lr, 0.1, 10, 100),
                            variables["params"])
  step = jax.jit(train.make_train_step(model, objectives.get("supervised"), tx, config, 0.0))
  rng = np.random.default_rng(0)
  raw = {"labeled": {"image": rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8),
                     "label": rng.integers(0, 10, (16,)).astype(np.int32)}}
  state = train_state.create(variables, tx, use_ema=False)
  new_state, metrics = jax.device_get(step(state, raw, {}))
  import optax  # pylint: disable=g-import-not-at-top
  np.testing.assert_allclose(metrics["batch_stats_norm"], optax.tree.norm(new_state.batch_stats),
                             rtol=1e-6)
  assert metrics["batch_stats_norm"] > 0
  train.DivergenceGuard(100.0).check(metrics, 1, "hint")  # healthy: no error

  leaves, treedef = jax.tree.flatten(variables["batch_stats"])
  leaves[0] = np.full_like(leaves[0], np.nan)
  poisoned = state.replace(batch_stats=jax.tree.unflatten(treedef, leaves))
  _, metrics = jax.device_get(step(poisoned, raw, {}))
  for key in ("loss", "grad_norm", "param_norm"):
    assert np.isfinite(metrics[key]), key
  assert not np.isfinite(metrics["batch_stats_norm"])
  with pytest.raises(FloatingPointError) as e:
    train.DivergenceGuard(100.0).check(metrics, 7, "A re-run resumes from step 6.")
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith("batch_stats_norm is nan at step 7")
  assert message.endswith("A re-run resumes from step 6.")


def test_divergence_guard_stops_a_loss_far_above_its_running_median():
  """Over the last 5 losses: 300 passes a median of 3 at factor 100, 401 stops a median of 4;
  below 5 losses or
  with factor 0 nothing but non-finite values stops; a median under 1 counts as 1."""
  guard = train.DivergenceGuard(100.0, window=5, min_history=5)
  for step, loss in enumerate([1e6, 2.0, 3.0, 4.0, 5.0], 1):  # too few to judge the first
    guard.check({"loss": loss}, step, "")
  guard.check({"loss": 1.0}, 6, "")  # window now [2, 3, 4, 5, 1]: median 3
  guard.check({"loss": 300.0}, 7, "")
  with pytest.raises(train.DivergenceError, match=r"loss 401 at step 8 is over 100x its running "
                     r"median 4 .*Hint\.$"):
    guard.check({"loss": 401.0}, 8, "Hint.")  # window [3, 4, 5, 1, 300]: median 4
  small = train.DivergenceGuard(100.0, min_history=2)
  small.check({"loss": 0.01}, 1, "")
  small.check({"loss": 0.02}, 2, "")
  small.check({"loss": 99.0}, 3, "")  # 100 x max(0.015, 1)
  with pytest.raises(train.DivergenceError):
    small.check({"loss": 101.0}, 4, "")
  off = train.DivergenceGuard(0.0, min_history=1)
  for step, loss in enumerate([1.0, 1e30], 1):
    off.check({"loss": loss}, step, "")
  with pytest.raises(train.DivergenceError, match="loss is inf at step 3"):
    off.check({"loss": np.inf}, 3, "")


def test_batch_stats_norm_is_zero_without_batch_norm():
  """A model without BatchNorm has no statistics: the metric is 0.0, not an error."""
  import types  # pylint: disable=g-import-not-at-top

  def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
    del rng, model, loss_config, aux
    loss = jnp.mean(jnp.square(params["w"] - batch["labeled"]["label"].astype(jnp.float32)))
    return objectives.LossOutput(loss, batch_stats, {})
  objective = types.SimpleNamespace(loss_fn=loss_fn, REQUIRES=objectives.Requirements(),
                                    LOSS_KEYS={})
  config = digits_config(batch=4)
  params = {"w": jnp.ones((4,))}
  tx = optim.make_optimizer(config.optimizer, optim.make_schedule(config.lr, 0.1, 10, 100),
                            params)
  step = jax.jit(train.make_train_step(None, objective, tx, config, 0.0))
  state = train_state.create({"params": params}, tx, use_ema=False)
  raw = {"labeled": {"image": np.zeros((4, 8, 8, 3), np.uint8),
                     "label": np.arange(4, dtype=np.int32)}}
  _, metrics = jax.device_get(step(state, raw, {}))
  assert float(metrics["batch_stats_norm"]) == 0.0
  train.DivergenceGuard(100.0).check(metrics, 1, "")


@pytest.mark.slow
def test_frozen_teacher_from_an_export_is_an_input_not_state(uninterrupted, tmp_path):
  """`frozen_teacher`: rebuilt from its export, read through aux["teacher"], never checkpointed."""
  import sys  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  teacher_dir = os.path.join(uninterrupted[0], "export")

  def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):  # distillation
    del rng, loss_config
    x = batch["labeled"]["image"]
    outputs, new = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                               mutable=["batch_stats"])
    target = jax.nn.softmax(aux["teacher"](x)["classes"])
    loss = -jnp.mean(jnp.sum(target * jax.nn.log_softmax(outputs["classes"]), -1))
    return objectives.LossOutput(loss, new["batch_stats"], {})
  probe = types.ModuleType("s4l_jax.objectives.teacher_probe")
  probe.REQUIRES, probe.LOSS_KEYS = objectives.Requirements(aux=("teacher",)), {}
  probe.loss_fn = loss_fn
  config = digits_config(steps=2)
  config.objective, config.frozen_teacher = "teacher_probe", teacher_dir
  before = export.load_variables(teacher_dir)
  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(sys.modules, probe.__name__, probe)
    assert runner.run(config, str(tmp_path))["steps"] == 2
  with ocp.StandardCheckpointer() as checkpointer:
    saved = checkpointer.metadata(os.path.join(tmp_path, "checkpoints", "2", "default"))
  tree = getattr(getattr(saved, "item_metadata", saved), "tree", saved)
  assert set(tree) == {"step", "params", "batch_stats", "opt_state", "ema_params",
                       "objective_state"}
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(export.load_variables(teacher_dir))):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("halflife, decay, want", [(0.0, 0.0, 0.0), (2.0, 0.0, 0.5 ** (1 / 20)),
                                                  (0.0, 0.999, 0.999)])
def test_ema_decay_per_step_or_from_the_half_life(halflife, decay, want):
  config = load_config("supervised", "dataset=digits")
  config.ema_halflife_epochs, config.ema_decay = halflife, decay
  assert train.ema_decay(config, steps_per_epoch=10) == pytest.approx(want, rel=1e-12)


@pytest.mark.slow
def test_progress_is_logged_by_time_as_well_as_by_step_count(tmp_path, monkeypatch, caplog):
  """log_every_steps=1000 on a 5-step run: with PROGRESS_EVERY_S=0 every step logs its line
  (the time-based rule); with an hour, only the last step does, and the first step's line
  says how progress is paced."""
  config = digits_config(steps=5)
  config.log_every_steps, config.checkpoint_every_steps = 1000, 1000
  monkeypatch.setattr(train, "PROGRESS_EVERY_S", 0.0)
  caplog.set_level("INFO")
  runner.run(config, str(tmp_path))
  lines = [r.getMessage() for r in caplog.records]
  assert [int(m.split()[1].split("/")[0]) for m in lines if m.startswith("step ")] == [
      1, 2, 3, 4, 5]
  monkeypatch.setattr(train, "PROGRESS_EVERY_S", 3600.0)
  caplog.clear()
  runner.run(config, str(tmp_path / "hourly"))
  lines = [r.getMessage() for r in caplog.records]
  assert [m.split()[1] for m in lines if m.startswith("step ")] == ["5/5"]  # the final save
  assert any(re.match(r"first step \(compiling\) took [\d.]+s; progress every 1000 steps or "
                      r"3600s from here", m) for m in lines)
