"""Stochastic depth (Huang et al. 2016), the Noisy Student's noise inside the residual units.

In training, each residual branch of unit l (1..L) is kept per example with probability
p_l = 1 - l / L * (1 - p_L) (the linear decay rule; Noisy Student: p_L = 0.8) and scaled by
1 / p_l when kept, so that evaluation (no drop, no scaling) sees the same expected output.
"""
import jax
import jax.numpy as jnp


def survival_probabilities(num_units: int, final: float) -> tuple[float, ...]:
  """(p_1, ..., p_L) for L = num_units with p_L = final (1.0: no stochastic depth)."""
  return tuple(1.0 - l / num_units * (1.0 - final) for l in range(1, num_units + 1))


def drop_path(rng, residual: jax.Array, survival) -> jax.Array:
  """residual (N, ...) with each example's branch zeroed with prob 1 - survival, else / survival."""
  keep = jax.random.bernoulli(rng, survival, (residual.shape[0],) + (1,) * (residual.ndim - 1))
  return residual * (keep.astype(residual.dtype) / jnp.asarray(survival, residual.dtype))


def residual_sum(module, residual, shortcut, survival, train: bool):
  """`shortcut + residual` of a unit of `module` (a trunk with field `stochastic_depth`), the
  residual branch dropped as `drop_path` in training when stochastic depth is on."""
  if train and module.stochastic_depth < 1:
    residual = drop_path(module.make_rng("dropout"), residual, survival)
  return residual + shortcut
