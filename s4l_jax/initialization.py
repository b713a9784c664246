"""Initial variables: fresh, with the subtrees `init_take` names taken from an export."""
import functools
from typing import Sequence

from absl import logging
import jax
import jax.numpy as jnp

from s4l_jax import export
from s4l_jax.models import subtrees


def init_variables(model, image_shape, rng, *, init_from: str = "", init_take: str = "all"):
  """`{"params", "batch_stats"}` of `model` for images (H, W, C), as numpy arrays.

  With `init_from` (an export dir) the top-level subtrees `init_take` selects (`all`,
  `trunk`, `trunk+proj_1`, ...; see `subtrees.select`) are the export's, which must hold
  them with the same structure and shapes.
  """
  dummy = jnp.zeros((1, *image_shape), jnp.float32)
  # One compiled program instead of hundreds of op-by-op ones (the same values for the
  # Glorot / variance-scaling initialisers; N(0, 0.01^2) may differ in the last bit).
  variables = jax.device_get(jax.jit(functools.partial(model.init, train=False))(rng, dummy))
  if not init_from:
    return variables
  names = subtrees.select(init_take, list(variables["params"]), "init_take")
  variables = take_subtrees(variables, export.load_variables(init_from), names, init_from)
  logging.info("Initialised %s from %s", "+".join(names), init_from)
  return variables


def take_subtrees(fresh: dict, loaded: dict, names: Sequence[str], source: str) -> dict:
  """`fresh` with its top-level subtrees `names` (in every collection) replaced by `loaded`'s.

  Raises ValueError naming the first path whose structure or shape differs, and both shapes.
  """
  out = {}
  for collection, tree in fresh.items():
    tree = dict(tree)
    for name in names:
      if name in tree:
        theirs = loaded.get(collection, {}).get(name)
        _check_same(tree[name], theirs, f"{collection}/{name}", source)
        tree[name] = jax.tree.map(lambda new, old: old.astype(new.dtype), tree[name], theirs)
    out[collection] = tree
  return out


def _check_same(ours, theirs, prefix: str, source: str):
  def shapes(tree):
    flat = jax.tree_util.tree_flatten_with_path(tree)[0] if tree is not None else []
    return {prefix + "/" + jax.tree_util.keystr(p, simple=True, separator="/"): tuple(a.shape)
            for p, a in flat}
  ours, theirs = shapes(ours), shapes(theirs)
  for path in sorted(ours.keys() | theirs.keys()):
    if ours.get(path) != theirs.get(path):
      raise ValueError(f"init_from {source}: {path} has shape {theirs.get(path, 'missing')} "
                       f"in the export but {ours.get(path, 'missing')} in the model; choose "
                       "the subtrees to take with init_take (e.g. init_take=trunk)")
