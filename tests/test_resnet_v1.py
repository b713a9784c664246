"""Tests for s4l_jax.models.resnet_v1: SimCLRv2's ResNet v1 (+SK) trunk."""
import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from s4l_jax import config_lib
from s4l_jax.models import build_model, model_record, presets
from s4l_jax.models import resnet_v1
from s4l_jax.models.resnet_v1 import ResNetV1

SK = 0.0625  # the released SimCLRv2 SK models' sk_ratio


def _count(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _abstract_init(model, shape, **kw):
  """(outputs, variables) as ShapeDtypeStructs: nothing is compiled or allocated."""
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(0), x, train=False, **kw), x)


def _closed_form_count(units, w, sk_ratio):
  """Trunk parameters: convs without bias, BN scale + bias (`simclr:resnet.py`)."""
  bn = lambda c: 2 * c  # noqa: E731
  if sk_ratio:  # ResNet-D stem: 3x3 convs 32w (stride 2), 32w, 64w
    n = 9 * 3 * 32 * w + bn(32 * w) + 9 * 32 * w * 32 * w + bn(32 * w)
    n += 9 * 32 * w * 64 * w + bn(64 * w)
  else:
    n = 49 * 3 * 64 * w + bn(64 * w)
  c = 64 * w
  for b, count in enumerate(units):
    f = 64 * w * 2**b
    for u in range(count):
      n += (c * 4 * f + bn(4 * f)) if u == 0 else 0  # projection shortcut
      n += c * f + bn(f)  # 1x1
      if sk_ratio:
        mid = max(int(f * sk_ratio), 32)
        n += 9 * f * 2 * f + bn(2 * f) + f * mid + bn(mid) + mid * 2 * f
      else:
        n += 9 * f * f + bn(f)
      n += f * 4 * f + bn(4 * f)  # 1x1 expansion
      c = 4 * f
  return n


@pytest.mark.parametrize("preset, units, width, sk, millions", [
    ("r50_1x", (3, 4, 6, 3), 1, 0.0, 23.5),
    ("r152_3x_sk", (3, 8, 36, 3), 3, SK, 795),
])
def test_parameter_counts_and_output(preset, units, width, sk, millions):
  """R50-1x: 23,508,032 = torchvision's ResNet-50 (25,557,032) without its 1000-way fc;
  R152-3x+SK: the released model's 795M (backbone up to the pooling, simclr#118)."""
  cfg = dict(presets.MODEL_PRESETS[preset], heads={"classes": -1})
  out, variables = _abstract_init(build_model(cfg, 1000), (2, 224, 224, 3))
  assert out["pre_logits"].shape == (2, 2048 * width)
  assert out["pre_logits"].dtype == jnp.float32
  n = _count(variables["params"]["trunk"])
  assert n == _closed_form_count(units, width, sk)
  assert round(n / 1e6, 1 if millions < 100 else 0) == millions
  if preset == "r50_1x":
    assert n == 25_557_032 - (2048 * 1000 + 1000)


@pytest.mark.parametrize("sk_ratio", [0.0, SK])
def test_stride_positions(sk_ratio):
  """224 px: stem /2 and max-pool /2 -> 56; each group's first unit strides in its 3x3 conv
  (v1.5: its 1x1 keeps the input resolution) -> 56, 28, 14, 7 before the pooling."""
  model = build_model(dict(name="resnet_v1", depth=50, sk_ratio=sk_ratio, heads={}), 10)
  _, variables = _abstract_init(model, (1, 224, 224, 3), capture_intermediates=True,
                                mutable=True)
  shapes = jax.tree.map(lambda a: a.shape[1:], variables["intermediates"]["trunk"])
  stem = ["root_conv1", "root_conv2", "root_conv3"] if sk_ratio else ["root_conv"]
  assert all(shapes[name]["__call__"][0][:2] == (112, 112) for name in stem)
  before = 56
  for b, (size, filters) in enumerate(((56, 64), (28, 128), (14, 256), (7, 512))):
    unit = f"block{b + 1}_unit1"
    assert shapes[f"{unit}_conv1"]["__call__"][0] == (before, before, filters)
    assert shapes[f"{unit}_conv2"]["__call__"][0] == (size, size, filters * (2 if sk_ratio else 1))
    assert shapes[f"{unit}_proj"]["__call__"][0] == (size, size, 4 * filters)
    last = f"block{b + 1}_unit{(3, 4, 6, 3)[b]}"
    assert shapes[f"{last}_conv3"]["__call__"][0] == (size, size, 4 * filters)
    before = size


@pytest.fixture(scope="module")
def r26_sk():
  """(model, x, variables) of ResNet-26 1x+SK on 8x8 images in [-1, 1]."""
  model = build_model(dict(name="resnet_v1", depth=26, sk_ratio=SK, heads={}), 10)
  x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 3), minval=-1, maxval=1)
  init = jax.jit(functools.partial(model.init, train=False))
  return model, x, jax.device_get(init(jax.random.key(0, impl="rbg"), x))


@pytest.mark.slow
def test_init_zero_last_bn_scale_and_conv_init(r26_sk):
  """The last BN of every unit starts with scale 0 (so each unit starts as ReLU(shortcut));
  every other BN with 1; conv kernels ~ truncated normal, std sqrt(1 / fan_in)."""
  _, _, variables = r26_sk
  trunk = variables["params"]["trunk"]
  bns = {k: v for k, v in trunk.items() if "bn" in k}
  last = [k for k in bns if k.startswith("block") and k.endswith("_bn3")]
  assert len(last) == 8
  for name, params in bns.items():
    np.testing.assert_array_equal(params["scale"], 0.0 if name in last else 1.0, err_msg=name)
    np.testing.assert_array_equal(params["bias"], 0.0, err_msg=name)
  kernel = trunk["block4_unit2_conv2"]["kernel"]  # 3x3, 512 -> 1024: 4.7M values
  fan_in = 9 * 512
  assert abs(kernel.std() * np.sqrt(fan_in) - 1) < 0.01
  assert np.abs(kernel).max() <= 2 / 0.8796 / np.sqrt(fan_in)  # truncated at 2 std


@pytest.mark.slow
def test_input_is_mapped_to_unit_range(r26_sk):
  """The stem sees (x + 1) / 2: its first conv output equals a NumPy 3x3/2 conv (fixed
  padding 1) of that."""
  model, x, variables = r26_sk
  _, state = model.apply(variables, x, train=False, capture_intermediates=True)
  got = state["intermediates"]["trunk"]["root_conv1"]["__call__"][0]
  kernel = variables["params"]["trunk"]["root_conv1"]["kernel"]
  np.testing.assert_allclose(got, _np_conv((np.asarray(x) + 1) / 2, kernel, 2),
                             rtol=1e-4, atol=1e-5)


def _np_conv(x, kernel, stride):
  """float64 NHWC conv with fixed padding (k - 1) // 2 per side, VALID."""
  x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
  k = kernel.shape[0]
  p = (k - 1) // 2
  x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  h, w = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
  return sum(x[:, i:i + stride * h:stride, j:j + stride * w:stride] @ kernel[i, j]
             for i in range(k) for j in range(k))


def _np_bn(y, params, eps=1e-5):
  """Train-mode BN over all but the channel axis (biased variance)."""
  axes = tuple(range(y.ndim - 1))
  return ((y - y.mean(axes)) / np.sqrt(y.var(axes) + eps) * params["scale"]
          + params["bias"])


def _np_avg_pool_2x2(x, stride):
  """TF average_pooling2d(2, stride): stride 1 SAME without the padding in the mean;
  strided: one zero row/column after, VALID."""
  if stride == 1:
    ones = np.ones(x.shape[:3] + (1,))
    pad = lambda a: np.pad(a, ((0, 0), (0, 1), (0, 1), (0, 0)))  # noqa: E731
    xs, ns = pad(x), pad(ones)
    total = xs[:, :-1, :-1] + xs[:, 1:, :-1] + xs[:, :-1, 1:] + xs[:, 1:, 1:]
    count = ns[:, :-1, :-1] + ns[:, 1:, :-1] + ns[:, :-1, 1:] + ns[:, 1:, 1:]
    return total / count
  x = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
  h, w = (x.shape[1] - 2) // stride + 1, (x.shape[2] - 2) // stride + 1
  return sum(x[:, i:i + stride * h:stride, j:j + stride * w:stride]
             for i in range(2) for j in range(2)) / 4


@pytest.mark.parametrize("shape", [(5, 1, 1, 1024), (2, 1, 1, 2048), (3, 3, 5, 64),
                                   (2, 4, 4, 8)])
@pytest.mark.parametrize("stride", [1, 2])
def test_resnet_d_shortcut_pool_is_the_same_jitted_and_eager(shape, stride):
  """The ResNet-D shortcut's pool equals TF's definition eager and jitted; (5, 1, 1, 1024)
  is where pad + reduce_window came out 4x too large under jit on XLA:CPU."""
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  expected = _np_avg_pool_2x2(x.astype(np.float64), stride)
  eager = resnet_v1._avg_pool_2x2(jnp.asarray(x), stride)
  jitted = jax.jit(resnet_v1._avg_pool_2x2, static_argnums=1)(jnp.asarray(x), stride)
  np.testing.assert_allclose(eager, expected, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(jitted, expected, rtol=1e-6, atol=1e-6)


def _np_unit(x, p, filters, stride, sk_ratio):
  """One bottleneck unit in float64 NumPy (train-mode BN), from simclr:resnet.py."""
  relu = lambda a: np.maximum(a, 0)  # noqa: E731
  if "u_proj" in p:
    pooled = _np_avg_pool_2x2(x, stride) if sk_ratio else x
    shortcut = _np_bn(_np_conv(pooled, p["u_proj"]["kernel"], 1 if sk_ratio else stride),
                      p["u_proj_bn"])
  else:
    shortcut = x
  h = relu(_np_bn(_np_conv(x, p["u_conv1"]["kernel"], 1), p["u_bn1"]))
  h = relu(_np_bn(_np_conv(h, p["u_conv2"]["kernel"], stride), p["u_bn2"]))
  if sk_ratio:
    u1, u2 = h[..., :filters], h[..., filters:]
    s = (u1 + u2).mean(axis=(1, 2), keepdims=True)
    z = relu(_np_bn(s @ np.asarray(p["u_sk_conv1"]["kernel"][0, 0], np.float64), p["u_sk_bn"]))
    logits = z @ np.asarray(p["u_sk_conv2"]["kernel"][0, 0], np.float64)
    e1, e2 = np.exp(logits[..., :filters]), np.exp(logits[..., filters:])
    h = (e1 * u1 + e2 * u2) / (e1 + e2)
  h = _np_bn(_np_conv(h, p["u_conv3"]["kernel"], 1), p["u_bn3"])
  return relu(h + shortcut)


class _OneUnit(ResNetV1):
  """A single `_unit` named "u" (filters, stride as fields) for unit-level tests."""
  filters: int = 8
  stride: int = 1

  @nn.compact
  def __call__(self, x, train):
    return self._unit(x, self.filters, self.stride, train, "u", 1.0)


def _random_params(params, seed=0):
  """Same tree with random values: BN scales U(0.5, 1.5) (not 0), biases and kernels normal."""
  rng = np.random.default_rng(seed)
  def draw(path, a):
    if path[-1].key == "scale":
      return rng.uniform(0.5, 1.5, a.shape).astype(np.float32)
    scale = 0.3 if path[-1].key == "bias" else 1 / np.sqrt(np.prod(a.shape[:-1]))
    return (rng.normal(size=a.shape) * scale).astype(np.float32)
  return jax.tree_util.tree_map_with_path(draw, params)


@pytest.mark.slow
@pytest.mark.parametrize("sk_ratio, in_channels, stride", [
    (0.0, 16, 2), (SK, 16, 2), (SK, 12, 1), (SK, 32, 1), (0.0, 32, 1)])
def test_unit_matches_numpy(sk_ratio, in_channels, stride, x64):
  """A unit (projection or identity shortcut, ResNet-D avg-pool shortcut, SK mixing) in train
  mode equals an independent float64 NumPy computation, in float64 to 1e-10; 7x7 inputs make
  the strided avg-pool read its padding row. (Float32 is not a sharper check: the SK
  attention's BN normalises over 4 pooled values, which turns rounding into errors up to 2e-4
  that differ between CPUs.)"""
  del x64
  unit = _OneUnit(sk_ratio=sk_ratio, filters=8, stride=stride, dtype=jnp.float64)
  x = jax.random.normal(jax.random.key(2), (4, 7, 7, in_channels), jnp.float64)
  variables = unit.init(jax.random.key(0), x, False)
  params = jax.tree.map(lambda a: a.astype(np.float64), _random_params(variables["params"]))
  assert ("u_proj" in params) == (in_channels != 32 or stride > 1)
  assert ("u_sk_conv1" in params) == bool(sk_ratio)
  y, _ = unit.apply({**variables, "params": params}, x, True, mutable=["batch_stats"])
  assert y.dtype == jnp.float64
  np.testing.assert_allclose(y, _np_unit(np.asarray(x), params, 8, stride, sk_ratio),
                             rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_sk_mixing_weights_sum_to_one():
  """With identical streams (U1 = U2 = U) the SK output is U whatever the attention
  parameters, iff the two mixing weights of each channel sum to 1: the unit's last 1x1 conv
  then sees U (its output equals U @ kernel)."""
  unit = _OneUnit(sk_ratio=SK, filters=8, stride=1)
  x = jax.random.normal(jax.random.key(2), (4, 5, 5, 32))
  variables = unit.init(jax.random.key(0), x, False)
  p = _random_params(variables["params"], seed=1)
  k2, bn2 = p["u_conv2"]["kernel"], p["u_bn2"]
  p["u_conv2"]["kernel"] = np.concatenate([k2[..., :8]] * 2, axis=-1)
  p["u_bn2"] = {k: np.concatenate([v[:8]] * 2) for k, v in bn2.items()}
  p["u_sk_conv2"]["kernel"] *= 10  # far from uniform weights
  _, state = unit.apply({**variables, "params": p}, x, True, mutable=["batch_stats"],
                        capture_intermediates=True)
  inter = state["intermediates"]
  u = np.maximum(np.asarray(inter["u_bn2"]["__call__"][0], np.float64), 0)
  np.testing.assert_array_equal(u[..., :8], u[..., 8:])
  np.testing.assert_allclose(inter["u_conv3"]["__call__"][0],
                             u[..., :8] @ p["u_conv3"]["kernel"][0, 0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_remat_keeps_parameters_and_gradients(x64):
  """Rematerialisation recomputes the same function: same parameters and, in float64, the same
  gradients to 1e-10. (In float32 the two programs round differently: with XLA's Eigen
  convolutions, gradients of ResNet-26+SK differ by up to 1e-4 of a leaf's scale, each as far
  from the float64 gradient as the other.)"""
  del x64
  x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 3), jnp.float64, minval=-1, maxval=1)
  trunks = [ResNetV1(depth=26, sk_ratio=SK, dtype=jnp.float64, remat=remat)
            for remat in (False, True)]
  variables = [jax.jit(functools.partial(t.init, train=False))(jax.random.key(0), x)
               for t in trunks]
  assert jax.tree.map(jnp.shape, variables[0]) == jax.tree.map(jnp.shape, variables[1])
  variables = [jax.tree.map(lambda a: a.astype(jnp.float64), v) for v in variables]

  def grads(trunk):
    def loss(params):
      out, _ = trunk.apply({**variables[0], "params": params}, x, train=True,
                           mutable=["batch_stats"])
      return jnp.sum(jnp.sin(out))
    return jax.jit(jax.grad(loss))(variables[0]["params"])
  plain, remat = grads(trunks[0]), grads(trunks[1])
  assert all(a.dtype == jnp.float64 for a in jax.tree.leaves(plain))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12),
               plain, remat)


@pytest.mark.parametrize("cfg, match", [
    (dict(depth=34), r"^ResNet v1 depth must be one of \[26, 50, 101, 152, 200\], got 34\."),
    (dict(width_multiplier=1.5), r"^ResNet v1 width_multiplier must be an int >= 1, got 1\.5"),
    (dict(sk_ratio=-0.1), r"^ResNet v1 sk_ratio must be >= 0, got -0\.1\."),
])
def test_bad_config_fails_in_one_line(cfg, match):
  with pytest.raises(ValueError, match=match):
    _abstract_init(build_model(dict(name="resnet_v1", **cfg), 10), (1, 32, 32, 3))


@pytest.mark.parametrize("preset", ["r50_1x", "r50_2x_sk", "r152_3x_sk", "r26_1x"])
def test_presets_round_trip_through_the_record(preset):
  """base_config's model section with a SimCLRv2 preset -> JSON record -> the same module,
  with SimCLR's BN (momentum 0.9, epsilon 1e-5) and the SimCLRv2 projection head."""
  c = config_lib.base_config(dataset="digits", labels="all", labeled_batch=8, model=preset)
  c.model.heads = ml_collections.ConfigDict(dict(
      proj=dict(dims=(64, 64, 16), batch_norm=True, use_bias=False, kernel_init="normal",
                output_bn_bias=False),
      classes=dict(dims=-1, input="proj_1", kernel_init="normal", zero_init=True)))
  record = model_record(c.model, 10)
  assert record == json.loads(json.dumps(record))
  expected = {k: v for k, v in presets.MODEL_PRESETS[preset].items()}
  assert {k: record[k] for k in expected} == expected
  assert (record["bn_momentum"], record["bn_epsilon"]) == (0.9, 1e-5)
  assert "width" not in record and "filters_factor" not in record
  assert record["heads"]["proj"]["output_bn_bias"] is False
  rebuilt = build_model(json.loads(json.dumps(record)), 10)
  assert rebuilt == build_model(c.model, 10)
  assert rebuilt.trunk.bn_momentum == 0.9 and rebuilt.trunk.depth == expected["depth"]
  assert build_model({"name": "resnet_v1"}, 10).trunk == ResNetV1()  # SimCLR's BN by default
  assert ResNetV1().bn_epsilon == 1e-5
