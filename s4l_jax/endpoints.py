"""Every representation a model computes, by name: the evaluators', `embed`'s and exports'.

Endpoints of a `models.Model` in evaluation mode, each float32 (N, D):
`block1 .. blockB` (each residual block group's output, globally average-pooled: the
residual stream of pre-activation trunks, post-ReLU for ResNet v1), `pre_logits` (the trunk's
pooled features), each MLP head's `h_0 .. h_L` (SimCLR's projection endpoints) and each head's
output (`classes`: the logits).
"""
import jax
import jax.numpy as jnp

from s4l_jax.models.heads import TRUNK_ENDPOINT as TRUNK
from s4l_jax.models.trunk import INTERMEDIATES


def apply_endpoints(model, variables, x) -> dict:
  """{endpoint: float32 (N, D)} of `model` on model inputs x (N, H, W, C) in [-1, 1]."""
  out, state = model.apply(variables, x, train=False, mutable=[INTERMEDIATES])
  blocks = {name: value[0] for name, value in state[INTERMEDIATES]["trunk"].items()}
  return {**blocks, **out}


def ordered(names) -> list:
  """`names` in depth order: block1 .. blockB, pre_logits, then the heads' endpoints by name."""
  blocks = sorted((n for n in names if n.startswith("block")), key=lambda n: int(n[5:]))
  rest = sorted(n for n in names if not n.startswith("block") and n != TRUNK)
  return blocks + [TRUNK] + rest


def endpoint_dims(model, variables, image_shape) -> dict:
  """{endpoint: D}, `ordered`, for images (H, W, C); traces, runs nothing."""
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  shapes = jax.eval_shape(lambda v, x: apply_endpoints(model, v, x), variables, x)
  return {name: int(shapes[name].shape[-1]) for name in ordered(shapes)}


def layer_endpoints(names) -> list:
  """The trunk's layers among `names`, block1 .. blockB then pre_logits: the "what each
  layer learns" curve of a linear probe."""
  return [n for n in ordered(names) if n.startswith("block") or n == TRUNK]


def check_endpoint(endpoint: str, names, where: str):
  """ValueError (one line) unless `endpoint` is one of `names`."""
  if endpoint not in names:
    raise ValueError(f"{where} has no endpoint {endpoint!r}; endpoints: {', '.join(names)}")
