"""s4l_jax.convert_s4l: S4L's released TF1 Hub modules -> exports, checked against an
independent TensorFlow forward pass of google-research/s4l's model code
(tests/s4l_tf_reference.py) on a module checkpoint built here with the released names.

Tolerance: max |export - reference| <= 2e-5 x max |reference| per output, float32 rounding
as in tests/test_convert.py (different convolution and BatchNorm summation orders through
50 layers); a wrong tensor moves the outputs by far more. The module is a ResNet-50 v2 at
filters_factor 1 (a quarter of the released width, which the stem's shape sets) on 32 x 32
images, to keep CI fast; the released modules are filters_factor 4 at 224.
"""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from s4l_jax import convert, convert_s4l, export, tf_checkpoint
from testing_utils import ROOT
import s4l_tf_reference as ref

pytestmark = [pytest.mark.tf, pytest.mark.slow]  # TensorFlow; converts a ResNet-50 (about a minute)

RTOL = 2e-5
SIZE = 32
OUTPUTS = {"classes": 1000, "rotations": 4}  # an S4L-Rotation module's heads


def _fingerprints(arrays):
  return sorted((a.size, round(float(np.sum(a, dtype=np.float64)), 3)) for a in arrays)


@pytest.fixture(name="module", scope="module")
def module_fixture(tmp_path_factory):
  """A random S4L-Rotation-like module converted, with both forward passes' outputs."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
  created = ref.Variables(rng=rng)
  ref.forward(created, images / 255.0 * 2 - 1, filters_factor=1, outputs=OUTPUTS)
  module_dir = str(tmp_path_factory.mktemp("s4l") / "rotation")
  ref.save_module_variables(module_dir, created.values)
  out = str(tmp_path_factory.mktemp("export") / "export")
  description = convert_s4l.convert_s4l(module_dir, out, image_size=SIZE)
  reader = ref.Variables(values=created.values)
  want = ref.forward(reader, images / 255.0 * 2 - 1, filters_factor=1, outputs=OUTPUTS)
  model, variables, _ = export.load_model(out)
  got = jax.jit(lambda x: model.apply(variables, export.to_model_input(x), train=False))(images)
  return dict(dir=module_dir, values=created.values, read=reader.read, want=want,
              got={k: np.asarray(got[k]) for k in want}, variables=variables,
              description=description)


def test_export_matches_the_official_forward_pass(module):
  """Logits, the rotation head and the pooled features equal the TF reference's to float32
  rounding; every tensor of the module fills exactly one exported variable."""
  for output, want in module["want"].items():
    got = module["got"][output]
    assert got.shape == want.shape, output
    scale = np.abs(want).max()
    assert scale > 0.1, output
    np.testing.assert_array_less(np.abs(got - want).max(), RTOL * scale, err_msg=output)
  assert sorted(module["read"]) == sorted(module["values"])
  assert _fingerprints(jax.tree.leaves(module["variables"])) == _fingerprints(
      list(module["values"].values()))


def test_export_json_records_the_module(module):
  d = module["description"]
  assert d["model"]["name"] == "resnet50v2" and d["model"]["filters_factor"] == 1
  assert set(d["model"]["heads"]) == {"classes", "rotations"}
  assert d["model"]["bn_epsilon"] == ref.BATCH_NORM_EPSILON
  assert d["source"]["format"] == "s4l_tf1_hub_module"
  assert d["source"]["heads"] == ["classes", "rotations"]
  assert d["num_classes"] == 1000 and d["class_names"][0] == "n01440764"
  assert d["input_size"] == [SIZE, SIZE, 3] and "resize_small(256)" in d["source"][
      "released_preprocessing"]


def test_name_map_covers_resnet50_v2():
  names = [n for n, _ in convert_s4l.name_map("", ["classes"])]
  convs = [n for n in names if n.endswith("conv2d/kernel")]
  bns = [n for n in names if n.endswith("/gamma")]
  assert len(convs) == 1 + 16 * 3 + 4 and len(bns) == 16 * 3 + 1  # stem, units, shortcuts
  assert len(names) == len(set(names))
  mapping = dict(convert_s4l.name_map("module/", []))
  assert mapping["module/block2/unit1/proj/conv2d/kernel"] == (
      "params", "trunk", "block2_unit1_proj", "kernel")
  assert mapping["module/block4/unit3/c/batch_normalization/moving_mean"] == (
      "batch_stats", "trunk", "block4_unit3_bn2", "mean")
  assert mapping["module/batch_normalization/beta"] == ("params", "trunk", "final_bn", "bias")


def test_scope_and_heads_are_found_by_name():
  shapes = {"module/root_block/conv2d/kernel": (7, 7, 3, 64), "module/classes/kernel": (),
            "module/embeddings/kernel": (), "module/block1/unit1/a/conv2d/kernel": (),
            "module/batch_normalization/gamma": (), "global_step": ()}
  assert convert_s4l.module_scope(shapes) == "module/"
  assert convert_s4l.head_names(shapes, "module/") == ["classes", "embeddings"]
  with pytest.raises(ValueError, match="2 tensors named .*root_block/conv2d/kernel"):
    convert_s4l.module_scope(dict(shapes, **{"root_block/conv2d/kernel": (7, 7, 3, 64)}))


def _rewrite(module, directory, drop=(), add=None):
  values = {n: v for n, v in module["values"].items() if n not in drop} | (add or {})
  ref.save_module_variables(str(directory), values)
  return tf_checkpoint.CheckpointReader(convert_s4l.variables_prefix(str(directory)))


def test_module_without_a_classifier_has_features_only(module, tmp_path):
  reader = _rewrite(module, tmp_path, drop=("classes/kernel", "classes/bias"))
  record, variables, source = convert_s4l.convert_variables(reader, SIZE)
  assert list(record["heads"]) == ["rotations"] and source["heads"] == ["rotations"]
  assert set(variables["params"]) == {"trunk", "head_rotations"}
  np.testing.assert_array_equal(variables["params"]["head_rotations"]["kernel"],
                                module["values"]["rotations/kernel"][0, 0])


@pytest.mark.parametrize("drop,add,message", [
    (("block3/unit2/b/batch_normalization/moving_variance",), None,
     r"^tensor block3/unit2/b/batch_normalization/moving_variance is missing from .* \(a "
     r"resnet50v2 with filters_factor 1 needs it\)$"),
    ((), {"head/conv2d/kernel": np.zeros((1, 1, 512, 10), np.float32)},
     r"^tensor head/conv2d/kernel \(and 0 more\) of .* is not part of a resnet50v2 with "
     r"filters_factor 1 and its heads classes, rotations$"),
    ((), {"block4/unit4/a/conv2d/kernel": np.zeros((1, 1, 512, 128), np.float32)},
     r"blocks of \(3, 4, 6, 4\) units \(bottleneck\); this project's resnet50v2 is the "
     r"ResNet-50 of \(3, 4, 6, 3\) bottleneck units$"),
    ((), {"classes/bias": np.zeros(11, np.float32)},
     r"^tensor classes/bias has shape \(11,\) but params/head_classes/bias of a resnet50v2 "
     r"with filters_factor 1 has \(1000,\)$"),
    ((), {"root_block/conv2d/kernel": np.zeros((7, 7, 3, 20), np.float32)},
     r"root_block/conv2d/kernel has shape \(7, 7, 3, 20\): no filters_factor gives it"),
])
def test_bad_modules_fail_in_one_line(module, tmp_path, drop, add, message):
  reader = _rewrite(module, tmp_path, drop, add)
  with pytest.raises(ValueError, match=message) as error:
    convert_s4l.convert_variables(reader, SIZE)
  assert "\n" not in str(error.value)


def test_paths_and_options_that_are_no_module(tmp_path):
  with pytest.raises(ValueError, match=r"is not a TF1 Hub module: no .*variables/variables"
                     r"\.index \(copy the whole module folder"):
    convert_s4l.variables_prefix(str(tmp_path))
  result = subprocess.run(
      [sys.executable, "-m", "s4l_jax.convert", "s4l", str(tmp_path), "--head=none",
       f"--out={tmp_path / 'export'}"], cwd=ROOT, capture_output=True, text=True, check=False,
      env=dict(os.environ, PYTHONPATH=ROOT))
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      "ERROR: --head applies to simclrv2 checkpoints, not to S4L modules")
  assert not os.path.exists(tmp_path / "export")


REAL_MODULE_ENV = "S4L_HUB_MODULE"


@pytest.mark.skipif(not os.environ.get(REAL_MODULE_ENV),
                    reason=f"set {REAL_MODULE_ENV}=a released S4L Hub module folder (e.g. "
                    "gs://s4l-models/supervised_10p, copied)")
def test_real_module_matches_the_official_forward_pass(tmp_path):
  path = os.environ[REAL_MODULE_ENV]
  description = convert_s4l.convert_s4l(path, str(tmp_path / "export"), image_size=64)
  reader = tf_checkpoint.CheckpointReader(convert_s4l.variables_prefix(path))
  scope = convert_s4l.module_scope(reader.shapes)
  values = {name[len(scope):]: reader.get(name) for name in reader.shapes}
  images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
  heads = description["model"]["heads"]
  want = ref.forward(ref.Variables(values), images / 255.0 * 2 - 1,
                     filters_factor=description["model"]["filters_factor"],
                     outputs={name: head["dims"][-1] for name, head in heads.items()})
  model, variables, _ = export.load_model(str(tmp_path / "export"))
  got = model.apply(variables, export.to_model_input(images), train=False)
  for output, value in want.items():
    np.testing.assert_array_less(np.abs(np.asarray(got[output]) - value).max(),
                                 RTOL * np.abs(value).max(), err_msg=output)
