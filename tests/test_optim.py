"""Optimizer masks, coupled L2 equivalence, schedules."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from s4l_jax import optim

PARAMS = {
    "trunk": {"conv": {"kernel": jnp.full((3, 3, 2, 4), 0.5)},
              "bn": {"scale": jnp.full((4,), 2.0), "bias": jnp.full((4,), 0.3)}},
    "head_classes": {"kernel": jnp.full((4, 3), -1.0), "bias": jnp.full((3,), 0.7)},
    "head_proj_1": {"kernel": jnp.full((4, 4), 0.2)},
}


def opt_config(name, wd=0.1):
  return ml_collections.ConfigDict(dict(name=name, momentum=0.9, nesterov=False,
                                        weight_decay=wd, lars_trust_coefficient=0.001))


def test_kernel_mask_selects_only_kernels():
  mask = optim.kernel_mask(PARAMS)
  assert mask["trunk"]["conv"]["kernel"] and mask["head_classes"]["kernel"]
  assert not any([mask["trunk"]["bn"]["scale"], mask["trunk"]["bn"]["bias"],
                  mask["head_classes"]["bias"]])


@pytest.mark.parametrize("name", ["momentum", "lars"])
def test_decay_leaves_bn_and_biases_alone(name):
  """With zero gradients only the weight decay acts: kernels move, BN params and biases don't."""
  tx = optim.make_optimizer(opt_config(name), lambda _: 0.5, PARAMS)
  zeros = jax.tree.map(jnp.zeros_like, PARAMS)
  updates, _ = tx.update(zeros, tx.init(PARAMS), PARAMS)
  assert np.all(np.asarray(updates["trunk"]["conv"]["kernel"]) != 0)
  assert np.all(np.asarray(updates["head_classes"]["kernel"]) != 0)
  for leaf in (updates["trunk"]["bn"]["scale"], updates["trunk"]["bn"]["bias"],
               updates["head_classes"]["bias"]):
    np.testing.assert_array_equal(leaf, 0.0)


def test_momentum_equals_l2_in_loss_tf_semantics():
  """momentum+wd == TF MomentumOptimizer on loss + wd/2*||W||^2 (kernels), lr after momentum."""
  lrs = [0.1, 0.2, 0.05]
  schedule = lambda step: jnp.asarray(lrs)[step]
  wd, m = 0.1, 0.9
  tx = optim.make_optimizer(opt_config("momentum", wd), schedule, PARAMS)
  grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.25, PARAMS)
  mask = optim.kernel_mask(PARAMS)
  params, state = PARAMS, tx.init(PARAMS)
  ref = jax.tree.map(np.asarray, PARAMS)
  velocity = jax.tree.map(np.zeros_like, ref)
  for lr in lrs:
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    g = jax.tree.map(lambda gr, p, k: np.asarray(gr) + (wd * p if k else 0.0), grads, ref, mask)
    velocity = jax.tree.map(lambda v, gi: m * v + gi, velocity, g)
    ref = jax.tree.map(lambda p, v: p - lr * v, ref, velocity)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), params, ref)


def test_trainable_heads_freezes_trunk():
  tx = optim.make_optimizer(opt_config("momentum"), lambda _: 0.5, PARAMS, trainable="heads")
  grads = jax.tree.map(jnp.ones_like, PARAMS)
  updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  jax.tree.map(lambda u: np.testing.assert_array_equal(u, 0.0), updates["trunk"])
  assert np.all(np.asarray(updates["head_classes"]["bias"]) != 0)


@pytest.mark.parametrize("trainable, expected", [
    ("all", {"trunk", "head_classes", "head_proj_1"}),
    ("heads", {"head_classes", "head_proj_1"}),
    ("head_classes", {"head_classes"}),
    ("classes", {"head_classes"}),
    ("trunk+proj_1", {"trunk", "head_proj_1"}),
])
def test_trainable_mask_is_exactly_the_named_modules(trainable, expected):
  mask = optim.trainable_mask(PARAMS, trainable)
  assert jax.tree.structure(mask) == jax.tree.structure(PARAMS)
  for name, tree in mask.items():
    assert set(jax.tree.leaves(tree)) == {name in expected}, name


def test_unknown_trainable_fails_in_one_line():
  with pytest.raises(ValueError, match=r"^trainable='trunk\+clases': unknown subtree 'clases'; "
                     r"valid: all, heads, trunk, head_classes, head_proj_1 \(joined with \+\)$"):
    optim.trainable_mask(PARAMS, "trunk+clases")


def lr_config(**kw):
  base = dict(schedule="step", warmup_epochs=2.0, decay_epochs=(4.0, 6.0), decay_factor=0.1)
  return ml_collections.ConfigDict({**base, **kw})


def test_step_schedule_warmup_and_decays():
  spe = 10
  s = optim.make_schedule(lr_config(), base_lr=1.0, steps_per_epoch=spe, total_steps=80)
  np.testing.assert_allclose([float(s(i)) for i in (0, 5, 10, 19, 20, 39, 40, 59, 60, 79)],
                             [0.0, 0.25, 0.5, 0.95, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)


def test_cosine_schedule():
  s = optim.make_schedule(lr_config(schedule="cosine", warmup_epochs=1.0), base_lr=2.0,
                          steps_per_epoch=10, total_steps=110)
  assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(1.0)
  assert float(s(10)) == pytest.approx(2.0)
  assert float(s(60)) == pytest.approx(1.0, rel=1e-5)  # half-way through the cosine
  assert float(s(110)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("warmup_epochs", [0.0, 1.0])
def test_fixmatch_cosine_is_cos_7_pi_k_over_16_k(warmup_epochs):
  """lr = base cos(7 pi k / 16 K) with k, K counted after a linear warm-up of w steps."""
  spe, total, base = 10, 200, 0.03
  s = optim.make_schedule(lr_config(schedule="fixmatch_cosine", warmup_epochs=warmup_epochs),
                          base_lr=base, steps_per_epoch=spe, total_steps=total)
  w = int(warmup_epochs * spe)
  steps = np.arange(w, total + 1)
  np.testing.assert_allclose([float(s(k)) for k in steps],
                             base * np.cos(7 * np.pi * (steps - w) / (16 * (total - w))),
                             rtol=1e-5)
  assert float(s(total)) == pytest.approx(base * np.cos(7 * np.pi / 16), rel=1e-5)  # 0.195 base
  if w:
    assert float(s(w // 2)) == pytest.approx(base / 2)


def test_bad_names_fail():
  with pytest.raises(ValueError, match="optimizer.name"):
    optim.make_optimizer(opt_config("adam"), lambda _: 1.0, PARAMS)
  with pytest.raises(ValueError, match="lr.schedule"):
    optim.make_schedule(lr_config(schedule="linear"), 1.0, 10, 100)


def test_lars_matches_simclr_reference_with_exclusions():
  """LARS with `lars_exclude="head_classes"` == simclr:lars_optimizer.py written out in NumPy:
  kernels outside the classifier get wd + trust ratio; the classifier kernel wd only; BN and
  biases neither (`simclr:model_util.py`), classic momentum v = m v + lr trust g, w -= v."""
  lrs, wd, m, eta = [0.1, 0.3, 0.2], 0.1, 0.9, 0.001
  config = opt_config("lars", wd)
  config.lars_exclude = "head_classes"
  tx = optim.make_optimizer(config, lambda step: jnp.asarray(lrs)[step], PARAMS)
  rng = np.random.default_rng(0)
  grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), PARAMS)

  def excluded_from(path, what):  # the names simclr matches: batch_normalization, bias, head
    names = [getattr(k, "key", "") for k in path]
    if names[-1] == "bias" or names[-2] == "bn":
      return True
    return what == "trust" and names[0] == "head_classes"

  params, state = PARAMS, tx.init(PARAMS)
  ref = jax.tree.map(lambda p: np.asarray(p, np.float64), PARAMS)
  velocity = jax.tree.map(np.zeros_like, ref)
  for lr in lrs:
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)

    def step(path, w, g, v):
      g = np.asarray(g, np.float64)
      if not excluded_from(path, "decay"):
        g = g + wd * w
      trust = 1.0
      if not excluded_from(path, "trust"):
        trust = eta * np.linalg.norm(w) / np.linalg.norm(g)
      return m * v + lr * trust * g

    velocity = jax.tree_util.tree_map_with_path(step, ref, grads, velocity)
    ref = jax.tree.map(lambda w, v: w - v, ref, velocity)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), params, ref)
  # The classifier really moved differently from a trust-ratio update (the exclusion matters).
  plain = optim.make_optimizer(opt_config("lars", wd), lambda step: jnp.asarray(lrs)[step],
                               PARAMS)
  u_plain, _ = plain.update(grads, plain.init(PARAMS), PARAMS)
  u_excl, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  assert not np.allclose(u_plain["head_classes"]["kernel"], u_excl["head_classes"]["kernel"])
  np.testing.assert_array_equal(u_plain["trunk"]["conv"]["kernel"],
                                u_excl["trunk"]["conv"]["kernel"])


def test_lars_exclude_names_an_unknown_module_in_one_line():
  config = opt_config("lars")
  config.lars_exclude = "head_nope"
  with pytest.raises(ValueError, match="optimizer.lars_exclude='head_nope'"):
    optim.make_optimizer(config, lambda _: 0.1, PARAMS)


@pytest.mark.parametrize("scaling, batch_of, expected", [
    ("linear", "labeled", 0.3 * 64 / 256),
    ("linear", "all", 0.3 * (64 + 448) / 256),
    ("sqrt", "unlabeled", 0.3 * 448 ** 0.5),
    ("sqrt", "all", 0.3 * 512 ** 0.5),
])
def test_base_learning_rate_scalings(scaling, batch_of, expected):
  from s4l_jax import budget, config_lib  # pylint: disable=g-import-not-at-top
  c = config_lib.base_config(dataset="digits", labels="all", labeled_batch=64)
  c.input.unlabeled.batch_size = 448
  c.lr.base, c.lr.scaling, c.lr.batch_of = 0.3, scaling, batch_of
  assert budget.base_learning_rate(c) == pytest.approx(expected)
