"""k-means: Lloyd's iterations against scikit-learn's from the same centres, the k-means++
seeding, determinism and the one-line error."""
import jax
import numpy as np
import pytest
from sklearn.cluster import KMeans

from s4l_jax import kmeans


def blobs(seed=0, n=300, d=5, k=6):
  rng = np.random.default_rng(seed)
  centres = rng.normal(0, 4, (k, d))
  return (centres[rng.integers(0, k, n)] + rng.normal(0, 1.5, (n, d))).astype(np.float32)


def test_lloyd_matches_sklearn_from_the_same_centres():
  x = blobs()
  init = x[:6]
  centres, assign = kmeans.lloyd(x, init, iterations=100)
  ref = KMeans(6, init=init, n_init=1, max_iter=100, tol=0, algorithm="lloyd").fit(x)
  np.testing.assert_array_equal(assign, ref.labels_)
  np.testing.assert_allclose(centres, ref.cluster_centers_, rtol=1e-4, atol=1e-4)


def test_empty_cluster_keeps_its_centre():
  x = np.array([[0.0], [0.1], [1.0]], np.float32)
  centres, assign = kmeans.lloyd(x, np.array([[0.0], [1.0], [50.0]], np.float32), iterations=3)
  np.testing.assert_allclose(centres, [[0.05], [1.0], [50.0]], rtol=1e-6)
  np.testing.assert_array_equal(assign, [0, 0, 1])


def test_kmeans_plus_plus_picks_distinct_points_and_is_seeded():
  x = blobs(1)
  a = np.asarray(kmeans.kmeans_plus_plus(x, 6, jax.random.PRNGKey(3)))
  b = np.asarray(kmeans.kmeans_plus_plus(x, 6, jax.random.PRNGKey(3)))
  np.testing.assert_array_equal(a, b)
  rows = [np.flatnonzero((x == c).all(-1)) for c in a]
  assert all(len(r) == 1 for r in rows) and len({int(r[0]) for r in rows}) == 6


def test_kmeans_is_deterministic_and_as_good_as_sklearn():
  x = blobs(2)
  (c1, a1), (c2, a2) = kmeans.kmeans(x, 6, seed=0), kmeans.kmeans(x, 6, seed=0)
  np.testing.assert_array_equal(a1, a2)
  np.testing.assert_array_equal(c1, c2)
  inertia = ((x - np.asarray(c1)[np.asarray(a1)]) ** 2).sum()
  ref = KMeans(6, n_init=10, random_state=0).fit(x).inertia_
  assert inertia <= 1.05 * ref


def test_bad_k_fails_in_one_line():
  with pytest.raises(ValueError, match=r"^k-means into 5 clusters needs 1 <= k <= the 3 points$"):
    kmeans.kmeans(np.zeros((3, 2)), 5, seed=0)
