"""Mean Teacher: loss vs a NumPy recomputation, ramp-up, no gradient into the teacher, a run."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import objectives, runner
from s4l_jax.models import build_model
from s4l_jax.objectives import mean_teacher
from testing_utils import load_config, tiny


@pytest.mark.parametrize("progress, rampup", [(0.0, 0.4), (0.1, 0.4), (0.4, 0.4), (0.9, 0.4),
                                              (0.0, 0.0)])
def test_consistency_weight_is_the_sigmoid_rampup(progress, rampup):
  expected = 8.0 * (np.exp(-5.0 * (1.0 - min(progress / rampup, 1.0)) ** 2) if rampup else 1.0)
  np.testing.assert_allclose(
      mean_teacher.consistency_weight(jnp.float32(progress), 8.0, rampup), expected, rtol=1e-6)


def _softmax(z):
  z = z - z.max(-1, keepdims=True)
  return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def setup():
  config = tiny(load_config("mean_teacher", "dataset=digits"))
  model = build_model(config.model, 10)
  variables = jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)),
                                        train=False))
  ema = jax.tree.map(lambda p: p + 0.05 * np.random.default_rng(1).standard_normal(p.shape,
                                                                                   np.float32),
                     variables["params"])
  rng = np.random.default_rng(0)
  batch = {"labeled": {"image": rng.uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32),
                       "label": rng.integers(0, 10, 4).astype(np.int32)},
           "unlabeled": {"image": rng.uniform(-1, 1, (6, 2, 8, 8, 3)).astype(np.float32),
                         "label": rng.integers(0, 10, 6).astype(np.int32)}}
  return config, model, variables, ema, batch


@pytest.mark.slow
def test_loss_matches_numpy(setup):
  config, model, variables, ema, batch = setup
  aux = {"progress": jnp.float32(0.1), "ema_params": ema}
  loss, _, metrics, _ = mean_teacher.loss_fn(variables["params"], variables["batch_stats"], batch,
                                            None, model=model, loss_config=config.loss, aux=aux)
  lab, unl = batch["labeled"], batch["unlabeled"]
  apply = lambda params, x: np.asarray(model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
      mutable=["batch_stats"])[0]["classes"], np.float64)
  student = apply(variables["params"], np.concatenate([lab["image"], unl["image"][:, 0]]))
  teacher = apply(ema, unl["image"][:, 1])
  xent = -np.mean(np.log(_softmax(student[:4]))[np.arange(4), lab["label"]])
  mse = np.mean((_softmax(student[4:]) - _softmax(teacher)) ** 2)
  weight = config.loss.consistency_weight * np.exp(
      -5 * (1 - 0.1 / config.loss.consistency_rampup) ** 2)
  np.testing.assert_allclose(metrics["sup_loss"], xent, rtol=1e-5)
  np.testing.assert_allclose(metrics["consistency_loss"], mse, rtol=1e-4)
  np.testing.assert_allclose(metrics["consistency_weight"], weight, rtol=1e-6)
  np.testing.assert_allclose(loss, xent + weight * mse, rtol=1e-5)
  np.testing.assert_allclose(metrics["teacher_accuracy"],
                             np.mean(teacher.argmax(-1) == unl["label"]))


@pytest.mark.slow
def test_no_gradient_reaches_the_teacher(setup):
  config, model, variables, ema, batch = setup
  def loss_of_teacher(ema_params):
    return mean_teacher.loss_fn(variables["params"], variables["batch_stats"], batch, None,
                                model=model, loss_config=config.loss,
                                aux={"progress": jnp.float32(1.0), "ema_params": ema_params})[0]
  grads = jax.grad(loss_of_teacher)(ema)
  assert all(not np.any(g) for g in jax.tree.leaves(grads))


@pytest.mark.slow
def test_config_provides_what_the_objective_requires_and_trains_on_digits(tmp_path):
  config = tiny(load_config("mean_teacher", "dataset=digits"), steps=3)
  objectives.check_config(config)
  results = runner.run(config, str(tmp_path))
  assert results["steps"] == 3 and 0.0 <= results["top1"] <= 1.0
  assert results["top1"] == results["evals"]["test"]["ema_top1"]  # evaluated with the teacher's weights
