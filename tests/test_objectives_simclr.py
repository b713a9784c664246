"""SimCLR pretraining and distillation objectives: values vs independent recomputations, what
receives gradients, the frozen teacher."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from s4l_jax import objectives, optim, train, train_state
from s4l_jax.models import build_model
from s4l_jax.objectives import distill, simclr
from test_losses import nt_xent_reference, soft_xent_reference
from testing_utils import load_config, tiny

WRN = dict(name="wrn", depth=10, width=1)
PROJ = dict(dims=(16, 16, 8), batch_norm=True, use_bias=False)


def init(model, seed=0):
  return jax.device_get(model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 8, 8, 3)),
                                   train=False))


def images(rng, *lead):
  return rng.uniform(-1, 1, lead + (8, 8, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def simclr_setup():
  model = build_model(dict(WRN, heads=dict(proj=PROJ, classes=dict(dims=-1,
                                                                   stop_gradient=True))), 10)
  rng = np.random.default_rng(0)
  batch = {"unlabeled": {"image": images(rng, 6, 2), "label": rng.integers(0, 10, 6)},
           "labeled": {"image": images(rng, 2, 2), "label": rng.integers(0, 10, 2)}}
  return model, init(model), batch


def simclr_loss(model, variables, batch, **loss):
  return simclr.loss_fn(variables["params"], variables["batch_stats"], batch, None, model=model,
                        loss_config=ml_collections.ConfigDict(loss), aux={})


def test_simclr_loss_is_nt_xent_of_both_views_plus_linear_eval(simclr_setup):
  model, variables, batch = simclr_setup
  loss, (_, metrics) = simclr_loss(model, variables, batch, temperature=0.2)
  u, l = batch["unlabeled"]["image"], batch["labeled"]["image"]
  x = np.concatenate([u[:, 0], l[:, 0], u[:, 1], l[:, 1]])  # one pass: BN over all 16 images
  out = model.apply(variables, x, train=True, mutable=["batch_stats"])[0]
  z = np.asarray(out["proj"])
  np.testing.assert_allclose(metrics["contrastive_loss"],
                             nt_xent_reference(z[:8], z[8:], 0.2), rtol=1e-5)
  logits = np.asarray(out["classes"], np.float64)[[6, 7, 14, 15]]  # the labeled rows
  labels = np.tile(batch["labeled"]["label"], 2)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(metrics["linear_eval_loss"], -logp[np.arange(4), labels].mean(),
                             rtol=1e-5)
  np.testing.assert_allclose(loss, metrics["contrastive_loss"] + metrics["linear_eval_loss"],
                             rtol=1e-6)


def test_linear_eval_head_never_moves_the_encoder(simclr_setup):
  model, variables, batch = simclr_setup
  grad = lambda w: jax.grad(lambda p: simclr_loss(
      model, dict(variables, params=p), batch, linear_eval_weight=w)[0])(variables["params"])
  with_head, without = grad(1.0), grad(0.0)
  for name in ("trunk", "head_proj_1", "head_proj_2", "head_proj_3"):
    jax.tree.map(np.testing.assert_array_equal, with_head[name], without[name])
  assert np.abs(np.asarray(with_head["head_classes"]["kernel"])).sum() > 0
  np.testing.assert_array_equal(without["head_classes"]["kernel"], 0.0)


def test_simclr_requires_two_views_and_a_projection_head():
  config = tiny(load_config("supervised", "dataset=digits"))
  config.objective = "simclr"
  config.input.unlabeled.batch_size = 16
  with pytest.raises(ValueError, match="objective simclr needs input.unlabeled.view making 2"):
    objectives.check_config(config)
  config.input.unlabeled.view = config.input.labeled.view = "simclr2"
  with pytest.raises(ValueError, match=r"reads model heads \['proj'\]"):
    objectives.check_config(config)


@pytest.fixture(scope="module")
def distill_setup():
  student = build_model(dict(WRN, heads=dict(classes=-1)), 10)
  teacher = build_model(dict(WRN, width=2, heads=dict(classes=-1)), 10)  # a different network
  rng = np.random.default_rng(1)
  batch = {"labeled": {"image": images(rng, 4), "label": rng.integers(0, 10, 4)},
           "unlabeled": {"image": images(rng, 6), "label": rng.integers(0, 10, 6)}}
  return student, init(student), teacher, init(teacher, seed=1), batch


@pytest.mark.parametrize("temperature, sup_weight, t2", [(1.0, 0.0, False), (2.0, 0.5, True)])
def test_distill_loss_matches_reference(distill_setup, temperature, sup_weight, t2):
  student, s_vars, teacher, t_vars, batch = distill_setup
  teacher_fn = lambda x: teacher.apply(t_vars, x, train=False)
  loss, (_, metrics) = distill.loss_fn(
      s_vars["params"], s_vars["batch_stats"], batch, None, model=student,
      loss_config=ml_collections.ConfigDict(dict(temperature=temperature, sup_weight=sup_weight,
                                                 scale_by_temperature_squared=t2)),
      aux={"teacher": teacher_fn})
  x = np.concatenate([batch["labeled"]["image"], batch["unlabeled"]["image"]])
  s_logits = np.asarray(student.apply(s_vars, x, train=True, mutable=["batch_stats"])[0]
                        ["classes"])
  t_logits = np.asarray(teacher_fn(batch["unlabeled"]["image"])["classes"])
  expected_distill = soft_xent_reference(s_logits[4:], t_logits, temperature)
  np.testing.assert_allclose(metrics["distill_loss"],
                             expected_distill * (temperature ** 2 if t2 else 1), rtol=1e-5)
  np.testing.assert_allclose(loss, metrics["distill_loss"] + sup_weight * metrics["sup_loss"],
                             rtol=1e-6)
  np.testing.assert_allclose(metrics["teacher_agreement"],
                             np.mean(s_logits[4:].argmax(-1) == t_logits.argmax(-1)))


def test_distill_step_leaves_the_teacher_untouched(distill_setup):
  """A jitted train step: no gradient reaches the frozen teacher's variables, which are the
  same arrays afterwards; the student's parameters move."""
  student, s_vars, teacher, t_vars, _ = distill_setup
  config = tiny(load_config("supervised", "dataset=digits"))
  config.objective, config.input.unlabeled.batch_size = "distill", 6
  tx = optim.make_optimizer(config.optimizer, lambda _: 0.1, s_vars["params"])
  rng = np.random.default_rng(2)
  raw = {"labeled": {"image": rng.integers(0, 256, (4, 8, 8, 3), np.uint8),
                     "label": rng.integers(0, 10, 4).astype(np.int32)},
         "unlabeled": {"image": rng.integers(0, 256, (6, 8, 8, 3), np.uint8),
                       "label": rng.integers(0, 10, 6).astype(np.int32)}}
  loss_fn = train.make_loss_fn(student, distill, config, teacher_model=teacher)
  aux_state = dict(step=jnp.int32(0), progress=jnp.float32(0), ema_params=None,
                   frozen={"teacher": t_vars})
  grads = jax.grad(lambda frozen: loss_fn(s_vars["params"], s_vars["batch_stats"], raw,
                                          jax.random.PRNGKey(0),
                                          dict(aux_state, frozen=frozen))[0])({"teacher": t_vars})
  jax.tree.map(lambda g: np.testing.assert_array_equal(g, 0.0), grads)
  step = jax.jit(train.make_train_step(student, distill, tx, config, 0.0, teacher_model=teacher))
  frozen = jax.tree.map(jnp.asarray, {"teacher": t_vars})
  state = train_state.create(s_vars, tx, use_ema=False)
  new_state, metrics = step(state, raw, frozen)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(frozen), {"teacher": t_vars})
  assert np.isfinite(metrics["distill_loss"])
  moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), new_state.params,
                       s_vars["params"])
  assert max(jax.tree.leaves(moved)) > 0
