"""Tests for s4l_jax.models: shapes, parameter counts, heads and endpoints, BatchNorm."""
import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from s4l_jax import config_lib, endpoints
from s4l_jax.models import (  # pylint: disable=g-multiple-import
    TRUNKS, Trunk, build_model, model_record, noise, parameter_modules, register_trunk)
from s4l_jax.models import heads as heads_lib
from s4l_jax.models.normalization import BatchNorm


def _count(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _abstract_init(model, shape):
  """(outputs, variables) as ShapeDtypeStructs: nothing is compiled or allocated."""
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(0), x, train=False), x)


def _resnet50v2_count(k):
  """Closed-form trunk parameter count (convs without bias, BN scale + bias)."""
  n = 7 * 7 * 3 * 16 * k
  c = 16 * k
  for b, units in enumerate((3, 4, 6, 3)):
    o = 64 * k * 2**b
    m = o // 4
    for u in range(units):
      proj = c * o if u == 0 else 0  # Channels change (block 1) or stride 2.
      n += 2 * c + proj + c * m + 2 * m + 9 * m * m + 2 * m + m * o
      c = o
  return n + 2 * c


def _wrn_count(depth, width, classes):
  """Closed-form WRN trunk + linear head parameter count."""
  n = 3 * 3 * 3 * 16
  c = 16
  for b in range(3):
    o = 16 * width * 2**b
    for u in range((depth - 4) // 6):
      proj = c * o if u == 0 and (b > 0 or c != o) else 0
      n += 2 * c + proj + 9 * c * o + 2 * o + 9 * o * o
      c = o
  return n + 2 * c + c * classes + classes


def test_resnet50v2_shapes_and_param_count():
  cfg = {"name": "resnet50v2", "heads": {"classes": -1, "rotations": 4}}
  out, variables = _abstract_init(build_model(cfg, 1000), (2, 224, 224, 3))
  assert {k: v.shape for k, v in out.items()} == {
      "pre_logits": (2, 2048), "classes": (2, 1000), "rotations": (2, 4)}
  assert all(v.dtype == jnp.float32 for v in out.values())
  n = _count(variables["params"]["trunk"])
  assert n == _resnet50v2_count(4)
  assert 23.4e6 <= n <= 23.6e6
  assert _count(variables["params"]["head_classes"]) == 2048 * 1000 + 1000


def test_resnet50v2_k16_width():
  cfg = {"name": "resnet50v2", "filters_factor": 16, "dtype": "bfloat16",
         "heads": {"embeddings": 1000}}
  out, variables = _abstract_init(build_model(cfg, 10), (1, 224, 224, 3))
  assert out["pre_logits"].shape == (1, 8192)
  assert out["pre_logits"].dtype == jnp.float32
  assert out["embeddings"].shape == (1, 1000)
  assert _count(variables["params"]["trunk"]) == _resnet50v2_count(16)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(variables))


def test_wrn28_2_param_count():
  out, variables = _abstract_init(
      build_model({"name": "wrn", "depth": 28, "width": 2}, 10), (2, 32, 32, 3))
  assert out["pre_logits"].shape == (2, 128)
  assert out["classes"].shape == (2, 10)
  assert _count(variables["params"]) == _wrn_count(28, 2, 10) == 1_467_610


def test_build_model_errors():
  with pytest.raises(ValueError,
                     match=r"^Unknown model name 'vgg'; valid: resnet50v2, resnet_v1, wrn\.$"):
    build_model({"name": "vgg"}, 10)
  assert sorted(TRUNKS) == ["resnet50v2", "resnet_v1", "wrn"]


class _OneConv(Trunk):
  """The docs' example trunk (docs/extending.md "A model"): one 3x3 conv -> BN-ReLU -> pool."""
  channels: int = 4

  @nn.compact
  def __call__(self, x, train: bool, spatial: bool = False):
    x = self.bn_relu(self.conv(self.channels, 3, name="conv")(x.astype(self.dtype)), train, "bn")
    self.sow_block(1, x)
    return self.outputs(x, spatial)


@pytest.fixture(name="one_conv")
def one_conv_fixture():
  """`_OneConv` registered as `model.name=one_conv` for one test, then removed."""
  register_trunk("one_conv")(_OneConv)
  yield "one_conv"
  del TRUNKS["one_conv"]


def test_registered_trunk_builds_from_a_config(one_conv):
  config = config_lib.base_config(dataset="digits", labels="all", labeled_batch=8)
  config.model.name = one_conv  # as --config.model.name=one_conv
  record = model_record(config.model, 10)
  assert record["name"] == "one_conv" and record["channels"] == 4
  assert "depth" not in record  # the wrn preset's keys are not this trunk's
  model = build_model(record, 10)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 8, 8, 3), minval=-1, maxval=1)
  variables = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x, train=False))(x)
  assert set(variables["params"]) == {"trunk", "head_classes"}
  out = endpoints.apply_endpoints(model, variables, x)
  assert {k: v.shape for k, v in out.items()} == {
      "block1": (2, 4), "pre_logits": (2, 4), "classes": (2, 10)}
  np.testing.assert_array_equal(out["block1"], out["pre_logits"])  # pooled after the one block
  head = variables["params"]["head_classes"]
  np.testing.assert_allclose(out["classes"], out["pre_logits"] @ head["kernel"] + head["bias"],
                             rtol=1e-5, atol=1e-6)


def test_register_trunk_refuses_a_taken_name_and_a_non_trunk():
  with pytest.raises(KeyError, match=r"trunk 'wrn' is already registered "
                                     r"\(s4l_jax\.models\.resnet_v2\.WideResNet\)"):
    register_trunk("wrn")(_OneConv)
  with pytest.raises(TypeError, match=r"register_trunk\('mlp'\): .* is not a Trunk subclass"):
    register_trunk("mlp")(nn.Dense)
  assert sorted(TRUNKS) == ["resnet50v2", "resnet_v1", "wrn"]


TINY = dict(name="wrn", depth=10, width=1)


def _init(model, x):
  return jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros_like(x[:1]), train=False))


@pytest.mark.slow
def test_int_head_is_the_linear_head_spec():
  """`classes=-1` == an explicit 1-layer spec: same parameter names, values and outputs,
  and the outputs are pre_logits @ kernel + bias."""
  x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 3), minval=-1, maxval=1)
  short = build_model(dict(TINY, heads=dict(classes=-1, rotations=4)), 10)
  explicit = build_model(dict(TINY, heads=dict(classes=dict(dims=(10,)),
                                               rotations=dict(dims=4, input="pre_logits"))), 10)
  v_short, v_explicit = _init(short, x), _init(explicit, x)
  assert set(v_short["params"]) == {"trunk", "head_classes", "head_rotations"}
  jax.tree.map(np.testing.assert_array_equal, v_short, v_explicit)
  out = short.apply(v_short, x, train=False)
  assert set(out) == {"pre_logits", "classes", "rotations"}
  jax.tree.map(np.testing.assert_array_equal, out, explicit.apply(v_short, x, train=False))
  head = v_short["params"]["head_classes"]
  np.testing.assert_allclose(out["classes"], np.asarray(out["pre_logits"]) @ head["kernel"]
                             + head["bias"], rtol=1e-5, atol=1e-6)


def _np_bn(y, params, stats, train, eps=1e-3):
  mean, var = (y.mean(0), y.var(0)) if train else (stats["mean"], stats["var"])
  return (y - mean) / np.sqrt(var + eps) * params["scale"] + params["bias"]


@pytest.mark.slow
@pytest.mark.parametrize("train", [True, False])
def test_mlp_head_with_batch_norm_matches_numpy(train):
  """SimCLRv2-style head: proj = 2 x (Dense without bias -> BN), ReLU between; classes reads
  proj_1 (the first layer's output); recomputed in float64 NumPy from pre_logits."""
  heads = dict(classes=dict(dims=-1, input="proj_1"),
               proj=dict(dims=(6, 5), batch_norm=True, use_bias=False))
  model = build_model(dict(TINY, heads=heads), 3)
  x = jax.random.uniform(jax.random.PRNGKey(1), (8, 8, 8, 3), minval=-1, maxval=1)
  variables = _init(model, x)
  p, s = variables["params"], variables["batch_stats"]
  assert set(p) == {"trunk", "head_proj_1", "head_proj_2", "head_classes"}
  assert set(p["head_proj_1"]) == {"kernel", "bn"} and set(s) == {"trunk", "head_proj_1",
                                                                  "head_proj_2"}
  # Non-trivial running statistics, so that eval mode differs from batch statistics.
  rng = np.random.default_rng(0)
  s = {**s, **{k: {"bn": {"mean": rng.normal(size=d), "var": rng.uniform(0.5, 2, size=d)}}
               for k, d in (("head_proj_1", 6), ("head_proj_2", 5))}}
  s = jax.tree.map(lambda a: np.asarray(a, np.float32), s)
  if train:
    out, _ = model.apply({"params": p, "batch_stats": s}, x, train=True, mutable=["batch_stats"])
  else:
    out = model.apply({"params": p, "batch_stats": s}, x, train=False)
  assert set(out) == {"pre_logits", "classes", "proj", "proj_0", "proj_1", "proj_2"}
  pre = np.asarray(out["pre_logits"], np.float64)
  h1 = np.maximum(_np_bn(pre @ p["head_proj_1"]["kernel"], p["head_proj_1"]["bn"],
                         s["head_proj_1"]["bn"], train), 0)
  h2 = _np_bn(h1 @ p["head_proj_2"]["kernel"], p["head_proj_2"]["bn"],
              s["head_proj_2"]["bn"], train)
  logits = h1 @ p["head_classes"]["kernel"] + p["head_classes"]["bias"]
  for name, expected in (("proj_0", pre), ("proj_1", h1), ("proj_2", h2), ("proj", h2),
                         ("classes", logits)):
    np.testing.assert_allclose(out[name], expected, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_simclr_projection_head_options():
  """kernel_init="normal": N(0, 0.01^2) kernels (default: Glorot-uniform, within its bound);
  output_bn_bias=False: the last BN has only a scale (hidden ones keep their bias), so in
  train mode the head's output has zero batch mean and variance scale^2 var / (var + eps)."""
  x = jax.random.uniform(jax.random.PRNGKey(1), (16, 8, 8, 3), minval=-1, maxval=1)
  proj = dict(dims=(512, 128), batch_norm=True, use_bias=False)
  model = build_model(dict(TINY, heads=dict(
      proj=dict(proj, kernel_init="normal", output_bn_bias=False), glorot=proj)), 3)
  variables = _init(model, x)
  p = variables["params"]
  assert set(p["head_proj_1"]["bn"]) == {"scale", "bias"}
  assert set(p["head_proj_2"]["bn"]) == {"scale"}
  assert set(p["head_glorot_2"]["bn"]) == {"scale", "bias"}
  for layer in ("head_proj_1", "head_proj_2"):
    kernel = np.asarray(p[layer]["kernel"], np.float64)
    assert abs(kernel.mean()) < 1e-3 and abs(kernel.std() - 0.01) < 5e-4, layer
  for layer, (fan_in, fan_out) in (("head_glorot_1", (64, 512)), ("head_glorot_2", (512, 128))):
    kernel, bound = np.asarray(p[layer]["kernel"]), np.sqrt(6 / (fan_in + fan_out))
    assert np.abs(kernel).max() <= bound and abs(kernel.std() - bound / np.sqrt(3)) < 0.03 * bound
  scale = np.linspace(0.5, 2.0, 128, dtype=np.float32)
  p = {**p, "head_proj_2": {**p["head_proj_2"], "bn": {"scale": scale}}}
  out, _ = model.apply({**variables, "params": p}, x, train=True, mutable=["batch_stats"])
  z = np.asarray(out["proj"], np.float64)
  y = np.asarray(out["proj_1"], np.float64) @ np.asarray(p["head_proj_2"]["kernel"], np.float64)
  np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(z.var(0), scale**2 * y.var(0) / (y.var(0) + 1e-3), rtol=1e-3)


@pytest.mark.slow
def test_kept_layers_and_input_width_dims():
  """dims 0 = the layer's input width; `keep=1` builds the first layer only, under the same
  names, and its output is the full head's `proj_1` (SimCLRv2 fine-tuning from proj_1); a
  zero-initialised classifier on it predicts uniformly."""
  x = jax.random.uniform(jax.random.PRNGKey(1), (8, 8, 8, 3), minval=-1, maxval=1)
  proj = dict(dims=(0, 0, 16), batch_norm=True, use_bias=False)
  full = build_model(dict(TINY, heads=dict(proj=proj)), 3)
  variables = _init(full, x)
  p = variables["params"]
  assert p["head_proj_1"]["kernel"].shape == (64, 64) and p["head_proj_3"]["kernel"].shape == (
      64, 16)  # TINY's pre_logits are 64 wide
  kept = build_model(dict(TINY, heads=dict(
      proj=dict(proj, keep=1), classes=dict(dims=-1, input="proj_1", zero_init=True))), 3)
  kept_vars = _init(kept, x)
  assert set(kept_vars["params"]) == {"trunk", "head_proj_1", "head_classes"}
  assert parameter_modules(dict(heads=dict(proj=dict(proj, keep=1)))) == ["trunk", "head_proj_1"]
  both = {"params": {**kept_vars["params"], "trunk": p["trunk"], "head_proj_1": p["head_proj_1"]},
          "batch_stats": {**kept_vars["batch_stats"],
                          "trunk": variables["batch_stats"]["trunk"],
                          "head_proj_1": variables["batch_stats"]["head_proj_1"]}}
  for train in (True, False):
    out_full = full.apply(variables, x, train=train, mutable=["batch_stats"] if train else False)
    out_kept = kept.apply(both, x, train=train, mutable=["batch_stats"] if train else False)
    if train:
      out_full, out_kept = out_full[0], out_kept[0]
    np.testing.assert_array_equal(out_kept["proj"], out_full["proj_1"])
    np.testing.assert_array_equal(out_kept["proj_1"], out_full["proj_1"])
    assert "proj_2" not in out_kept
    assert np.all(np.asarray(out_kept["proj"]) >= 0)  # a hidden layer: after the ReLU
    np.testing.assert_array_equal(out_kept["classes"], 0.0)


@pytest.mark.slow
def test_stop_gradient_and_zero_init():
  x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 3), minval=-1, maxval=1)
  trunk_grads = {}
  for stop in (True, False):
    heads = dict(classes=dict(dims=-1, stop_gradient=stop, zero_init=True))
    model = build_model(dict(TINY, heads=heads), 3)
    variables = _init(model, x)
    np.testing.assert_array_equal(variables["params"]["head_classes"]["kernel"], 0.0)
    params = {**variables["params"], "head_classes": {"kernel": jnp.ones((64, 3)),
                                                      "bias": jnp.zeros(3)}}
    grads = jax.grad(lambda p, model=model, v=variables: jnp.sum(jnp.sin(
        model.apply({**v, "params": p}, x, train=False)["classes"])))(params)
    trunk_grads[stop] = jax.tree.leaves(grads["trunk"])
  assert all(not np.any(g) for g in trunk_grads[True])
  assert any(np.any(g) for g in trunk_grads[False])


@pytest.mark.slow
def test_head_reads_another_heads_output_declared_after_it():
  model = build_model(dict(TINY, heads=dict(b=dict(dims=2, input="a"), a=dict(dims=(4, 3)))), 3)
  x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 3), minval=-1, maxval=1)
  variables = _init(model, x)
  out = model.apply(variables, x, train=False)
  head = variables["params"]["head_b"]
  np.testing.assert_array_equal(out["a"], out["a_2"])
  np.testing.assert_allclose(out["b"], np.asarray(out["a"]) @ head["kernel"] + head["bias"],
                             rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_dense_head_is_a_1x1_conv_on_the_feature_map_flattened_position_major():
  model = build_model(dict(TINY, heads=dict(classes=-1, dense=dict(dims=5, input="feature_map"))),
                      3)
  x = jax.random.uniform(jax.random.PRNGKey(2), (2, 8, 8, 3), minval=-1, maxval=1)
  variables = _init(model, x)
  out = model.apply(variables, x, train=False)
  trunk_vars = {k: v["trunk"] for k, v in variables.items()}
  pooled, feature_map = model.trunk.apply(trunk_vars, x, train=False, spatial=True)
  assert feature_map.shape == (2, 2, 2, pooled.shape[-1])  # WRN: 8 px / 4
  np.testing.assert_allclose(out["pre_logits"], feature_map.mean(axis=(1, 2)), rtol=1e-6)
  head = variables["params"]["head_dense"]
  want = np.asarray(feature_map) @ head["kernel"] + head["bias"]
  np.testing.assert_allclose(out["dense"], want.reshape(2, 20), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(heads_lib.dense_logits(out["dense"], 5), out["dense"].reshape(
      2, 2, 2, 5))


@pytest.mark.parametrize("heads, match", [
    (dict(classes=dict(dims=-1, input="proj_1")), r"model.heads.classes.input='proj_1' is not"),
    (dict(a=dict(dims=2, input="b_1"), b=dict(dims=(2, 2), input="a")), r"cycle"),
    (dict(classes=dict(dim=3)), r"^model.heads.classes has keys \['dim'\]; valid: dims, input"),
    (dict(classes="x"), r"^model.heads.classes='x' must be an int"),
    (dict(classes=dict(dims=(4, -2))), r"^model.heads.classes.dims=\(4, -2\) must be"),
    (dict(p=dict(dims=(4, 3), keep=2)), r"^model.heads.p.keep=2 must be 0 \(all layers\) or 1..1"),
    (dict(p=dict(dims=4, keep=1)), r"^model.heads.p.keep=1 must be"),
    (dict(p=dict(dims=(2, 2)), p_1=3), r"endpoint 'p_1' of head 'p' clashes"),
    (dict(p=dict(dims=2, kernel_init="he")), r"^model.heads.p.kernel_init='he'; valid: glorot"),
    (dict(p=dict(dims=2, output_bn_bias=False)), r"^model.heads.p.output_bn_bias=False needs"),
])
def test_bad_head_specs_fail_in_one_line(heads, match):
  with pytest.raises(ValueError, match=match):
    build_model(dict(TINY, heads=heads), 3)


def test_model_record_round_trips_through_json_and_config_dict():
  heads = dict(proj=dict(dims=(6, 5), batch_norm=True, use_bias=False),
               classes=dict(dims=-1, input="proj_1"), rotations=4)
  cfg = ml_collections.ConfigDict(dict(TINY, dtype="float32", heads=heads, filters_factor=4))
  record = model_record(cfg, 7)
  assert record == json.loads(json.dumps(record))
  assert record["name"] == "wrn" and (record["depth"], record["width"]) == (10, 1)
  assert "filters_factor" not in record  # only the trunk's own keys
  assert record["heads"]["classes"] == dict(dims=[7], input="proj_1", batch_norm=False,
                                            use_bias=True, zero_init=False, stop_gradient=False,
                                            kernel_init="glorot", output_bn_bias=True, keep=0)
  assert model_record(json.loads(json.dumps(record)), 7) == record
  rebuilt, original = build_model(json.loads(json.dumps(record)), 7), build_model(cfg, 7)
  assert rebuilt == original
  assert list(record["heads"]) == ["proj", "rotations", "classes"]  # inputs before readers
  assert parameter_modules(cfg) == ["trunk", "head_proj_1", "head_proj_2", "head_rotations",
                                    "head_classes"]


def _bn_inputs(shape=(8, 3, 3, 5), seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=shape).astype(np.float32) * 3 + 1.5
  c = shape[-1]
  params = {"scale": rng.normal(size=(c,)).astype(np.float32),
            "bias": rng.normal(size=(c,)).astype(np.float32)}
  stats = {"mean": rng.normal(size=(c,)).astype(np.float32),
           "var": rng.uniform(0.5, 2, size=(c,)).astype(np.float32)}
  return jnp.asarray(x), {"params": params, "batch_stats": stats}


@pytest.mark.slow
@pytest.mark.parametrize("dtype, use_bias", [(jnp.float32, True), (jnp.bfloat16, True),
                                             (jnp.float32, False)])
def test_batchnorm_matches_flax(dtype, use_bias):
  x, variables = _bn_inputs()
  x = x.astype(dtype)
  if not use_bias:
    variables["params"].pop("bias")
  ours = BatchNorm(momentum=0.9, epsilon=1e-3, dtype=dtype, use_bias=use_bias)
  ref = nn.BatchNorm(momentum=0.9, epsilon=1e-3, dtype=dtype, use_bias=use_bias)
  for train in (True, False):
    y, new = ours.apply(variables, x, use_running_average=not train,
                        mutable=["batch_stats"])
    y_ref, new_ref = ref.apply(variables, x, use_running_average=not train,
                               mutable=["batch_stats"])
    np.testing.assert_array_equal(y, y_ref)
    jax.tree.map(np.testing.assert_array_equal, new, new_ref)
  assert jax.tree.structure(ours.init(jax.random.key(0), x, True)) == (
      jax.tree.structure(ref.init(jax.random.key(0), x, True)))


def _bn_residuals(bn, variables, x):
  """Arrays the backward pass of a train-mode BN keeps (abstract: shapes and dtypes)."""
  def f(x, params):
    return bn.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                    use_running_average=False, mutable=["batch_stats"])[0]
  vjp = jax.eval_shape(lambda x, p: jax.vjp(f, x, p)[1], x, variables["params"])
  return [r for r in jax.tree.leaves(vjp) if r.size >= x.size]  # activation-sized ones


@pytest.mark.slow
def test_batchnorm_gradients_match_flax_and_keep_only_the_input():
  x, variables = _bn_inputs((16, 4, 4, 8))
  ours, ref = BatchNorm(momentum=0.9, epsilon=1e-3), nn.BatchNorm(momentum=0.9, epsilon=1e-3)

  def grads(bn):
    def loss(x, params):
      y, _ = bn.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                      use_running_average=False, mutable=["batch_stats"])
      return jnp.sum(jnp.sin(y))
    return jax.grad(loss, argnums=(0, 1))(x, variables["params"])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               grads(ours), grads(ref))

  # bfloat16: the backward pass keeps x itself (bfloat16) and nothing else activation-sized;
  # flax.linen.BatchNorm keeps float32 copies (what this module's rematerialisation removes).
  x16 = x.astype(jnp.bfloat16)
  kept = _bn_residuals(BatchNorm(dtype=jnp.bfloat16), variables, x16)
  assert [(r.shape, r.dtype) for r in kept] == [(x.shape, jnp.bfloat16)]
  kept_ref = _bn_residuals(nn.BatchNorm(dtype=jnp.bfloat16), variables, x16)
  assert sum(r.size * r.dtype.itemsize for r in kept_ref) >= 2 * x.size * 4


def test_batchnorm_sharded_batch_is_global():
  x, variables = _bn_inputs((16, 2, 2, 3))
  bn = BatchNorm(use_running_average=False)
  f = jax.jit(lambda v, x: bn.apply(v, x, mutable=["batch_stats"]))
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  xs = jax.device_put(x, jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec("data")))
  (y, new), (y_ref, new_ref) = f(variables, xs), f(variables, x)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5),
               new, new_ref)


def test_ghost_batchnorm_matches_numpy():
  g, m, eps = 2, 0.9, 1e-3
  x, variables = _bn_inputs()
  y, new = BatchNorm(momentum=m, epsilon=eps, group_size=g).apply(
      variables, x, use_running_average=False, mutable=["batch_stats"])
  xn = np.asarray(x, np.float64).reshape((-1, g) + x.shape[1:])
  mean = xn.mean(axis=(1, 2, 3), keepdims=True)
  var = xn.var(axis=(1, 2, 3), keepdims=True)
  p, s = variables["params"], variables["batch_stats"]
  y_np = (xn - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]
  np.testing.assert_allclose(y, y_np.reshape(x.shape), rtol=1e-4, atol=1e-4)
  new = new["batch_stats"]
  np.testing.assert_allclose(
      new["mean"], m * s["mean"] + (1 - m) * mean.mean(axis=(0, 1, 2, 3)),
      rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      new["var"], m * s["var"] + (1 - m) * var.mean(axis=(0, 1, 2, 3)),
      rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="divisible"):
    BatchNorm(group_size=3).apply(variables, x, use_running_average=False,
                                  mutable=["batch_stats"])


def _small_wrn(**kw):
  cfg = {"name": "wrn", "depth": 10, "width": 1,
         "heads": {"classes": -1, "rotations": 4}, **kw}
  return build_model(cfg, 10)


@pytest.fixture(scope="module")
def wrn_inputs():
  """(x, variables) of the small WRN; the rbg PRNG keeps init compilation fast."""
  x = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3), minval=-1, maxval=1)
  init = jax.jit(functools.partial(_small_wrn().init, train=False))
  return x, init(jax.random.key(0, impl="rbg"), x)


def _train_fn(model):
  return jax.jit(functools.partial(
      model.apply, train=True, mutable=["batch_stats"]))


@pytest.mark.slow
def test_wrn_train_and_eval(wrn_inputs):
  x, variables = wrn_inputs
  model = _small_wrn(bn_group_size=2)
  train_fn = _train_fn(model)
  eval_fn = jax.jit(functools.partial(model.apply, train=False))
  out, new = train_fn(variables, x)
  assert {k: v.shape for k, v in out.items()} == {
      "pre_logits": (4, 64), "classes": (4, 10), "rotations": (4, 4)}
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b),
                         new["batch_stats"], variables["batch_stats"])
  assert all(jax.tree.leaves(changed))
  # train=False uses running statistics: an example's output does not depend on
  # the other batch members (while it does with batch statistics).
  variables = {**variables, **new}
  x2 = x.at[1:].set(-x[1:])
  np.testing.assert_allclose(eval_fn(variables, x)["classes"][0],
                             eval_fn(variables, x2)["classes"][0],
                             rtol=1e-5, atol=1e-6)
  assert not np.allclose(train_fn(variables, x)[0]["classes"][0],
                         train_fn(variables, x2)[0]["classes"][0])


def test_bfloat16_returns_float32(wrn_inputs):
  x, variables = wrn_inputs
  out16, new16 = _train_fn(_small_wrn(dtype="bfloat16"))(variables, x)
  out32, _ = _train_fn(_small_wrn())(variables, x)
  for k in out16:
    assert out16[k].dtype == jnp.float32
    np.testing.assert_allclose(out16[k], out32[k], rtol=0.1, atol=0.1)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(new16))


@pytest.mark.slow
def test_remat_keeps_parameters_gradients_and_stats():
  """model.remat recomputes activations in the backward pass; results are unchanged."""
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 16, 16, 3))
  results = []
  for remat in (False, True):
    model = build_model(dict(name="wrn", depth=10, width=1, remat=remat), 10)
    variables = model.init(jax.random.PRNGKey(0), x, train=False)

    def loss(params, model=model, variables=variables):
      out, new = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                             train=True, mutable=["batch_stats"])
      return out["classes"].sum(), new

    results.append((variables, jax.grad(loss, has_aux=True)(variables["params"])))
  (v0, (g0, s0)), (v1, (g1, s1)) = results
  assert jax.tree.structure(v0) == jax.tree.structure(v1)
  for a, b in zip(jax.tree.leaves((v0, g0, s0)), jax.tree.leaves((v1, g1, s1))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_survival_probabilities_decay_linearly_to_the_final_one():
  """p_l = 1 - l / L (1 - p_L) (Huang et al. 2016), l = 1..L."""
  np.testing.assert_allclose(noise.survival_probabilities(4, 0.8), [0.95, 0.9, 0.85, 0.8])
  np.testing.assert_allclose(noise.survival_probabilities(16, 0.5)[7], 1 - 8 / 16 * 0.5)
  assert noise.survival_probabilities(3, 1.0) == (1.0, 1.0, 1.0)


def test_drop_path_drops_whole_examples_and_rescales_the_kept_ones():
  x = jnp.asarray(np.random.default_rng(0).uniform(1, 2, (20000, 2, 2, 3)), jnp.float32)
  y = np.asarray(noise.drop_path(jax.random.PRNGKey(0), x, 0.8))
  dropped = np.all(y == 0, axis=(1, 2, 3))
  assert abs(dropped.mean() - 0.2) < 0.015  # binomial std 0.003
  np.testing.assert_allclose(y[~dropped], np.asarray(x)[~dropped] / 0.8, rtol=1e-6)


@pytest.mark.parametrize("name, cfg, units", [
    ("wrn", dict(depth=16, width=1), 6),
    ("resnet50v2", dict(filters_factor=1), 16),
])
def test_each_residual_unit_gets_its_survival_probability(monkeypatch, name, cfg, units):
  seen = []
  drop_path = noise.drop_path
  monkeypatch.setattr(noise, "drop_path", lambda rng, r, p: seen.append(p) or drop_path(rng, r, p))
  model = build_model(dict(name=name, stochastic_depth=0.6, **cfg), 10)
  x = jnp.zeros((2, 32, 32, 3))
  variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0), x)
  assert not seen  # inference: no unit is dropped
  jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"],
                                       rngs={"dropout": jax.random.PRNGKey(1)}), variables)
  np.testing.assert_allclose(seen, noise.survival_probabilities(units, 0.6))
  assert seen[-1] == pytest.approx(0.6)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [dict(dropout=0.5), dict(stochastic_depth=0.5),
                                 dict(dropout=0.3, stochastic_depth=0.7, remat=True)])
def test_noise_is_on_in_training_and_off_at_eval(cfg):
  model = build_model(dict(name="wrn", depth=10, width=1, **cfg), 5)
  x = jax.random.uniform(jax.random.PRNGKey(1), (6, 8, 8, 3), minval=-1, maxval=1)
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  train = lambda seed: model.apply(variables, x, train=True, mutable=["batch_stats"],
                                   rngs={"dropout": jax.random.PRNGKey(seed)})[0]["classes"]
  np.testing.assert_array_equal(train(0), train(0))
  assert not np.allclose(train(0), train(1))
  evaluate = lambda: model.apply(variables, x, train=False)["classes"]
  np.testing.assert_array_equal(evaluate(), evaluate())
  clean = build_model(dict(name="wrn", depth=10, width=1), 5)
  np.testing.assert_array_equal(evaluate(), clean.apply(variables, x, train=False)["classes"])
  record = model_record(dict(name="wrn", depth=10, width=1, **cfg), 5)
  assert (record["dropout"], record["stochastic_depth"]) == (
      cfg.get("dropout", 0.0), cfg.get("stochastic_depth", 1.0))
