"""Memory accounting from abstract shapes (nothing compiled or allocated), for the benchmarks."""
import jax
import numpy as np


def tree_bytes(tree) -> int:
  """Bytes of every array (or ShapeDtypeStruct) in `tree`."""
  return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def saved_activation_bytes(loss_fn, *args) -> int:
  """Bytes of the arrays the backward pass of `loss_fn` keeps (its arguments excluded).

  JAX's autodiff residuals (`saved_residuals`, what `jax.ad_checkpoint.print_saved_residuals`
  prints), from abstract arguments: backend-independent, and what `model.remat` and the
  compute dtype change. A compiler may keep fewer (fusing cheap ops into the backward pass),
  never needs more, and adds its own working set.
  """
  from jax._src.ad_checkpoint import saved_residuals  # pylint: disable=g-import-not-at-top
  return sum(int(np.prod(aval.shape)) * aval.dtype.itemsize
             for aval, source in saved_residuals(loss_fn, *args)
             if "from the argument" not in source)
