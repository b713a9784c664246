"""Confusion matrix and balanced accuracy against scikit-learn; the PNG decodes."""
import io

import numpy as np
from PIL import Image
from sklearn import metrics

from s4l_jax.evaluators import per_class


def test_per_class_matches_sklearn():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 200)  # class 4 of 5 never occurs
  predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 5, 200))
  matrix = per_class.confusion_matrix(labels, predictions, 5)
  np.testing.assert_array_equal(matrix, metrics.confusion_matrix(labels, predictions,
                                                                 labels=range(5)))
  summary = per_class.summarize(matrix)
  assert summary["balanced_accuracy"] == metrics.balanced_accuracy_score(labels, predictions)
  assert summary["accuracy"] == metrics.accuracy_score(labels, predictions)
  np.testing.assert_allclose(summary["per_class_accuracy"][:4], metrics.recall_score(
      labels, predictions, labels=range(4), average=None))
  assert summary["per_class_accuracy"][4] is None


def test_png_is_the_row_normalised_matrix():
  matrix = np.array([[3, 1], [0, 2]])
  image = np.asarray(Image.open(io.BytesIO(per_class.to_png(matrix, cell=3))))
  assert image.shape == (6, 6)
  np.testing.assert_array_equal(image[::3, ::3], [[191, 64], [0, 255]])
