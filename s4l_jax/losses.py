"""Pure loss functions shared by the S4L objectives (`s4l:semi_supervised/`).

All functions are jnp-only, compute in float32 (or the input's wider float
type) and average over the leading batch axis unless documented otherwise.
"""
from typing import Optional

import jax
import jax.numpy as jnp

Array = jax.Array


def _masked_mean(values: Array, mask: Optional[Array]) -> Array:
  """Mean of `values` (N,) weighted by `mask` (N,); plain mean if None."""
  if mask is None:
    return jnp.mean(values)
  mask = mask.astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1e-12)


def _as_float(x: Array) -> Array:
  """Casts to float32 unless already float32/float64."""
  return x if x.dtype in (jnp.float32, jnp.float64) else x.astype(jnp.float32)


def softmax_xent(logits: Array, labels: Array,
                 mask: Optional[Array] = None) -> Array:
  """Mean softmax cross-entropy.

  Args:
    logits: (N, C) logits.
    labels: (N,) int class indices.
    mask: optional (N,) bool/float weights; the mean is sum(w·ce) / sum(w)
      (0 if all weights are 0). None means all ones.

  Returns:
    Scalar loss.
  """
  logp = jax.nn.log_softmax(_as_float(logits), axis=-1)
  ce = -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)
  return _masked_mean(ce[:, 0], mask)


def entropy(logits: Array, mask: Optional[Array] = None) -> Array:
  """Mean conditional entropy -sum_c p_c log p_c of softmax(logits).

  The gradient flows into `logits` (EntMin, as `s4l:semi_supervised/vat.py`).

  Args:
    logits: (N, C) logits.
    mask: optional (N,) bool/float weights, as in `softmax_xent`.

  Returns:
    Scalar mean entropy.
  """
  logp = jax.nn.log_softmax(_as_float(logits), axis=-1)
  ent = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
  return _masked_mean(ent, mask)


def kl_divergence(p_logits: Array, q_logits: Array) -> Array:
  """Per-example KL(softmax(p_logits) || softmax(q_logits)).

  Same form as the S4L `kl_divergence_from_logits`: sum_c p_c (log p_c - log q_c)
  with both log-probabilities from log_softmax.

  Args:
    p_logits: (N, C) logits of the first distribution.
    q_logits: (N, C) logits of the second distribution.

  Returns:
    (N,) KL divergences.
  """
  logp = jax.nn.log_softmax(_as_float(p_logits), axis=-1)
  logq = jax.nn.log_softmax(_as_float(q_logits), axis=-1)
  return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


def l2_normalize(x: Array, axis=-1, eps: float = 1e-12) -> Array:
  """x / sqrt(max(sum(x**2, axis), eps)), as `tf.math.l2_normalize`."""
  sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps))


@jax.custom_jvp
def _squared_distances(emb: Array) -> Array:
  """(N, N) sum_d (e_jd - e_kd)^2, from the differences themselves.

  Not the expansion |a|^2 + |b|^2 - 2 a.b: in float32 that cancels to an absolute error of
  ~1e-7 |e|^2 (self-distances of ~1e-3 instead of 0; near-duplicate pairs up to 100% off and
  the gradient (e_j - e_k) / D_jk of their distance hundreds of times too large). XLA fuses
  the broadcast, subtract, square and sum into one reduction, so the (N, N, D) differences
  are never stored (N^2 D multiply-adds, as the expansion's matmul, but not on a matmul unit).
  """
  return jnp.sum(jnp.square(emb[:, None, :] - emb[None, :, :]), axis=-1)


@_squared_distances.defjvp
def _squared_distances_jvp(primals, tangents):
  """d(D2)_jk = 2 (c_j - c_k).(dc_j - dc_k) as matmuls, c = the embeddings centred.

  Linear in the tangent with (N, D) residuals only, so reverse mode is two matmuls too. Its
  rounding is ~1e-7 of the embeddings' spread around their mean, so the gradient term of a pair
  at distance d is off by ~1e-7 / d relatively (1% for unit vectors 1e-5 apart, where the
  expansion's distance itself was off by 100%; tests/test_losses.py checks against float64).
  """
  (emb,), (d_emb,) = primals, tangents
  centred = emb - jnp.mean(emb, axis=0, keepdims=True)
  p = jnp.sum(centred * d_emb, axis=-1)
  m = jnp.matmul(centred, d_emb.T, precision=jax.lax.Precision.HIGHEST)
  return _squared_distances(emb), 2.0 * (p[:, None] + p[None, :] - m - m.T)


def pairwise_distances(emb: Array) -> Array:
  """All-pairs Euclidean distances of a set with itself, (N, N).

  D_jj = 0 exactly; off the diagonal D_jk = sqrt(max(||e_j - e_k||^2, 1e-12)): the clamp
  (S4L `exemplar.py:_stable_norm`) gives identical rows distance 1e-6 and a zero, finite
  gradient. Squared distances come from the differences (float32-accurate for
  near-duplicates, see `_squared_distances`); gradients are finite everywhere, the diagonal
  included (its branch of the `where` is clamped too).

  Args:
    emb: (N, D) embeddings.

  Returns:
    (N, N) distances.
  """
  emb = _as_float(emb)
  d = jnp.sqrt(jnp.maximum(_squared_distances(emb), 1e-12))
  return jnp.where(jnp.eye(emb.shape[0], dtype=bool), jnp.zeros((), d.dtype), d)


def batch_hard_triplet(emb: Array, ids: Array, soft: bool = True,
                       margin: float = 0.0) -> Array:
  """Batch-hard triplet loss (Hermans et al. 2017), as S4L `batch_hard`.

  For each anchor j: d_pos = max over k != j with ids[k] == ids[j] of D_jk
  (hardest positive), d_neg = min over ids[k] != ids[j] of D_jk (hardest
  negative); loss_j = softplus(d_pos + margin - d_neg) if `soft` else
  relu(d_pos + margin - d_neg). An anchor without positives (or without
  negatives) contributes 0. S4L-Exemplar uses soft=True, margin=0.

  Args:
    emb: (N, D) embeddings (S4L L2-normalises them first).
    ids: (N,) int identities.
    soft: soft-margin (softplus) instead of hinge.
    margin: additive margin.

  Returns:
    Scalar mean over the N anchors.
  """
  dists = pairwise_distances(emb)
  same = ids[:, None] == ids[None, :]
  not_self = ~jnp.eye(ids.shape[0], dtype=bool)
  d_pos = jnp.max(jnp.where(same & not_self, dists, -jnp.inf), axis=1)
  d_neg = jnp.min(jnp.where(same, jnp.inf, dists), axis=1)
  diff = d_pos + margin - d_neg
  per_anchor = jax.nn.softplus(diff) if soft else jax.nn.relu(diff)
  return jnp.mean(per_anchor)


def exemplar_ids(num_images: int, num_views: int, quirk: bool = False) -> Array:
  """Identity of each view for views laid out image-major, (I*V,) int32.

  Views are flattened from (num_images, num_views, ...), so the correct
  identity of view j is j // num_views (as in S4L `exemplar_ablation.py`).

  quirk=True reproduces the released `s4l:semi_supervised/exemplar.py` bug:
  `do_triplet(emb, ninstances, nexamples)` swaps its arguments, so the labels
  become repeat(range(num_views), num_images), i.e. id = j // num_images.
  This is only correct when num_images == num_views (8 images per core);
  otherwise each "identity" spans views of several images.

  Args:
    num_images: images per group (per core in the original).
    num_views: views per image (8 in S4L-Exemplar).
    quirk: reproduce the released code's grouping.

  Returns:
    (num_images * num_views,) int32 identities.
  """
  j = jnp.arange(num_images * num_views, dtype=jnp.int32)
  return j // num_images if quirk else j // num_views


def nt_xent(z1: Array, z2: Array, temperature: float = 0.1, normalize: bool = True,
            queue: Optional[Array] = None) -> Array:
  """SimCLR's NT-Xent as coded (`simclr:objective.py`): the SUM of the two directional means.

  Row i of `z1` and row i of `z2` are the two views of image i. Anchor z1_i's 2N logits are
  [z1_i . z2_j / t for all j (positive j = i)] + [z1_i . z1_j / t for j != i (self masked)],
  and symmetrically for z2_i; the loss is mean_i CE(a_i, i) + mean_i CE(b_i, i). Every
  anchor's negatives are the 2N - 2 other views of the WHOLE batch: under `jit` with the batch
  sharded over devices this (N, N) matmul is global (cross-device negatives). With a `queue`
  (SimCLRv2's MoCo-style memory), every anchor of both directions also gets the K logits
  anchor . q_k / t as negatives (2N + K logits).

  Args:
    z1, z2: (N, D) projections of view 1 and view 2.
    temperature: t (0.1 in SimCLRv2).
    normalize: L2-normalise z first (`hidden_norm=True`).
    queue: optional (K, D) extra negatives, used as given (the caller normalises them); no
      gradient flows into them.

  Returns:
    (loss, accuracy): the scalar loss and the fraction of anchors whose positive has the
    highest logit (SimCLR's `contrast_acc`).
  """
  z1, z2 = _as_float(z1), _as_float(z2)
  if normalize:
    z1, z2 = l2_normalize(z1), l2_normalize(z2)
  n = z1.shape[0]
  hi = jax.lax.Precision.HIGHEST
  self_mask = jnp.eye(n, dtype=bool)
  masked = lambda s: jnp.where(self_mask, -1e9, s)
  sim = lambda a, b: jnp.matmul(a, b.T, precision=hi) / temperature
  memory = [] if queue is None else [jax.lax.stop_gradient(_as_float(queue))]
  logits_a = jnp.concatenate([sim(z1, z2), masked(sim(z1, z1))]
                             + [sim(z1, q) for q in memory], axis=1)  # (N, 2N [+ K])
  logits_b = jnp.concatenate([sim(z2, z1), masked(sim(z2, z2))]
                             + [sim(z2, q) for q in memory], axis=1)
  positives = jnp.arange(n)
  loss = softmax_xent(logits_a, positives) + softmax_xent(logits_b, positives)
  accuracy = jnp.mean(jnp.concatenate([logits_a.argmax(-1), logits_b.argmax(-1)]) ==
                      jnp.tile(positives, 2))
  return loss, accuracy


def soft_xent(student_logits: Array, teacher_logits: Array, temperature: float = 1.0,
              mask: Optional[Array] = None) -> Array:
  """Distillation loss (SimCLRv2 eq. 2): mean_x -sum_y softmax(t/T)_y log softmax(s/T)_y.

  No gradient flows into `teacher_logits`. Args: (N, C) logits each, temperature T, optional
  (N,) weights as in `softmax_xent`. Returns a scalar.
  """
  targets = jax.nn.softmax(jax.lax.stop_gradient(_as_float(teacher_logits)) / temperature, -1)
  return soft_target_xent(_as_float(student_logits) / temperature, targets, mask)


def soft_target_xent(logits: Array, targets: Array, mask: Optional[Array] = None) -> Array:
  """Cross-entropy with probability targets: mean_x -sum_y targets_y log softmax(logits)_y.

  Args: logits (N, C), targets (N, C) probabilities (rows sum to 1; no gradient taken),
  optional (N,) weights as in `softmax_xent`. Returns a scalar.
  """
  logp = jax.nn.log_softmax(_as_float(logits), axis=-1)
  targets = jax.lax.stop_gradient(_as_float(targets))
  return _masked_mean(-jnp.sum(targets * logp, axis=-1), mask)


def virtual_teacher(labels: Array, num_classes: int, correct_prob: float) -> Array:
  """Yuan et al.'s (2020) hand-designed teacher: (N, K) probabilities, `correct_prob` = a on
  the label and (1 - a) / (K - 1) on every other class (labels (N,) int)."""
  rest = (1.0 - correct_prob) / (num_classes - 1)
  return jnp.where(jax.nn.one_hot(labels, num_classes) > 0, correct_prob, rest)


def pirl_nce(memory: Array, query: Array, negatives: Array, temperature: float,
             noise_ratio: float, log_normalizer: Array | float = 0.0) -> Array:
  """PIRL's NCE loss (Misra & van der Maaten 2020, eq. 3; Wu et al. 2018's estimator), mean
  over the batch: `-log h(m, q) - sum_{m' in negatives} log(1 - h(m', q))`, with
  h(u, v) = P / (P + noise_ratio), P = exp(u.v / T) / Z, noise_ratio = N / |D| (N negatives
  drawn uniformly from |D| data points), log Z = `log_normalizer` (`nce_log_normalizer`).

  memory, query: (B, D) unit vectors (m_I and f(v_I) or g(v_I^t)); negatives: (N, D) unit
  vectors from the memory bank. Computed in log space.
  """
  log_ratio = jnp.log(noise_ratio)
  pos = jnp.sum(memory * query, -1) / temperature - log_normalizer
  neg = query @ negatives.T / temperature - log_normalizer
  log_h = pos - jnp.logaddexp(pos, log_ratio)
  log_not_h = log_ratio - jnp.logaddexp(neg, log_ratio)
  return jnp.mean(-log_h - log_not_h.sum(-1))


def nce_log_normalizer(query: Array, negatives: Array, temperature: float,
                       num_data: int) -> Array:
  """log Z of Wu et al.'s NCE: Z = |D| x the mean of exp(q.m' / T) over the batch's queries
  (B, D) and negatives (N, D), so that P = exp(s / T) / Z averages 1 / |D| (a distribution
  over the data points); estimated once (the first step) and then kept fixed."""
  scores = (query @ negatives.T / temperature).reshape(-1)
  return jax.scipy.special.logsumexp(scores) - jnp.log(scores.size) + jnp.log(num_data)
