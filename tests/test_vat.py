"""Tests for s4l_jax.vat."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import vat

_DIRECTIONS = ("perturbed_clean", "clean_perturbed")


def _linear(w, b):
  """Linear softmax model on (N, H, W, C) inputs."""
  return lambda x: x.reshape(x.shape[0], -1) @ w.T + b


def _setup(dtype=np.float32, n=4, shape=(2, 3, 2), c=5, seed=0):
  rng = np.random.RandomState(seed)
  d = int(np.prod(shape))
  w = rng.randn(c, d).astype(dtype)
  b = rng.randn(c).astype(dtype) * 0.1
  x = rng.uniform(-1, 1, (n,) + shape).astype(dtype)
  return jnp.asarray(w), jnp.asarray(b), jnp.asarray(x)


def _np_kl(p_logits, q_logits):
  p_logits, q_logits = np.float64(p_logits), np.float64(q_logits)
  lp = p_logits - np.log(np.exp(p_logits - p_logits.max(-1, keepdims=True)).sum(
      -1, keepdims=True)) - p_logits.max(-1, keepdims=True)
  lq = q_logits - np.log(np.exp(q_logits - q_logits.max(-1, keepdims=True)).sum(
      -1, keepdims=True)) - q_logits.max(-1, keepdims=True)
  return (np.exp(lp) * (lp - lq)).sum(-1)


@pytest.mark.parametrize("kl_direction", _DIRECTIONS)
@pytest.mark.parametrize("num_iters,xi", [(1, 1e-6), (2, 1e-6), (1, 1e-2)])
def test_perturbation_norm_is_eps(kl_direction, num_iters, xi):
  # With xi=1e-6 the power-iteration gradient has squared norm << 1e-12.
  w, b, x = _setup()
  f = _linear(w, b)
  r = vat.vat_perturbation(f, x, f(x), jax.random.PRNGKey(0), eps=2.5,
                           xi=xi, num_iters=num_iters,
                           kl_direction=kl_direction)
  assert r.shape == x.shape and r.dtype == x.dtype
  norms = np.linalg.norm(np.asarray(r).reshape(x.shape[0], -1), axis=-1)
  np.testing.assert_allclose(norms, 2.5, rtol=1e-4)


def test_adversarial_direction_is_stop_gradient():
  w, b, x = _setup()
  rng = jax.random.PRNGKey(1)
  kw = dict(eps=1.0, xi=1e-2, num_iters=2)

  # No gradient from r_adv into the parameters or the input.
  def r_sum(w, x):
    f = _linear(w, b)
    return jnp.sum(vat.vat_perturbation(f, x, f(x), rng, **kw) * x)
  gw, _ = jax.grad(r_sum, argnums=(0, 1))(w, x)
  np.testing.assert_array_equal(gw, 0.0)

  # Loss gradients equal those with r_adv and clean logits as constants.
  f0 = _linear(w, b)
  r_adv = vat.vat_perturbation(f0, x, f0(x), rng, **kw)
  clean = f0(x)

  def loss(w, x):
    f = _linear(w, b)
    return vat.vat_loss(f, x, f(x), rng, **kw)

  def loss_fixed(w, x):
    return jnp.mean(_kl_jnp(_linear(w, b)(x + r_adv), clean))

  got = jax.grad(loss, argnums=(0, 1))(w, x)
  want = jax.grad(loss_fixed, argnums=(0, 1))(w, x)
  for g, h in zip(got, want):
    np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-7)
  assert np.abs(np.asarray(got[0])).max() > 0


def _kl_jnp(p_logits, q_logits):
  lp, lq = jax.nn.log_softmax(p_logits), jax.nn.log_softmax(q_logits)
  return jnp.sum(jnp.exp(lp) * (lp - lq), axis=-1)


@pytest.mark.parametrize("kl_direction", _DIRECTIONS)
@pytest.mark.slow
def test_power_iteration_converges_to_top_hessian_eigenvector(x64, kl_direction):
  w, b, x = _setup(np.float64, n=3, seed=2)
  f = _linear(w, b)
  r = vat.vat_perturbation(f, x, f(x), jax.random.PRNGKey(2), eps=1.0,
                           xi=1e-6, num_iters=60, kl_direction=kl_direction)
  assert r.dtype == jnp.float64
  r = np.asarray(r).reshape(x.shape[0], -1)
  wn = np.asarray(w)
  for i, logits in enumerate(np.asarray(f(x))):
    p = np.exp(logits - logits.max())
    p /= p.sum()
    hess = wn.T @ (np.diag(p) - np.outer(p, p)) @ wn
    evals, evecs = np.linalg.eigh(hess)
    assert evals[-1] > 1.5 * evals[-2]  # Enough spectral gap to converge.
    np.testing.assert_allclose(abs(r[i] @ evecs[:, -1]), 1.0, atol=1e-6)


def test_kl_direction_switches_loss():
  w, b, x = _setup(seed=3)
  f = _linear(w, b)
  clean = f(x)
  rng = jax.random.PRNGKey(3)
  values = {}
  for kl_direction in _DIRECTIONS:
    kw = dict(eps=1.5, xi=1e-2, kl_direction=kl_direction)
    r = vat.vat_perturbation(f, x, clean, rng, **kw)
    pert = np.asarray(f(x + r))
    if kl_direction == "perturbed_clean":
      want = _np_kl(pert, clean).mean()
    else:
      want = _np_kl(clean, pert).mean()
    values[kl_direction] = float(vat.vat_loss(f, x, clean, rng, **kw))
    np.testing.assert_allclose(values[kl_direction], want, rtol=1e-4)
  assert abs(values["perturbed_clean"] - values["clean_perturbed"]) > 1e-3


def test_invalid_kl_direction():
  w, b, x = _setup()
  f = _linear(w, b)
  for fn in (vat.vat_loss, vat.vat_perturbation):
    with pytest.raises(ValueError, match="kl_direction"):
      fn(f, x, f(x), jax.random.PRNGKey(0), eps=1.0, kl_direction="forward")


def _np_power_step(w, b, x, r):
  """Closed-form grad_r mean_i KL(softmax(z_i + W r_i) || softmax(z_i)), z = W x + b, float64:
  (1/N) W^T [p * (log p - log q - KL)] per example."""
  w, b, x, r = (np.float64(a) for a in (w, b, x, r))
  n = x.shape[0]
  z = x.reshape(n, -1) @ w.T + b
  zr = z + r.reshape(n, -1) @ w.T
  lp = zr - np.log(np.exp(zr).sum(-1, keepdims=True))
  lq = z - np.log(np.exp(z).sum(-1, keepdims=True))
  p = np.exp(lp)
  kl = (p * (lp - lq)).sum(-1, keepdims=True)
  return ((p * (lp - lq - kl)) @ w / n).reshape(x.shape)


@pytest.mark.parametrize("xi,shortened", [(1e-6, True), (1e-2, False)])
@pytest.mark.slow
def test_released_normalization_is_tf_l2_normalize(x64, xi, shortened):
  """released: eps * g / sqrt(max(|g|^2, 1e-12)), g the power-iteration gradient (NumPy);
  with xi = 1e-6 |g| < 1e-6, so |r_adv| = eps |g| / 1e-6 < eps; exact_eps: always eps."""
  w, b, x = _setup(np.float64, n=4, seed=5)
  w = 0.3 * w  # |g| ~ xi * lambda_max(H) / N: below 1e-6 at xi = 1e-6
  f, rng, eps = _linear(w, b), jax.random.PRNGKey(5), 2.0
  d0 = np.asarray(jax.random.normal(rng, x.shape, x.dtype)).reshape(x.shape[0], -1)
  r0 = xi * d0 / np.sqrt(np.maximum((d0 ** 2).sum(-1, keepdims=True), 1e-12))
  g = _np_power_step(w, b, x, r0.reshape(x.shape)).reshape(x.shape[0], -1)
  g_norm = np.linalg.norm(g, axis=-1, keepdims=True)
  want = eps * g / np.sqrt(np.maximum(g_norm ** 2, 1e-12))
  got = {n: np.asarray(vat.vat_perturbation(f, x, f(x), rng, eps=eps, xi=xi,
                                            normalization=n)).reshape(x.shape[0], -1)
         for n in vat.NORMALIZATIONS}
  np.testing.assert_allclose(got["released"], want, rtol=1e-6, atol=1e-12)
  norms = np.linalg.norm(got["released"], axis=-1)
  np.testing.assert_allclose(norms, eps * np.minimum(g_norm[:, 0] / 1e-6, 1.0), rtol=1e-6)
  assert (norms < 0.5 * eps).all() if shortened else np.allclose(norms, eps)
  np.testing.assert_allclose(got["exact_eps"], eps * g / g_norm, rtol=1e-6)
  loss = vat.vat_loss(f, x, f(x), rng, eps=eps, xi=xi, normalization="released")
  np.testing.assert_allclose(loss, _np_kl(f(x + want.reshape(x.shape)), f(x)).mean(),
                             rtol=1e-6)


def test_invalid_normalization():
  w, b, x = _setup()
  f = _linear(w, b)
  for fn in (vat.vat_loss, vat.vat_perturbation):
    with pytest.raises(ValueError, match="normalization"):
      fn(f, x, f(x), jax.random.PRNGKey(0), eps=1.0, normalization="tf")


class _BNNet(nn.Module):
  """Dense -> BatchNorm -> relu -> Dense."""

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(8)(x.reshape(x.shape[0], -1))
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.Dense(3)(nn.relu(x))


@pytest.mark.slow
def test_vat_with_batchnorm_leaves_batch_stats_unchanged():
  _, _, x = _setup(n=6, seed=4)
  model = _BNNet()
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  params, batch_stats = variables["params"], variables["batch_stats"]

  @jax.jit
  def loss_fn(params, batch_stats, rng):
    def forward(v):
      return model.apply({"params": params, "batch_stats": batch_stats}, v,
                         train=True, mutable=["batch_stats"])
    clean, new_state = forward(x)
    apply_fn = lambda v: forward(v)[0]  # Train-mode BN, stats discarded.
    loss = vat.vat_loss(apply_fn, x, clean, rng, eps=1.0, xi=1e-2)
    return loss, new_state["batch_stats"]

  (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, batch_stats, jax.random.PRNGKey(1))
  _, main_only = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert np.isfinite(loss) and loss > 0
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  # Only the clean pass updates the statistics; the VAT passes leave no trace.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5),
               new_stats, main_only["batch_stats"])
  jax.tree.map(np.testing.assert_array_equal, batch_stats,
               variables["batch_stats"])
  assert not np.allclose(new_stats["BatchNorm_0"]["mean"],
                         batch_stats["BatchNorm_0"]["mean"])
