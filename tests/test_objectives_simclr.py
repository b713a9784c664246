"""SimCLR pretraining and distillation objectives: values vs independent recomputations, what
receives gradients, the frozen teacher."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import distributed, objectives, optim, train, train_state
from s4l_jax.models import build_model
from s4l_jax.objectives import distill, simclr
from test_losses import nt_xent_reference, random_queue, soft_xent_reference
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
                        loss_config=objectives.loss_config(simclr, loss), aux={})


@pytest.mark.slow
def test_simclr_loss_is_nt_xent_of_both_views_plus_linear_eval(simclr_setup):
  model, variables, batch = simclr_setup
  loss, _, metrics, _ = simclr_loss(model, variables, batch, temperature=0.2)
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


@pytest.mark.slow
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


def normalized(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.slow
def test_simclr_memory_adds_the_queue_and_enqueues_the_memory_networks_keys(simclr_setup):
  """memory_size > 0: NT-Xent with the K queue rows as extra negatives; the new queue starts
  with the EMA network's normalised proj of view 2 (train-mode BN over those 8 images), then
  the old queue's first K - 8 rows; no gradient reaches the EMA weights or the queue."""
  model, variables, batch = simclr_setup
  ema, queue = init(model, seed=1)["params"], random_queue(12, 8, seed=7)
  loss_config = objectives.loss_config(simclr, dict(temperature=0.2, memory_size=12))

  def run(params, ema_params, q):
    return simclr.loss_fn(params, variables["batch_stats"], batch, None, model=model,
                          loss_config=loss_config,
                          aux={"ema_params": ema_params, "state": {"queue": q}})
  loss, _, metrics, new_state = run(variables["params"], ema, queue)
  u, l = batch["unlabeled"]["image"], batch["labeled"]["image"]
  x = np.concatenate([u[:, 0], l[:, 0], u[:, 1], l[:, 1]])
  z = np.asarray(model.apply(variables, x, train=True, mutable=["batch_stats"])[0]["proj"])
  np.testing.assert_allclose(metrics["contrastive_loss"],
                             nt_xent_reference(z[:8], z[8:], 0.2, queue=queue), rtol=1e-5)
  np.testing.assert_allclose(loss, metrics["contrastive_loss"] + metrics["linear_eval_loss"],
                             rtol=1e-6)
  keys = model.apply(dict(variables, params=ema), x[8:], train=True,
                     mutable=["batch_stats"])[0]["proj"]
  assert new_state["queue"].shape == (12, 8) and new_state["queue"].dtype == jnp.float32
  np.testing.assert_allclose(new_state["queue"][:8], normalized(keys), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(new_state["queue"][8:], queue[:4])

  grads = jax.grad(lambda p, e, q: run(p, e, q)[0], argnums=(0, 1, 2))(
      variables["params"], ema, jnp.asarray(queue))
  assert max(float(np.abs(g).max()) for g in jax.tree.leaves(grads[0]["trunk"])) > 0
  jax.tree.map(lambda g: np.testing.assert_array_equal(g, 0.0), grads[1:])
  key_grads = jax.grad(lambda e: jnp.sum(run(variables["params"], e, queue).state["queue"]))(ema)
  jax.tree.map(lambda g: np.testing.assert_array_equal(g, 0.0), key_grads)


def test_enqueue_keeps_the_last_k_keys_newest_first():
  """FIFO over 5 steps of 4 keys into K = 10 (not a multiple of 4): the queue always holds the
  newest batch first, then the previous ones, and after 20 keys exactly the last 10."""
  rng = np.random.default_rng(8)
  queue0 = rng.normal(size=(10, 3)).astype(np.float32)
  batches = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(5)]
  queue = jnp.asarray(queue0)
  for t, keys in enumerate(batches):
    queue = simclr.enqueue(queue, keys)
    np.testing.assert_array_equal(queue, np.concatenate(batches[t::-1] + [queue0])[:10])
  np.testing.assert_array_equal(queue, np.concatenate([batches[4], batches[3], batches[2][:2]]))


def memory_config(memory=48):
  return tiny(load_config("simclrv2", f"dataset=digits,memory={memory}").stages.pretrain)


def test_memory_config_needs_the_ema_and_a_nonnegative_size():
  config = memory_config()
  assert config.ema_decay == 0.999 and config.loss.memory_size == 48
  objectives.check_config(config)
  assert simclr.init_state(config, jax.random.PRNGKey(0))["queue"].shape == (48, 128)
  config.ema_decay = 0.0
  with pytest.raises(ValueError, match=r"^objective simclr needs the EMA weights: set "):
    objectives.check_config(config)
  config.loss.memory_size = -1
  with pytest.raises(ValueError, match=r"^loss.memory_size=-1 must be in \[0, inf\) "
                     r"\(objective simclr\)$"):
    objectives.check_config(config)
  off = tiny(load_config("simclrv2", "dataset=digits").stages.pretrain)
  assert off.loss.memory_size == 0 and off.ema_decay == 0.0
  assert objectives.init_state(simclr, off, jax.random.PRNGKey(0)) == {}


@pytest.mark.slow
def test_memory_train_steps_on_8_devices_match_1_device():
  """Two jitted train steps with the memory on (global batch N = 32, K = 48): the queue stays
  replicated, its old rows move down by N bit for bit (newest first), and 8 devices == 1."""
  config = memory_config()
  model = build_model(config.model, 10)
  variables = init(model)
  tx = optim.make_optimizer(config.optimizer, lambda _: 0.1, variables["params"])
  step = train.make_train_step(model, simclr, tx, config, decay=config.ema_decay, num_steps=2)
  queue0 = objectives.init_state(simclr, config, jax.random.PRNGKey(1))["queue"]
  np.testing.assert_allclose(np.linalg.norm(queue0, axis=1), 1.0, rtol=1e-6)
  rng = np.random.default_rng(9)
  raws = [{s: {"image": rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8),
               "label": rng.integers(0, 10, (16,)).astype(np.int32)}
           for s in ("labeled", "unlabeled")} for _ in range(2)]
  runs = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = distributed.make_mesh(devices)
    repl = distributed.replicated(mesh)
    state = jax.device_put(train_state.create(variables, tx, use_ema=True,
                                              objective_state={"queue": queue0}), repl)
    jitted = jax.jit(step, in_shardings=(repl, distributed.data_sharding(mesh), repl),
                     out_shardings=(repl, repl))
    queues, losses = [queue0], []
    for raw in raws:
      state, metrics = jitted(state, distributed.to_global(raw, mesh), {})
      assert state.objective_state["queue"].sharding.is_fully_replicated
      queues.append(np.asarray(jax.device_get(state.objective_state["queue"])))
      losses.append(float(metrics["contrastive_loss"]))
    for old, new in zip(queues, queues[1:]):
      np.testing.assert_array_equal(new[32:], old[:16])
      np.testing.assert_allclose(np.linalg.norm(new[:32], axis=1), 1.0, rtol=1e-5)
    runs.append((queues, losses))
  (q1, l1), (q8, l8) = runs
  np.testing.assert_allclose(l1, l8, rtol=1e-5)
  for a, b in zip(q1, q8):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def distill_setup():
  student = build_model(dict(WRN, heads=dict(classes=-1)), 10)
  teacher = build_model(dict(WRN, width=2, heads=dict(classes=-1)), 10)  # a different network
  rng = np.random.default_rng(1)
  batch = {"labeled": {"image": images(rng, 4), "label": rng.integers(0, 10, 4)},
           "unlabeled": {"image": images(rng, 6), "label": rng.integers(0, 10, 6)}}
  return student, init(student), teacher, init(teacher, seed=1), batch


@pytest.mark.parametrize("temperature, sup_weight, t2", [(1.0, 0.0, False), (2.0, 0.5, True)])
@pytest.mark.slow
def test_distill_loss_matches_reference(distill_setup, temperature, sup_weight, t2):
  student, s_vars, teacher, t_vars, batch = distill_setup
  teacher_fn = lambda x: teacher.apply(t_vars, x, train=False)
  loss, _, metrics, _ = distill.loss_fn(
      s_vars["params"], s_vars["batch_stats"], batch, None, model=student,
      loss_config=objectives.loss_config(distill, dict(
          temperature=temperature, sup_weight=sup_weight, scale_by_temperature_squared=t2)),
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


@pytest.mark.slow
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
