"""Geometric ops on crops: the random horizontal flip and the four quarter turns.

Registered: `flip`, `rotate4` (4 copies labelled `rotation` 0..3).
"""
import jax
import jax.numpy as jnp

from s4l_jax.data.ops import registry


def random_flip(rng, image):
  """Horizontal flip of (H, W, C) with probability 0.5."""
  return jnp.where(jax.random.bernoulli(rng), image[:, ::-1], image)


def rotate4(images):
  """(B, S, S, C) -> (B, 4, S, S, C): k counter-clockwise quarter turns, k=0..3."""
  return jnp.stack([jnp.rot90(images, k, axes=(1, 2)) for k in range(4)],
                   axis=1)


@registry.register_op("flip")
def flip_op():
  """Horizontal flip with probability 0.5."""
  return registry.Op(random_flip)


@registry.register_op("rotate4")
def rotate4_op():
  """The 4 rotations of each crop, labelled by quarter turns (S4L's `rotate`)."""
  return registry.Op(rotate4, copies=4, label="rotation", random=False)
