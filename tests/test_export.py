"""Self-describing exports: load_model rebuilds the network; old exports; init_from subtrees."""
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import endpoints, export, initialization
from s4l_jax.models import build_model

CLASSES = ("ant", "bee", "cat")
TINY = dict(name="wrn", depth=10, width=1)
# SimCLRv2-style: a 2-layer projection head with BN, classes reading its first layer.
HEADS = dict(proj=dict(dims=(6, 5), batch_norm=True, use_bias=False),
             classes=dict(dims=-1, input="proj_1"))


def _images(n=5, seed=1):
  return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """(export_dir, variables): an export with trained-looking BN statistics everywhere."""
  config = dict(TINY, heads=HEADS)
  model = build_model(config, len(CLASSES))
  variables = initialization.init_variables(model, (8, 8, 3), jax.random.PRNGKey(0))
  _, new = model.apply(variables, export.to_model_input(jnp.asarray(_images(16, seed=0))),
                       train=True, mutable=["batch_stats"])
  variables = jax.device_get({**variables, **new})
  export_dir = str(tmp_path_factory.mktemp("export") / "export")
  export.write_export(export_dir, config, variables, image_size=8, channels=3,
                      class_names=CLASSES, meta=dict(method="test"))
  return export_dir, variables


@pytest.mark.slow
def test_load_model_rebuilds_the_exported_network(exported):
  export_dir, variables = exported
  model, loaded, description = export.load_model(export_dir)
  assert description["model"]["heads"]["classes"]["dims"] == [3]
  assert description["model"]["name"] == "wrn" and description["model"]["depth"] == 10
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)
  predict, _ = export.load_predict(export_dir)
  images = _images()
  rebuilt = jax.jit(export.make_predict(model, loaded))(images)
  # The same computation compiled for the same (CPU) backend: bit for bit.
  np.testing.assert_array_equal(rebuilt, predict(images))
  outputs = model.apply(loaded, export.to_model_input(jnp.asarray(images)), train=False)
  assert set(outputs) == {"pre_logits", "proj", "proj_0", "proj_1", "proj_2", "classes"}


@pytest.mark.slow
def test_export_without_a_classifier_gives_features_only(tmp_path):
  """A model with no `classes` head (e.g. a checkpoint converted with --head=projection)
  exports endpoints and variables but no predict.jax, and is complete without it."""
  config = dict(TINY, heads=dict(proj=HEADS["proj"]))
  model = build_model(config, 0)
  variables = initialization.init_variables(model, (8, 8, 3), jax.random.PRNGKey(0))
  export_dir = str(tmp_path / "export")
  export.write_export(export_dir, config, variables, image_size=8, channels=3, class_names=[],
                      meta=dict(method="test"))
  assert not os.path.exists(os.path.join(export_dir, export.PREDICT_FILE))
  assert export.missing_parts(export_dir) == []
  description = export.load_description(export_dir)
  assert description["num_classes"] == 0 and list(description["model"]["heads"]) == ["proj"]
  with pytest.raises(ValueError, match="has no classifier .*load_endpoints") as error:
    export.load_predict(export_dir)
  assert "\n" not in str(error.value)
  fn, _ = export.load_endpoints(export_dir, "proj_1")
  images = _images()
  want = model.apply(variables, export.to_model_input(jnp.asarray(images)), train=False)
  np.testing.assert_allclose(fn(images), want["proj_1"], rtol=1e-5, atol=1e-5)
  os.remove(os.path.join(export_dir, export.ENDPOINTS_FILE))
  assert export.missing_parts(export_dir) == [export.ENDPOINTS_FILE]


@pytest.mark.slow
def test_old_export_loads_but_cannot_be_rebuilt(exported, tmp_path):
  export_dir, variables = exported
  old_dir = str(tmp_path / "old")
  os.system(f"cp -r {export_dir} {old_dir}")
  path = os.path.join(old_dir, export.DESCRIPTION_FILE)
  with open(path) as f:
    description = json.load(f)
  del description["model"]
  with open(path, "w") as f:
    json.dump(description, f)
  predict, _ = export.load_predict(old_dir)
  assert predict(_images()).shape == (5, 3)
  jax.tree.map(np.testing.assert_array_equal, export.load_variables(old_dir), variables)
  with pytest.raises(ValueError, match=r"^\S+ predates self-describing exports \(no 'model' in "
                     r"export.json\); re-export it by re-running its training command with a "
                     r"new --workdir$"):
    export.load_model(old_dir)


def _init_from(heads, export_dir, take):
  model = build_model(dict(TINY, heads=heads), len(CLASSES))
  fresh = initialization.init_variables(model, (8, 8, 3), jax.random.PRNGKey(1))
  taken = initialization.init_variables(model, (8, 8, 3), jax.random.PRNGKey(1),
                                        init_from=export_dir, init_take=take)
  return fresh, taken


@pytest.mark.slow
def test_init_from_takes_exactly_the_named_subtrees(exported):
  export_dir, variables = exported
  fresh, taken = _init_from(dict(classes=-1), export_dir, "trunk")
  jax.tree.map(np.testing.assert_array_equal,
               {k: v["trunk"] for k, v in taken.items()},
               {k: v["trunk"] for k, v in variables.items()})
  jax.tree.map(np.testing.assert_array_equal, taken["params"]["head_classes"],
               fresh["params"]["head_classes"])
  # SimCLRv2 fine-tuning: trunk + the first projection layer (params and BN statistics),
  # a fresh classes head on proj_1.
  fresh, taken = _init_from(HEADS, export_dir, "trunk+proj_1")
  for collection in ("params", "batch_stats"):
    for name in ("trunk", "head_proj_1"):
      jax.tree.map(np.testing.assert_array_equal, taken[collection][name],
                   variables[collection][name])
    jax.tree.map(np.testing.assert_array_equal, taken[collection]["head_proj_2"],
                 fresh[collection]["head_proj_2"])
  jax.tree.map(np.testing.assert_array_equal, taken["params"]["head_classes"],
               fresh["params"]["head_classes"])
  assert not np.array_equal(fresh["params"]["head_classes"]["kernel"],
                            variables["params"]["head_classes"]["kernel"])


@pytest.mark.slow
@pytest.mark.parametrize("heads, take, match", [
    (dict(classes=-1), "all", r"params/head_classes/kernel has shape \(6, 3\) in the export but "
     r"\(64, 3\) in the model"),
    (dict(proj=dict(dims=(6, 5)), classes=dict(dims=-1, input="proj_1")), "all",
     r"params/head_proj_1/bias has shape missing in the export but \(6,\) in the model"),
    (dict(classes=-1, rotations=4), "trunk+rotations",
     r"params/head_rotations/bias has shape missing in the export but \(4,\) in the model"),
])
def test_init_from_mismatch_fails_in_one_line(exported, heads, take, match):
  export_dir, _ = exported
  with pytest.raises(ValueError, match=rf"^init_from {export_dir}: {match}; choose the "
                     r"subtrees to take with init_take \(e.g. init_take=trunk\)$"):
    _init_from(heads, export_dir, take)


@pytest.mark.slow
def test_simclr_resnet_v1_export_round_trips(tmp_path):
  """ResNet-26 v1 + SK with SimCLRv2's head options (normal init, last BN without beta):
  load_model rebuilds the same module, variables (no bias in the last BN) and outputs."""
  config = dict(name="resnet_v1", depth=26, sk_ratio=0.0625, bn_momentum=0.9,
                bn_epsilon=1e-5, heads=dict(
                    proj=dict(dims=(6, 5), batch_norm=True, use_bias=False,
                              kernel_init="normal", output_bn_bias=False),
                    classes=dict(dims=-1, input="proj_1", kernel_init="normal")))
  model = build_model(config, len(CLASSES))
  variables = jax.device_get(initialization.init_variables(model, (8, 8, 3), jax.random.PRNGKey(0)))
  assert set(variables["params"]["head_proj_2"]["bn"]) == {"scale"}
  export_dir = str(tmp_path / "export")
  export.write_export(export_dir, config, variables, image_size=8, channels=3,
                      class_names=CLASSES, meta=dict(method="test"))
  rebuilt, loaded, description = export.load_model(export_dir)
  assert rebuilt == model
  assert description["model"]["heads"]["proj"]["output_bn_bias"] is False
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)
  images = _images()
  predict, _ = export.load_predict(export_dir)
  np.testing.assert_array_equal(jax.jit(export.make_predict(rebuilt, loaded))(images),
                                predict(images))
  _check_endpoints(export_dir, rebuilt, variables, blocks=4)


def _check_endpoints(export_dir, model, variables, blocks):
  """endpoints.jax (weights from variables/) gives each endpoint of export.json: block1 ..
  block<blocks>, pre_logits first, equal to the rebuilt network's, with the recorded widths;
  `classes` is predict.jax's logits; an unknown endpoint fails in one line."""
  images = _images()
  dims = export.load_description(export_dir)["endpoints"]
  assert list(dims)[:blocks + 1] == [f"block{b}" for b in range(1, blocks + 1)] + ["pre_logits"]
  expected = endpoints.apply_endpoints(model, variables, export.to_model_input(jnp.asarray(images)))
  assert list(dims) == endpoints.ordered(expected)
  for name, dim in dims.items():
    fn, _ = export.load_endpoints(export_dir, name)
    got = np.asarray(fn(images))
    assert got.shape == (5, dim)
    np.testing.assert_allclose(got, expected[name], rtol=1e-5, atol=1e-5)
  predict, _ = export.load_predict(export_dir)
  np.testing.assert_allclose(fn(images) if name == "classes" else
                             export.load_endpoints(export_dir, "classes")[0](images),
                             predict(images), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match=r"has no endpoint 'nope'; endpoints: block1, "):
    export.load_endpoints(export_dir, "nope")
  return dims


@pytest.mark.slow
def test_export_endpoints_with_a_projection_head(exported):
  export_dir, variables = exported
  model, _, _ = export.load_model(export_dir)
  dims = _check_endpoints(export_dir, model, variables, blocks=3)
  assert dims == dict(block1=16, block2=32, block3=64, pre_logits=64, classes=3, proj=5,
                      proj_0=64, proj_1=6, proj_2=5)


def test_resnet50v2_endpoints():
  """The third trunk kind (the other two are exported above): its blocks' pooled widths."""
  model = build_model(dict(name="resnet50v2", filters_factor=1), len(CLASSES))
  variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False),
                             jnp.zeros((1, 8, 8, 3)))  # shapes only: nothing is compiled
  assert endpoints.endpoint_dims(model, variables, (8, 8, 3)) == dict(
      block1=64, block2=128, block3=256, block4=512, pre_logits=512, classes=3)


@pytest.mark.slow
def test_last_block_of_resnet_v1_is_its_pooled_features():
  """ResNet v1 pools its last block's output into pre_logits: the two endpoints are equal."""
  model = build_model(dict(name="resnet_v1", depth=26), len(CLASSES))
  variables = initialization.init_variables(model, (8, 8, 3), jax.random.PRNGKey(0))
  assert "intermediates" not in variables  # init keeps no block outputs
  out = endpoints.apply_endpoints(model, variables, export.to_model_input(jnp.asarray(_images())))
  np.testing.assert_array_equal(out["block4"], out["pre_logits"])
  assert [out[f"block{b}"].shape[1] for b in range(1, 5)] == [256, 512, 1024, 2048]
