"""Tests for s4l_jax.losses against independent NumPy computations."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from s4l_jax import distributed, losses


def _np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _logits(seed=0, n=6, c=5, scale=3.0):
  return np.random.RandomState(seed).randn(n, c).astype(np.float32) * scale


@pytest.mark.parametrize("use_mask", [False, True])
def test_softmax_xent(use_mask):
  logits = _logits()
  labels = np.array([0, 4, 2, 2, 1, 3])
  mask = np.array([1, 0, 1, 1, 0, 1], np.float32)
  ce = -_np_log_softmax(logits.astype(np.float64))[np.arange(6), labels]
  want = (ce * mask).sum() / mask.sum() if use_mask else ce.mean()
  got = losses.softmax_xent(jnp.asarray(logits), jnp.asarray(labels),
                            mask=jnp.asarray(mask) if use_mask else None)
  assert got.shape == ()
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_softmax_xent_bool_mask_and_empty():
  logits, labels = _logits(), np.array([0, 4, 2, 2, 1, 3])
  fmask = np.array([1, 0, 1, 1, 0, 1], np.float32)
  np.testing.assert_allclose(
      losses.softmax_xent(logits, labels, fmask.astype(bool)),
      losses.softmax_xent(logits, labels, fmask), rtol=1e-6)
  assert float(losses.softmax_xent(logits, labels, np.zeros(6))) == 0.0


@pytest.mark.parametrize("use_mask", [False, True])
def test_entropy(use_mask):
  logits = _logits(1)
  mask = np.array([0, 1, 1, 0, 1, 1], np.float32)
  logp = _np_log_softmax(logits.astype(np.float64))
  ent = -(np.exp(logp) * logp).sum(-1)
  want = (ent * mask).sum() / mask.sum() if use_mask else ent.mean()
  got = losses.entropy(logits, mask=mask if use_mask else None)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_entropy_bounds():
  uniform = np.zeros((3, 7), np.float32)
  np.testing.assert_allclose(losses.entropy(uniform), np.log(7), rtol=1e-6)
  onehot = np.array([[100.0, 0, 0]], np.float32)
  np.testing.assert_allclose(losses.entropy(onehot), 0.0, atol=1e-6)


def test_kl_divergence_both_directions():
  a, b = _logits(2), _logits(3)
  pa = np.exp(_np_log_softmax(a.astype(np.float64)))
  pb = np.exp(_np_log_softmax(b.astype(np.float64)))
  kl_ab = (pa * (np.log(pa) - np.log(pb))).sum(-1)
  kl_ba = (pb * (np.log(pb) - np.log(pa))).sum(-1)
  got_ab, got_ba = losses.kl_divergence(a, b), losses.kl_divergence(b, a)
  assert got_ab.shape == (6,)
  np.testing.assert_allclose(got_ab, kl_ab, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_ba, kl_ba, rtol=1e-5, atol=1e-6)
  assert not np.allclose(kl_ab, kl_ba)
  np.testing.assert_allclose(losses.kl_divergence(a, a), 0.0, atol=1e-6)


def test_kl_divergence_stable_for_extreme_logits():
  a = np.array([[1000.0, 0.0, -1000.0]], np.float32)
  b = np.array([[0.0, 0.0, 0.0]], np.float32)
  np.testing.assert_allclose(losses.kl_divergence(a, b), np.log(3), rtol=1e-5)


def test_l2_normalize():
  x = np.random.RandomState(0).randn(4, 3, 5).astype(np.float32)
  got = losses.l2_normalize(x)
  np.testing.assert_allclose(got, x / np.linalg.norm(x, axis=-1, keepdims=True),
                             rtol=1e-5)
  got = losses.l2_normalize(x, axis=(1, 2))
  np.testing.assert_allclose(
      got, x / np.linalg.norm(x.reshape(4, -1), axis=-1)[:, None, None],
      rtol=1e-5)
  np.testing.assert_array_equal(losses.l2_normalize(np.zeros((2, 3))), 0.0)


def _np_cdist(e):
  e = e.astype(np.float64)
  d2 = ((e[:, None, :] - e[None, :, :]) ** 2).sum(-1)
  return np.sqrt(np.maximum(d2, 1e-12))


def test_pairwise_distances():
  e = np.random.RandomState(0).randn(7, 4).astype(np.float32)
  got = losses.pairwise_distances(e)
  assert got.shape == (7, 7)
  np.testing.assert_allclose(got, _np_cdist(e), rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(np.diag(got), 0.0, atol=2e-3)


def _near_duplicates(seed=0, n=32, d=128, offset=0.0):
  """n/2 L2-normalised random embeddings (spread over the sphere) + a copy of each moved by
  1e-5 .. 1e-2 (then renormalised): the positives batch-hard mining meets late in training."""
  rng = np.random.RandomState(seed)
  base = rng.randn(n // 2, d)
  base /= np.linalg.norm(base, axis=1, keepdims=True)
  step = rng.randn(n // 2, d) / np.sqrt(d) * 10 ** rng.uniform(-5, -2, (n // 2, 1))
  moved = base + step
  moved /= np.linalg.norm(moved, axis=1, keepdims=True)
  return (np.concatenate([base, moved]) + offset).astype(np.float32)


def _np_distance_grad(e, w):
  """float64 gradient of sum(w * D(e)) over the off-diagonal pairs: (w_jk + w_kj) (e_j - e_k) / D_jk."""
  e = e.astype(np.float64)
  diff = e[:, None, :] - e[None, :, :]
  dist = np.sqrt((diff ** 2).sum(-1))
  np.fill_diagonal(dist, np.inf)
  return (((w + w.T) / dist)[:, :, None] * diff).sum(1)


@pytest.mark.parametrize("offset", [0.0, 30.0])
def test_pairwise_distances_exact_diagonal_and_near_duplicates(offset):
  """Against float64 NumPy: the diagonal is exactly 0 and near-duplicate pairs (distance 1e-5
  .. 1e-2) are float32-accurate. The |a|^2 + |b|^2 - 2ab expansion got them up to 100% wrong
  (self-distances ~1e-3); a common offset (embeddings far from the origin) must not matter."""
  e = _near_duplicates(offset=offset)
  got = np.asarray(losses.pairwise_distances(e))
  assert np.all(np.diag(got) == 0.0)
  want = _np_cdist(e)
  np.fill_diagonal(want, 0.0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)
  n = len(e) // 2
  pairs = np.asarray(got)[np.arange(n), np.arange(n) + n]
  assert pairs.min() < 1e-4 < 1e-2 < pairs.max() * 10  # the pairs span the intended range
  # Random (non-normalised) embeddings too, the case the expansion failed on this machine.
  e = np.random.RandomState(1).randn(9, 4).astype(np.float32) * 3 + offset
  got = np.asarray(losses.pairwise_distances(e))
  assert np.all(np.diag(got) == 0.0)
  np.testing.assert_allclose(got, np.where(np.eye(9, dtype=bool), 0.0, _np_cdist(e)), rtol=1e-5)


def test_pairwise_distances_gradient_matches_float64():
  """The gradient of sum(w * D) is finite (diagonal included) and close to the float64 one; for
  near-duplicates the expansion's noisy D inflated (e_j - e_k) / D by up to ~700x (errors of
  4-6% of the largest gradient entry here; now <= 0.2%: the derivative is matmuls, whose
  rounding is relative to the embeddings, see losses._squared_distances_jvp)."""
  import jax  # pylint: disable=g-import-not-at-top
  e = _near_duplicates(seed=2)
  w = np.random.RandomState(3).rand(len(e), len(e)).astype(np.float32)
  grad = np.asarray(jax.grad(lambda x: jnp.sum(w * losses.pairwise_distances(x)))(e))
  assert np.all(np.isfinite(grad))
  want = _np_distance_grad(e, w.astype(np.float64))
  np.testing.assert_allclose(grad, want, rtol=1e-3, atol=5e-3 * np.abs(want).max())


@pytest.mark.slow
def test_pairwise_distances_identical_rows_have_finite_zero_gradient():
  import jax  # pylint: disable=g-import-not-at-top
  e = np.repeat(np.random.RandomState(5).randn(3, 4).astype(np.float32), 2, axis=0)
  d = np.asarray(losses.pairwise_distances(e))
  assert np.all(np.diag(d) == 0.0)
  np.testing.assert_allclose(d[0, 1], 1e-6, rtol=1e-6)  # clamped, as S4L's _stable_norm
  grad = np.asarray(jax.grad(lambda x: jnp.sum(losses.pairwise_distances(x)))(e))
  assert np.all(np.isfinite(grad))
  grad_triplet = jax.grad(losses.batch_hard_triplet)(e, np.array([0, 0, 1, 1, 2, 2]))
  assert np.all(np.isfinite(np.asarray(grad_triplet)))


def _np_batch_hard(e, ids, soft, margin):
  d = _np_cdist(e)
  out = []
  for j in range(len(ids)):
    pos = [d[j, k] for k in range(len(ids)) if k != j and ids[k] == ids[j]]
    neg = [d[j, k] for k in range(len(ids)) if ids[k] != ids[j]]
    diff = max(pos) + margin - min(neg)
    out.append(np.log1p(np.exp(diff)) if soft else max(diff, 0.0))
  return np.mean(out)


@pytest.mark.parametrize("soft,margin", [(True, 0.0), (False, 0.0),
                                         (False, 0.3), (True, 0.2)])
def test_batch_hard_triplet_vs_bruteforce(soft, margin):
  rng = np.random.RandomState(4)
  e = rng.randn(12, 6).astype(np.float32)
  e /= np.linalg.norm(e, axis=-1, keepdims=True)
  ids = np.repeat(np.arange(4), 3)
  rng.shuffle(ids)
  got = losses.batch_hard_triplet(e, ids, soft=soft, margin=margin)
  np.testing.assert_allclose(got, _np_batch_hard(e, ids, soft, margin),
                             rtol=1e-4, atol=1e-5)


def _np_batch_hard_grad(e, ids):
  """float64 gradient of the soft batch-hard loss (mean over anchors of softplus(d_pos - d_neg))."""
  e = e.astype(np.float64)
  d = _np_cdist(e)
  grad = np.zeros_like(e)
  n = len(ids)
  for j in range(n):
    pos = [k for k in range(n) if k != j and ids[k] == ids[j]]
    neg = [k for k in range(n) if ids[k] != ids[j]]
    kp, kn = max(pos, key=lambda k: d[j, k]), min(neg, key=lambda k: d[j, k])
    s = 1.0 / (1.0 + np.exp(-(d[j, kp] - d[j, kn]))) / n  # softplus' / N
    for k, sign in ((kp, 1.0), (kn, -1.0)):
      unit = (e[j] - e[k]) / d[j, k]
      grad[j] += sign * s * unit
      grad[k] -= sign * s * unit
  return grad


@pytest.mark.slow
def test_batch_hard_triplet_near_duplicate_positives():
  """Pairs of views 1e-5 .. 1e-2 apart (each id's only positive): loss and gradient match
  float64. Through the old expansion the noisy d_pos put 40-50% of the largest gradient entry
  into errors (now <= 0.5%)."""
  import jax  # pylint: disable=g-import-not-at-top
  e = _near_duplicates(seed=6, n=24, d=64)
  ids = np.concatenate([np.arange(12), np.arange(12)])
  loss, grad = jax.value_and_grad(losses.batch_hard_triplet)(e, ids)
  np.testing.assert_allclose(loss, _np_batch_hard(e, ids, True, 0.0), rtol=1e-5)
  want = _np_batch_hard_grad(e, ids)
  np.testing.assert_allclose(grad, want, rtol=1e-3, atol=1e-2 * np.abs(want).max())


def test_batch_hard_triplet_hand_built():
  # 1-D points; ids [0, 0, 0, 1]. Anchor 0 at x=0: positives at 1 and 3 ->
  # hardest positive 3; negative at 5 -> d_neg 5.
  e = np.array([[0.0], [1.0], [3.0], [5.0]], np.float32)
  ids = np.array([0, 0, 0, 1])
  # d_pos: [3, 2, 3, -inf (no positive)]; d_neg: [5, 4, 2, 2 (closest = x=3)].
  diffs = np.array([3 - 5, 2 - 4, 3 - 2], np.float64)
  want_hard = np.maximum(diffs + 0.5, 0).sum() / 4
  want_soft = np.log1p(np.exp(diffs)).sum() / 4
  np.testing.assert_allclose(
      losses.batch_hard_triplet(e, ids, soft=False, margin=0.5), want_hard,
      rtol=1e-5)
  np.testing.assert_allclose(losses.batch_hard_triplet(e, ids), want_soft,
                             rtol=1e-5)


def test_exemplar_ids():
  np.testing.assert_array_equal(losses.exemplar_ids(3, 2),
                                [0, 0, 1, 1, 2, 2])
  # Released-code quirk: repeat(range(num_views), num_images).
  np.testing.assert_array_equal(losses.exemplar_ids(3, 2, quirk=True),
                                np.repeat(np.arange(2), 3))
  np.testing.assert_array_equal(losses.exemplar_ids(8, 8, quirk=True),
                                losses.exemplar_ids(8, 8))
  # Correct ids match the image-major layout of a (I, V) reshape.
  ids = np.arange(5)[:, None] * np.ones((1, 8), int)
  np.testing.assert_array_equal(losses.exemplar_ids(5, 8), ids.reshape(-1))


def test_losses_are_float32_for_bf16_inputs():
  logits = jnp.asarray(_logits(), jnp.bfloat16)
  for out in (losses.softmax_xent(logits, jnp.zeros(6, jnp.int32)),
              losses.entropy(logits),
              losses.kl_divergence(logits, logits)):
    assert out.dtype == jnp.float32


def test_batch_hard_triplet_permutation_invariant():
  e = np.random.RandomState(7).randn(6, 3).astype(np.float32)
  ids = np.array([0, 0, 1, 1, 2, 2])
  base = losses.batch_hard_triplet(e, ids)
  for perm in itertools.islice(itertools.permutations(range(6)), 0, 50, 7):
    perm = np.array(perm)
    np.testing.assert_allclose(losses.batch_hard_triplet(e[perm], ids[perm]),
                               base, rtol=1e-5)


# ---- NT-Xent (SimCLR) and distillation, against float64 loops ----


def nt_xent_reference(z1, z2, temperature, normalize=True, queue=()):
  """SimCLR's objective.py written as loops: for every anchor, its 2N-1 logits (self left out)
  and one per `queue` row (the memory's negatives, as given), positive = the other view of the
  same image; the two directional means summed."""
  z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
  queue = np.asarray(queue, np.float64)
  if normalize:
    z1 = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    z2 = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
  n = len(z1)
  total = 0.0
  for anchors, others in ((z1, z2), (z2, z1)):
    per_anchor = []
    for i in range(n):
      candidates = [anchors[i] @ others[j] / temperature for j in range(n)]
      candidates += [anchors[i] @ anchors[j] / temperature for j in range(n) if j != i]
      candidates += [anchors[i] @ q / temperature for q in queue]
      candidates = np.array(candidates)
      log_denominator = np.log(np.sum(np.exp(candidates - candidates.max()))) + candidates.max()
      per_anchor.append(log_denominator - candidates[i])  # candidate i is the positive
    total += np.mean(per_anchor)
  return total


def random_views(n=6, d=5, seed=0):
  rng = np.random.default_rng(seed)
  z1 = rng.normal(size=(n, d)).astype(np.float32)
  return z1, (z1 + 0.5 * rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("temperature, normalize", [(0.1, True), (0.5, True), (1.0, False)])
def test_nt_xent_matches_reference(temperature, normalize):
  z1, z2 = random_views()
  if not normalize:
    z1, z2 = z1 / 3, z2 / 3  # unnormalised logits stay moderate
  loss, _ = losses.nt_xent(jnp.asarray(z1), jnp.asarray(z2), temperature, normalize)
  np.testing.assert_allclose(loss, nt_xent_reference(z1, z2, temperature, normalize),
                             rtol=2e-5)


def nt_xent_numeric_grad(z1, z2, which, loss, eps=1e-6):
  """Central finite differences of float64 `loss(z1, z2)` w.r.t. z1 (which=0) or z2 (1)."""
  numeric = np.zeros(z1.shape)
  for idx in np.ndindex(*z1.shape):
    plus = [np.asarray(z1, np.float64), np.asarray(z2, np.float64)]
    minus = [plus[0].copy(), plus[1].copy()]
    plus[which] = plus[which].copy()
    plus[which][idx] += eps
    minus[which][idx] -= eps
    numeric[idx] = (loss(*plus) - loss(*minus)) / (2 * eps)
  return numeric


@pytest.mark.slow
def test_nt_xent_gradient_matches_finite_differences():
  z1, z2 = random_views(n=4, d=3, seed=1)
  grads = jax.grad(lambda a, b: losses.nt_xent(a, b, 0.5)[0], argnums=(0, 1))(
      jnp.asarray(z1), jnp.asarray(z2))
  for which, grad in enumerate(grads):
    numeric = nt_xent_numeric_grad(z1, z2, which, lambda a, b: nt_xent_reference(a, b, 0.5))
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5)


def test_nt_xent_positives_and_self_masking():
  """Identical views far apart from the rest: loss -> 0 and accuracy 1; swapping the rows of one
  view (wrong positives) makes it large. The self-similarity (the largest logit) is masked:
  otherwise every anchor would pick itself and the loss could not approach 0."""
  z = np.eye(4, dtype=np.float32)
  loss, acc = losses.nt_xent(jnp.asarray(z), jnp.asarray(z), 0.05)
  assert float(loss) < 1e-6 and float(acc) == 1.0
  wrong, acc_wrong = losses.nt_xent(jnp.asarray(z), jnp.asarray(z[::-1]), 0.05)
  assert float(wrong) > 10 and float(acc_wrong) == 0.0


def test_nt_xent_negatives_are_global_across_devices():
  """8 devices (batch sharded) == 1 device == the NumPy reference: every anchor sees the
  negatives held by the other devices (the loss would differ if each device only contrasted its
  own 2 rows)."""
  assert jax.device_count() == 8
  z1, z2 = random_views(n=16, d=8, seed=2)
  reference = nt_xent_reference(z1, z2, 0.1)
  fn = jax.jit(lambda a, b: losses.nt_xent(a, b, 0.1)[0])
  single = fn(jax.device_put(z1, jax.devices()[0]), jax.device_put(z2, jax.devices()[0]))
  mesh = distributed.make_mesh(jax.devices())
  sharded_in = NamedSharding(mesh, P("data"))
  a, b = jax.device_put(z1, sharded_in), jax.device_put(z2, sharded_in)
  assert len(a.sharding.device_set) == 8
  sharded = fn(a, b)
  np.testing.assert_allclose(single, reference, rtol=2e-5)
  np.testing.assert_allclose(sharded, reference, rtol=2e-5)
  per_device = np.mean([nt_xent_reference(z1[i:i + 2], z2[i:i + 2], 0.1)
                        for i in range(0, 16, 2)])
  assert abs(per_device - reference) > 0.5  # local negatives would give a different loss


def random_queue(k, d, seed):
  q = np.random.default_rng(seed).normal(size=(k, d))
  return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def test_nt_xent_with_a_queue_matches_reference_and_stops_its_gradient():
  """The K queue rows are extra negatives of every anchor in both directions; the gradient of
  z1, z2 matches finite differences of the float64 loops, and none reaches the queue."""
  z1, z2 = random_views(n=4, d=3, seed=3)
  queue = random_queue(5, 3, seed=4)
  loss_fn = lambda a, b, q: losses.nt_xent(a, b, 0.5, queue=q)[0]
  np.testing.assert_allclose(loss_fn(z1, z2, queue), nt_xent_reference(z1, z2, 0.5, queue=queue),
                             rtol=2e-5)
  assert abs(nt_xent_reference(z1, z2, 0.5, queue=queue) - nt_xent_reference(z1, z2, 0.5)) > 0.1
  grads = jax.grad(loss_fn, argnums=(0, 1, 2))(jnp.asarray(z1), jnp.asarray(z2),
                                              jnp.asarray(queue))
  np.testing.assert_array_equal(grads[2], 0.0)
  for which in (0, 1):
    numeric = nt_xent_numeric_grad(
        z1, z2, which, lambda a, b: nt_xent_reference(a, b, 0.5, queue=queue))
    np.testing.assert_allclose(grads[which], numeric, rtol=1e-3, atol=1e-5)


def test_nt_xent_queue_replicated_with_the_batch_sharded():
  """8 devices (batch sharded, queue replicated) == 1 device == the NumPy reference."""
  z1, z2 = random_views(n=16, d=8, seed=5)
  queue = random_queue(24, 8, seed=6)
  reference = nt_xent_reference(z1, z2, 0.1, queue=queue)
  fn = jax.jit(lambda a, b, q: losses.nt_xent(a, b, 0.1, queue=q)[0])
  single = fn(*(jax.device_put(x, jax.devices()[0]) for x in (z1, z2, queue)))
  mesh = distributed.make_mesh(jax.devices())
  rows, repl = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  sharded = fn(jax.device_put(z1, rows), jax.device_put(z2, rows), jax.device_put(queue, repl))
  np.testing.assert_allclose(single, reference, rtol=2e-5)
  np.testing.assert_allclose(sharded, reference, rtol=2e-5)


def soft_xent_reference(student, teacher, temperature):
  out = []
  for s, t in zip(np.asarray(student, np.float64), np.asarray(teacher, np.float64)):
    p = np.exp(t / temperature) / np.sum(np.exp(t / temperature))
    log_q = s / temperature - np.log(np.sum(np.exp(s / temperature)))
    out.append(-np.sum(p * log_q))
  return np.mean(out)


@pytest.mark.parametrize("temperature", [1.0, 2.5, 0.5])
def test_soft_xent_matches_reference_and_stops_teacher_gradient(temperature):
  rng = np.random.default_rng(3)
  student, teacher = rng.normal(size=(2, 5, 7)).astype(np.float32) * 2
  value = losses.soft_xent(jnp.asarray(student), jnp.asarray(teacher), temperature)
  np.testing.assert_allclose(value, soft_xent_reference(student, teacher, temperature),
                             rtol=1e-5)
  g_teacher = jax.grad(lambda t: losses.soft_xent(jnp.asarray(student), t, temperature))(
      jnp.asarray(teacher))
  np.testing.assert_array_equal(g_teacher, 0.0)
  # d/ds = (softmax(s/T) - softmax(t/T)) / (T N), an independent closed form.
  g_student = jax.grad(lambda s: losses.soft_xent(s, jnp.asarray(teacher), temperature))(
      jnp.asarray(student))
  softmax = lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)
  expected = (softmax(student / temperature) - softmax(teacher / temperature)) / (
      temperature * len(student))
  np.testing.assert_allclose(g_student, expected, rtol=1e-4, atol=1e-7)


def test_soft_target_xent_matches_numpy_with_weights_and_one_hot_targets():
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(6, 5)).astype(np.float32) * 3
  targets = rng.dirichlet(np.ones(5), size=6).astype(np.float32)
  weights = np.array([1, 0, 2, 1, 0.5, 0], np.float32)
  log_q = logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
  per_example = -(targets * log_q).sum(-1)
  np.testing.assert_allclose(losses.soft_target_xent(jnp.asarray(logits), jnp.asarray(targets)),
                             per_example.mean(), rtol=1e-5)
  np.testing.assert_allclose(
      losses.soft_target_xent(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights)),
      (per_example * weights).sum() / weights.sum(), rtol=1e-5)
  # One-hot targets are the integer labels' cross-entropy; targets get no gradient.
  labels = np.array([0, 4, 2, 2, 1, 3])
  np.testing.assert_allclose(
      losses.soft_target_xent(jnp.asarray(logits), jnp.eye(5)[labels]),
      losses.softmax_xent(jnp.asarray(logits), jnp.asarray(labels)), rtol=1e-6)
  g = jax.grad(lambda t: losses.soft_target_xent(jnp.asarray(logits), t))(jnp.asarray(targets))
  np.testing.assert_array_equal(g, 0.0)
