"""Head specs and the head layers: linear or MLP heads reading a named endpoint.

A head spec in a config is either an int (a linear head on `pre_logits`; -1 = num_classes)
or a dict with the keys of `HeadSpec` (only `dims` is required). Examples:

    heads = dict(classes=-1, rotations=4)                       # linear heads
    heads = dict(proj=dict(dims=(2048, 2048, 128), batch_norm=True, use_bias=False,
                           kernel_init="normal", output_bn_bias=False),
                 classes=dict(dims=-1, input="proj_1"))         # SimCLRv2 fine-tuning
    heads = dict(classes=dict(dims=-1, stop_gradient=True))     # linear evaluation

A head whose `input` is `feature_map` (the trunk's last feature map (N, h, w, C) before
pooling) is dense: its layers act at every position (1x1 convolutions) and each of its
endpoints is returned flattened, (N, h * w * width), position-major (colorization's per-pixel
classifier; `dense_logits` restores (N, h, w, width)).

Endpoints: `pre_logits` (trunk) and, for a head `h` of L >= 2 layers, `h_0` (its input) and
`h_k` (the output of layer k, after BatchNorm and ReLU for hidden layers). Parameters: a
1-layer head is the top-level module `head_<h>`; layer k of a deeper head is `head_<h>_<k>`.
"""
import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from s4l_jax.models.normalization import BatchNorm

TRUNK_ENDPOINT = "pre_logits"
FEATURE_MAP = "feature_map"  # the trunk's spatial output, read by dense heads only
# HeadSpec.kernel_init -> Dense kernel initialiser ("normal": SimCLR's N(0, 0.01^2)).
KERNEL_INITS = {"glorot": nn.initializers.glorot_uniform(),
                "normal": nn.initializers.normal(stddev=0.01)}


@dataclasses.dataclass(frozen=True)
class HeadSpec:
  """One head: Dense layers of widths `dims` on the endpoint `input`.

  Attributes:
    dims: output width of each layer (-1 = num_classes until resolved; 0 = the width of the
      layer's input, as SimCLR's projection head: hidden width = encoder width).
    input: endpoint the head reads (`pre_logits`, `feature_map` or another head's `h_k`).
    batch_norm: BatchNorm after every layer (hidden layers: Dense -> BN -> ReLU).
    use_bias: Dense layers have a bias.
    zero_init: the output layer's kernel starts at zero.
    stop_gradient: no gradient flows into `input` (linear evaluation of a frozen trunk).
    kernel_init: Dense kernel initialiser, a `KERNEL_INITS` key (biases start at zero).
    output_bn_bias: the output layer's BatchNorm has a bias (False: scale only, as the last
      layer of SimCLRv2's projection head; needs batch_norm).
    keep: 0 = every layer; k >= 1 builds only the first k layers of this (>= 2-layer) head,
      with their names and endpoints `h_0 .. h_k` (the head's output is `h_k`): fine-tuning
      from the k-th projection layer (SimCLRv2's `ft_proj_selector`).
  """
  dims: tuple[int, ...]
  input: str = TRUNK_ENDPOINT
  batch_norm: bool = False
  use_bias: bool = True
  zero_init: bool = False
  stop_gradient: bool = False
  kernel_init: str = "glorot"
  output_bn_bias: bool = True
  keep: int = 0

  @property
  def num_built(self) -> int:
    """Layers this head builds (`keep`, or all)."""
    return self.keep or len(self.dims)

  def to_dict(self) -> dict:
    """JSON-able form (`dims` as a list); `parse_head` reads it back."""
    return dict(dataclasses.asdict(self), dims=list(self.dims))

  def module_names(self, name: str) -> list[str]:
    """Top-level parameter modules of head `name`, in layer order."""
    if len(self.dims) == 1:
      return [f"head_{name}"]
    return [f"head_{name}_{k}" for k in range(1, self.num_built + 1)]

  def endpoints(self, name: str) -> list[str]:
    """`h_0 .. h_L` for an MLP head (L >= 2 layers; L = keep if set), none for a linear one."""
    return [f"{name}_{k}" for k in range(self.num_built + 1)] if len(self.dims) > 1 else []


_FIELDS = tuple(f.name for f in dataclasses.fields(HeadSpec))


def parse_head(name: str, spec: Any, num_classes: int) -> HeadSpec:
  """int or mapping (ConfigDict, JSON dict) -> HeadSpec with -1 replaced by num_classes."""
  if isinstance(spec, int) and not isinstance(spec, bool):
    spec = dict(dims=(spec,))
  if not hasattr(spec, "keys"):
    raise ValueError(f"model.heads.{name}={spec!r} must be an int (linear head width) or a "
                     f"dict with keys {', '.join(_FIELDS)}")
  spec = {k: spec[k] for k in spec.keys()}
  unknown = sorted(set(spec) - set(_FIELDS))
  if unknown or "dims" not in spec:
    raise ValueError(f"model.heads.{name} has keys {sorted(spec)}; valid: "
                     f"{', '.join(_FIELDS)} (dims required)")
  dims = spec["dims"]
  dims = (dims,) if isinstance(dims, int) else tuple(dims)
  dims = tuple(num_classes if d == -1 else int(d) for d in dims)
  if not dims or any(d < 0 for d in dims):
    raise ValueError(f"model.heads.{name}.dims={spec['dims']!r} must be widths >= 1, -1 "
                     "(num_classes) or 0 (the layer's input width)")
  keep = spec.get("keep", 0)
  if keep and not 1 <= keep < len(dims):
    raise ValueError(f"model.heads.{name}.keep={keep} must be 0 (all layers) or 1..{len(dims) - 1}"
                     f" (fewer than the {len(dims)} layers of dims)")
  if spec.get("kernel_init", "glorot") not in KERNEL_INITS:
    raise ValueError(f"model.heads.{name}.kernel_init={spec['kernel_init']!r}; valid: "
                     f"{', '.join(KERNEL_INITS)}")
  if not spec.get("output_bn_bias", True) and not spec.get("batch_norm", False):
    raise ValueError(f"model.heads.{name}.output_bn_bias=False needs batch_norm=True")
  return HeadSpec(**dict(spec, dims=dims))


def parse_heads(heads: Any, num_classes: int) -> dict[str, HeadSpec]:
  """`model.heads` -> {name: HeadSpec}, in evaluation order (inputs before readers).

  Fails with one line on an unknown endpoint, a cycle or a name clash.
  """
  specs = {name: parse_head(name, spec, num_classes) for name, spec in heads.items()}
  produced = {TRUNK_ENDPOINT: None, FEATURE_MAP: None,
              **{n: n for n in specs}}  # endpoint -> head making it
  for name, spec in specs.items():
    for endpoint in spec.endpoints(name):
      if endpoint in produced:
        raise ValueError(f"model.heads: endpoint {endpoint!r} of head {name!r} clashes with "
                         "another head or endpoint name")
      produced[endpoint] = name
  ordered, pending = {}, dict(specs)
  while pending:
    ready = [n for n, s in pending.items()
             if s.input in (TRUNK_ENDPOINT, FEATURE_MAP) or produced.get(s.input) in ordered]
    if not ready:
      name, spec = next(iter(pending.items()))
      raise ValueError(f"model.heads.{name}.input={spec.input!r} is not an endpoint (or the "
                       f"heads read each other in a cycle); valid: {', '.join(produced)}")
    for name in ready:
      ordered[name] = pending.pop(name)
  return ordered


class DenseLayer(nn.Module):
  """Dense (params `kernel`, `bias`, as `nn.Dense`) -> [BatchNorm `bn`] -> [ReLU], float32.

  (N, D) -> (N, features). `kernel_init`: a `KERNEL_INITS` key; `bn_bias`: the BatchNorm
  has a bias.
  """
  features: int
  use_bias: bool = True
  batch_norm: bool = False
  relu: bool = False
  zero_init: bool = False
  kernel_init: str = "glorot"
  bn_bias: bool = True
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  bn_group_size: int | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    init = nn.initializers.zeros if self.zero_init else KERNEL_INITS[self.kernel_init]
    kernel = self.param("kernel", init, (x.shape[-1], self.features), jnp.float32)
    y = lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
      y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    if self.batch_norm:
      y = BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                    epsilon=self.bn_epsilon, dtype=jnp.float32, use_bias=self.bn_bias,
                    group_size=self.bn_group_size, name="bn")(y)
    return nn.relu(y) if self.relu else y


def dense_logits(flat, width: int):
  """A dense head's output (N, h * w * width) -> (N, h, w, width) (square maps, h = w)."""
  side = round((flat.shape[-1] // width) ** 0.5)
  return flat.reshape(flat.shape[0], side, side, width)


def apply_heads(specs: Mapping[str, HeadSpec], pre_logits: jax.Array, train: bool,
                bn: Mapping[str, Any], feature_map: jax.Array | None = None
                ) -> dict[str, jax.Array]:
  """Runs every head (call inside a compact method); returns {endpoint or head: (N, dim)}.

  `bn`: bn_momentum, bn_epsilon, bn_group_size for heads with batch_norm; `feature_map`
  (N, h, w, C): the input of dense heads (see the module docstring).
  """
  out = {TRUNK_ENDPOINT: pre_logits}
  for name, spec in specs.items():
    dense = spec.input == FEATURE_MAP
    x = feature_map if dense else out[spec.input]
    if spec.stop_gradient:
      x = lax.stop_gradient(x)
    layers = [x]
    last = len(spec.dims) - 1
    for k, (dim, module_name) in enumerate(zip(spec.dims, spec.module_names(name))):
      x = DenseLayer(dim or x.shape[-1], use_bias=spec.use_bias, batch_norm=spec.batch_norm, relu=k < last,
                     zero_init=spec.zero_init and k == last, kernel_init=spec.kernel_init,
                     bn_bias=spec.output_bn_bias or k < last, name=module_name,
                     **bn)(x, train)
      layers.append(x)
    flat = (lambda a: a.reshape(a.shape[0], -1)) if dense else (lambda a: a)
    out[name] = flat(x)
    out.update(zip(spec.endpoints(name), map(flat, layers)))
  return out
