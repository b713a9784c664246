"""The L-BFGS linear probe against scikit-learn's LogisticRegression (same objective)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from s4l_jax.evaluators import linear_probe


@pytest.mark.slow
def test_probe_matches_sklearn_logistic_regression():
  rng = np.random.default_rng(0)
  n, l2 = 240, 1e-2
  labels = rng.integers(0, 3, n)
  features = rng.normal(size=(3, 6))[labels] + rng.normal(size=(n, 6))
  test = rng.normal(size=(50, 6))
  x, test_x = linear_probe.standardize(jnp.asarray(features, jnp.float32),
                                       jnp.asarray(test, jnp.float32))
  params = linear_probe.fit(x, jnp.asarray(labels), num_classes=3, l2=l2, steps=200)
  ours = np.asarray(jax.nn.softmax(linear_probe.predict_logits(params, test_x)))
  # sklearn minimises C * sum(CE) + |W|^2 / 2: the same optimum for C = 1 / (l2 * n)
  reference = LogisticRegression(C=1 / (l2 * n), tol=1e-10, max_iter=10_000)
  theirs = reference.fit(np.asarray(x), labels).predict_proba(np.asarray(test_x))
  np.testing.assert_allclose(ours, theirs, atol=1e-3)
  np.testing.assert_allclose(params[0].T, reference.coef_, atol=2e-3)


def test_standardize_uses_the_training_statistics():
  train, other = linear_probe.standardize(jnp.array([[0.0, 1.0], [2.0, 1.0]]),
                                          jnp.array([[1.0, 3.0]]))
  np.testing.assert_allclose(train, [[-1.0, 0.0], [1.0, 0.0]])
  np.testing.assert_allclose(other, [[0.0, 2e6]])  # a constant feature: std floored at 1e-6
