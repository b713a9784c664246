"""Weighted kNN against scikit-learn's KNeighborsClassifier on the same features."""
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from s4l_jax.evaluators import knn


@pytest.mark.parametrize("k,temperature", [(20, 0.07), (5, 0.5), (1, 1.0)])
def test_knn_matches_sklearn_cosine_neighbours_with_exponential_weights(k, temperature):
  rng = np.random.default_rng(k)
  centers = rng.normal(size=(4, 16))
  train_y = rng.integers(0, 4, 300)
  train_x = centers[train_y] + rng.normal(scale=1.5, size=(300, 16))
  test_x = centers[rng.integers(0, 4, 200)] + rng.normal(scale=1.5, size=(200, 16))
  ours = knn.knn_predict(train_x.astype(np.float32), train_y, test_x.astype(np.float32), k=k,
                         temperature=temperature, num_classes=4)
  # cosine distance d = 1 - similarity: the weight exp(similarity / T) = exp((1 - d) / T)
  theirs = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                                weights=lambda d: np.exp((1 - d) / temperature))
  np.testing.assert_array_equal(ours, theirs.fit(train_x, train_y).predict(test_x))


def test_knn_chunks_and_caps_k():
  """More queries than a chunk, and k larger than the labeled set, still agree with k = M."""
  rng = np.random.default_rng(0)
  train_x, train_y = rng.normal(size=(7, 3)), rng.integers(0, 2, 7)
  test_x = rng.normal(size=(knn.CHUNK + 5, 3))
  np.testing.assert_array_equal(
      knn.knn_predict(train_x, train_y, test_x, k=50, num_classes=2),
      knn.knn_predict(train_x, train_y, test_x, k=7, num_classes=2))
