"""k-means in JAX (ClusterFit's clustering): k-means++ seeding, then Lloyd's iterations.

Deterministic for a given key (`kmeans(x, k, seed)`); the iterations are those of
scikit-learn's `KMeans(algorithm="lloyd")` from the same initial centres: each point goes to its
nearest centre (squared Euclidean distance, ties to the lowest index), each centre moves to
the mean of its points, and a centre that loses all its points stays where it was.
"""
import functools

import jax
import jax.numpy as jnp


def squared_distances(x, centres):
  """(N, D), (K, D) -> (N, K) squared Euclidean distances."""
  return (jnp.sum(x * x, -1)[:, None] - 2.0 * x @ centres.T
          + jnp.sum(centres * centres, -1)[None, :])


@functools.partial(jax.jit, static_argnames="k")
def kmeans_plus_plus(x, k: int, key):
  """(K, D) initial centres: k-means++'s D^2 sampling (Arthur & Vassilvitskii 2007), the first
  centre uniform over the N points, each next one drawn with probability proportional to its
  squared distance to the nearest centre so far."""
  keys = jax.random.split(key, k)
  first = x[jax.random.randint(keys[0], (), 0, x.shape[0])]
  centres = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
  nearest = jnp.sum((x - first) ** 2, -1)

  def add(i, carry):
    centres, nearest = carry
    pick = x[jax.random.categorical(keys[i], jnp.log(jnp.maximum(nearest, 0.0)))]
    return centres.at[i].set(pick), jnp.minimum(nearest, jnp.sum((x - pick) ** 2, -1))
  return jax.lax.fori_loop(1, k, add, (centres, nearest))[0]


@functools.partial(jax.jit, static_argnames="iterations")
def lloyd(x, centres, iterations: int = 100):
  """Lloyd's iterations from `centres` (K, D): (final centres (K, D), assignments (N,) int32,
  the points' nearest centres among the final ones)."""
  k = centres.shape[0]

  def step(_, centres):
    assign = jnp.argmin(squared_distances(x, centres), -1)
    sums = jax.ops.segment_sum(x, assign, k)
    counts = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), assign, k)
    return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centres)
  centres = jax.lax.fori_loop(0, iterations, step, centres)
  return centres, jnp.argmin(squared_distances(x, centres), -1).astype(jnp.int32)


def kmeans(x, k: int, seed: int, iterations: int = 100):
  """k-means of x (N, D) into k clusters: (centres (K, D), assignments (N,) int32)."""
  x = jnp.asarray(x, jnp.float32)
  if not 1 <= k <= x.shape[0]:
    raise ValueError(f"k-means into {k} clusters needs 1 <= k <= the {x.shape[0]} points")
  return lloyd(x, kmeans_plus_plus(x, k, jax.random.PRNGKey(seed)), iterations)
