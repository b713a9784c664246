"""Multinomial logistic regression on frozen features (a linear probe), fitted by L-BFGS.

Minimises mean cross-entropy + l2 / 2 * |W|^2 (bias not penalised): scikit-learn's
`LogisticRegression(C)` objective with C = 1 / (l2 * N). The evaluator standardises each
feature with the labeled set's mean and std first (`standardize`).
"""
import functools

import jax
import jax.numpy as jnp
import optax


def standardize(train_features, *others):
  """(train, *others) with train's per-feature mean removed and std (floored) divided."""
  mean = jnp.mean(train_features, axis=0)
  std = jnp.maximum(jnp.std(train_features, axis=0), 1e-6)
  return tuple((jnp.asarray(f) - mean) / std for f in (train_features, *others))


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def fit(features, labels, *, num_classes: int, l2: float, steps: int = 200):
  """(W (D, K), b (K,)) minimising the objective above on features (N, D), labels (N,)."""
  onehot = jax.nn.one_hot(labels, num_classes)

  def objective(params):
    w, b = params
    logits = features @ w + b
    return (jnp.mean(optax.softmax_cross_entropy(logits, onehot))
            + 0.5 * l2 * jnp.sum(w ** 2))

  params = (jnp.zeros((features.shape[1], num_classes)), jnp.zeros(num_classes))
  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry, _):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad,
                                   value_fn=objective)
    return (optax.apply_updates(params, updates), state), None

  (params, _), _ = jax.lax.scan(step, (params, solver.init(params)), None, length=steps)
  return params


def predict_logits(params, features):
  w, b = params
  return features @ w + b
