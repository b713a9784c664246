"""Teacher-free KD (configs/tf_kd.py): the virtual teacher and its loss against NumPy, the
variants' stage configs, and the self-teacher pipeline end to end on digits, resumed
bit-identically."""
import functools
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import config_lib, export, losses, objectives, runner
from s4l_jax.models import build_model
from testing_utils import load_config, sigterm_during_step, tiny


def test_virtual_teacher_distribution():
  p = np.asarray(losses.virtual_teacher(jnp.array([2, 0]), 4, 0.9))
  np.testing.assert_allclose(p, [[0.1 / 3, 0.1 / 3, 0.9, 0.1 / 3], [0.9] + [0.1 / 3] * 3],
                             rtol=1e-6)


@pytest.mark.slow
def test_virtual_teacher_loss_matches_numpy():
  model = build_model(dict(name="wrn", depth=10, width=1, heads=dict(classes=-1)), 5)
  variables = jax.device_get(jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3))))
  rng = np.random.default_rng(0)
  batch = {"labeled": {"image": rng.uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32),
                       "label": np.array([0, 3, 4, 1], np.int32)}}
  lc = config_lib.ml_collections.ConfigDict(dict(alpha=0.3, temperature=3.0, correct_prob=0.95))
  fn = jax.jit(functools.partial(objectives.get("virtual_teacher").loss_fn, model=model,
                                 loss_config=lc, aux={}))
  value, _, metrics, _ = fn(variables["params"], variables["batch_stats"], batch, None)

  apply = functools.partial(model.apply, train=True, mutable=["batch_stats"])
  logits = np.asarray(apply(variables, batch["labeled"]["image"])[0]["classes"], np.float64)
  log_softmax = lambda z: z - z.max(1, keepdims=True) - np.log(
      np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
  labels = batch["labeled"]["label"]
  xent = -log_softmax(logits)[np.arange(4), labels].mean()
  teacher = np.full((4, 5), 0.05 / 4)
  teacher[np.arange(4), labels] = 0.95
  tempered = np.exp(np.log(teacher) / 3.0)
  tempered /= tempered.sum(1, keepdims=True)
  kd = 9.0 * -(tempered * log_softmax(logits / 3.0)).sum(1).mean()
  np.testing.assert_allclose([metrics["sup_loss"], metrics["kd_loss"]], [xent, kd], rtol=1e-4)
  np.testing.assert_allclose(value, 0.7 * xent + 0.3 * kd, rtol=1e-4)


def test_variants_stage_configs():
  sup = load_config("supervised", "dataset=digits")
  c = load_config("tf_kd", "dataset=digits,alpha=0.2,temperature=2")
  assert set(c.stages) == {"teacher", "student"}
  assert c.stages.teacher.to_dict() == sup.to_dict()
  s = c.stages.student
  assert (s.objective, s.frozen_teacher, s.model.width) == ("distill", "@teacher", 1)
  assert (s.loss.distill_weight, s.loss.sup_weight, s.loss.temperature) == (0.2, 0.8, 2.0)
  assert s.loss.scale_by_temperature_squared
  assert load_config("tf_kd", "dataset=digits,teacher=reversed").stages.student.model.width == 2
  assert load_config("tf_kd", "dataset=digits,teacher=poor").stages.teacher.total_steps == 40
  v = load_config("tf_kd", "dataset=digits,teacher=virtual")
  assert v.objective == "virtual_teacher" and v.loss.correct_prob == 0.9
  with pytest.raises(ValueError, match="teacher='bad' unknown"):
    load_config("tf_kd", "teacher=bad")


@pytest.mark.slow
def test_self_teacher_pipeline_runs_on_digits_and_resumes_bit_identically(tmp_path):
  """Teacher then student; the student stage interrupted at step 2 and re-run (the finished
  teacher is skipped) ends with the uninterrupted pipeline's weights."""
  def config():
    c = load_config("tf_kd", "dataset=digits")
    tiny(c.stages.teacher, steps=2, batch=8)
    tiny(c.stages.student, steps=4, batch=8)
    return c
  full, resumed = tmp_path / "full", tmp_path / "resumed"
  assert list(runner.run(config(), str(full))["stages"]) == ["teacher", "student"]
  assert export.load_description(str(full / "student" / "export"))["method"] == "distill"
  shutil.copytree(full / "teacher", resumed / "teacher")
  with sigterm_during_step(2):
    with pytest.raises(SystemExit, match="SIGTERM: saved step 2"):
      runner.run(config(), str(resumed))
  results = runner.run(config(), str(resumed))
  assert results["stages"]["student"]["resumed_from_step"] == 2
  a, b = (export.load_variables(str(d / "student" / "export")) for d in (full, resumed))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
