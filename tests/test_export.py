"""Self-describing exports: load_model rebuilds the network; old exports; init_from subtrees."""
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import export
from s4l_jax.models import build_model, init as model_init

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
  variables = model_init.init_variables(model, (8, 8, 3), jax.random.PRNGKey(0))
  _, new = model.apply(variables, export.to_model_input(jnp.asarray(_images(16, seed=0))),
                       train=True, mutable=["batch_stats"])
  variables = jax.device_get({**variables, **new})
  export_dir = str(tmp_path_factory.mktemp("export") / "export")
  export.write_export(export_dir, config, variables, image_size=8, channels=3,
                      class_names=CLASSES, meta=dict(method="test"))
  return export_dir, variables


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
  fresh = model_init.init_variables(model, (8, 8, 3), jax.random.PRNGKey(1))
  taken = model_init.init_variables(model, (8, 8, 3), jax.random.PRNGKey(1),
                                    init_from=export_dir, init_take=take)
  return fresh, taken


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


def test_simclr_resnet_v1_export_round_trips(tmp_path):
  """ResNet-26 v1 + SK with SimCLRv2's head options (normal init, last BN without beta):
  load_model rebuilds the same module, variables (no bias in the last BN) and outputs."""
  config = dict(name="resnet_v1", depth=26, sk_ratio=0.0625, bn_momentum=0.9,
                bn_epsilon=1e-5, heads=dict(
                    proj=dict(dims=(6, 5), batch_norm=True, use_bias=False,
                              kernel_init="normal", output_bn_bias=False),
                    classes=dict(dims=-1, input="proj_1", kernel_init="normal")))
  model = build_model(config, len(CLASSES))
  variables = jax.device_get(model_init.init_variables(model, (8, 8, 3), jax.random.PRNGKey(0)))
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
