"""s4l_jax.convert: released SimCLRv2 TF1 checkpoints -> exports, checked against an
independent TensorFlow forward pass of the official model code (tests/simclr_tf_reference.py)
on checkpoints built here with exactly the released names (no network).

Tolerance of the parity checks: max |export - reference| <= 2e-5 x max |reference| per output.
Both sides compute in float32 (eps 1.2e-7) with different summation orders (XLA's vs oneDNN's
convolutions, two BatchNorm formulas) through 50 layers; the errors seen are <= 1.7e-6 of the
output's scale (R26 / R50, with and without SK). A wrong tensor (the other EMA copy: 10 %
apart; a swapped layer) moves the outputs by 1e-2 or more.
"""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from s4l_jax import convert, embed, export, runner, tf_checkpoint
from testing_utils import ROOT, load_config
import simclr_tf_reference as ref

pytestmark = pytest.mark.tf

RTOL = 2e-5
SIZE = 32
REAL_CHECKPOINT_ENV = "S4L_SIMCLRV2_CHECKPOINT"


def build_released(directory, *, depth, sk, num_classes, selector, seed=0, width=1):
  """A random SimCLRv2 checkpoint under `directory` (its `checkpoint` file names it); returns
  (prefix, {name: value} as written, images uint8 (2, SIZE, SIZE, 3))."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
  v = ref.Variables(rng=rng)
  ref.forward(v, images / 255.0, depth=depth, width=width, sk=sk, num_classes=num_classes,
              ft_proj_selector=selector)
  os.makedirs(directory, exist_ok=True)
  prefix = os.path.join(str(directory), "model.ckpt-250228")
  written = ref.save_released_checkpoint(prefix, v.values, rng=rng)
  with open(os.path.join(str(directory), "checkpoint"), "w") as f:
    f.write('model_checkpoint_path: "model.ckpt-250228"\n')
  return prefix, written, images


def parity_case(tmp_path_factory, *, folder, sk, num_classes, selector):
  """Converts a random R50 checkpoint (EMA weights) and runs both forward passes."""
  directory = tmp_path_factory.mktemp("released") / folder / ("r50_1x_sk1" if sk else "r50_1x_sk0")
  prefix, written, images = build_released(directory, depth=50, sk=sk,
                                           num_classes=num_classes, selector=selector)
  out = str(tmp_path_factory.mktemp("export") / "export")
  description = convert.convert_simclrv2(str(directory), out, image_size=SIZE)
  reader = ref.Variables(values=written, prefix="ema_model/")
  want = ref.forward(reader, images / 255.0, depth=50, width=1, sk=sk, num_classes=num_classes,
                     ft_proj_selector=selector)
  model, variables, _ = export.load_model(out)
  got = jax.jit(lambda x: model.apply(variables, export.to_model_input(x), train=False))(images)
  return dict(prefix=prefix, written=written, description=description, want=want,
              got={k: np.asarray(got[k]) for k in want}, variables=variables,
              read=reader.read)


@pytest.fixture(name="r50", scope="module")
def r50_fixture(tmp_path_factory):
  """R50 1x, a `pretrained` checkpoint: classifier on the pooled features, 1000 classes."""
  return parity_case(tmp_path_factory, folder="pretrained", sk=False, num_classes=1000,
                     selector=0)


@pytest.fixture(name="r50_sk", scope="module")
def r50_sk_fixture(tmp_path_factory):
  """R50 1x + SK, a `finetuned_10pct` checkpoint: classifier on proj_1, 10 classes."""
  return parity_case(tmp_path_factory, folder="finetuned_10pct", sk=True, num_classes=10,
                     selector=1)


@pytest.fixture(name="r26", scope="module")
def r26_fixture(tmp_path_factory):
  """A cheap R26 checkpoint's values, for the error cases and the fine-tuning run."""
  directory = tmp_path_factory.mktemp("r26") / "pretrained"
  return build_released(directory, depth=26, sk=False, num_classes=10, selector=0)


def _fingerprints(arrays):
  return sorted((a.shape, round(float(np.sum(a, dtype=np.float64)), 3)) for a in arrays)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["r50", "r50_sk"])
def test_export_matches_the_official_forward_pass(case, request):
  """Logits, the projection head's output, its first layer and the pooled features equal the
  TF reference's to float32 rounding; every tensor the reference reads fills exactly one
  exported variable (same multiset of shapes and sums)."""
  c = request.getfixturevalue(case)
  for output, want in c["want"].items():
    got = c["got"][output]
    assert got.shape == want.shape, output
    scale = np.abs(want).max()
    assert scale > 0.1, output  # the random network does not collapse to zero
    np.testing.assert_array_less(np.abs(got - want).max(), RTOL * scale, err_msg=output)
  assert len(set(c["read"])) == len(c["read"])
  leaves = jax.tree.leaves(c["variables"])
  assert _fingerprints(leaves) == _fingerprints([c["written"][n] for n in c["read"]])


@pytest.mark.slow
def test_export_json_records_the_source(r50, r50_sk):
  d, d_sk = r50["description"], r50_sk["description"]
  assert d["model"]["name"] == "resnet_v1"
  architecture = tuple(d["model"][k] for k in ("depth", "width_multiplier", "sk_ratio"))
  assert architecture == (50, 1, 0.0) and d["source"]["preset"] == "r50_1x"
  assert (d_sk["model"]["sk_ratio"], d_sk["model"]["bn_epsilon"]) == (0.0625, 1e-5)
  assert d["model"]["heads"]["classes"]["input"] == "pre_logits"
  assert d_sk["model"]["heads"]["classes"]["input"] == "proj_1"
  assert d["source"]["classifier_input"] == "pre_logits" and d["source"]["weights"] == "ema"
  assert d["source"]["classifier_weights"] == "raw" and d["step"] == 250228
  assert d["source"]["head"] == "supervised" and set(d["model"]["heads"]) == {"proj", "classes"}
  assert d["input_size"] == [SIZE, SIZE, 3] and "0.875" in d["source"]["released_preprocessing"]
  names = d["class_names"]  # tfds imagenet2012's order: sorted WNIDs
  assert len(names) == 1000 and names == sorted(names) and names[0] == "n01440764"
  assert d_sk["class_names"] == [str(i) for i in range(10)] and d["dataset"] == "imagenet2012"


HEAD_OUTPUTS = {"projection": {"pre_logits", "proj", "proj_0", "proj_1", "proj_2", "proj_3"},
                "none": {"pre_logits"}}
HEAD_PARAMS = {"projection": {"trunk", "head_proj_1", "head_proj_2", "head_proj_3"},
               "none": {"trunk"}}


@pytest.fixture(name="r26_heads", scope="module")
def r26_heads_fixture(r26, tmp_path_factory):
  """The R26 checkpoint converted with --head=projection and --head=none, and the TF
  reference's outputs (EMA weights) with the names it read."""
  prefix, written, images = r26
  reader = ref.Variables(values=written, prefix="ema_model/")
  want = ref.forward(reader, images / 255.0, depth=26, width=1, sk=False, num_classes=10,
                     ft_proj_selector=0)
  exports = {}
  for head in HEAD_OUTPUTS:
    out = str(tmp_path_factory.mktemp(head) / "export")
    description = convert.convert_simclrv2(os.path.dirname(prefix), out, image_size=SIZE,
                                           head=head)
    model, variables, _ = export.load_model(out)
    got = model.apply(variables, export.to_model_input(images), train=False)
    exports[head] = dict(dir=out, description=description, variables=variables,
                         got={k: np.asarray(v) for k, v in got.items()})
  return dict(want=want, read=reader.read, written=written, exports=exports, images=images)


@pytest.mark.parametrize("head", HEAD_OUTPUTS)
@pytest.mark.slow
def test_head_choice_exports_the_heads_it_names(r26_heads, head):
  """--head=projection: trunk and projection head, no classifier (no predict.jax); --head=none:
  the trunk. Their outputs equal the TF reference's; their variables are exactly the
  reference's tensors of those scopes."""
  e = r26_heads["exports"][head]
  assert set(e["got"]) == HEAD_OUTPUTS[head]
  for output in {"pre_logits", "proj_1", "proj"} & HEAD_OUTPUTS[head]:
    want = r26_heads["want"][output]
    np.testing.assert_array_less(np.abs(e["got"][output] - want).max(),
                                 RTOL * np.abs(want).max(), err_msg=output)
  assert set(e["variables"]["params"]) == HEAD_PARAMS[head]
  scopes = ("ema_model/base_model/",) + (("ema_model/head_contrastive/",)
                                         if head == "projection" else ())
  taken = [n for n in r26_heads["read"] if n.startswith(scopes)]
  assert _fingerprints(jax.tree.leaves(e["variables"])) == _fingerprints(
      [r26_heads["written"][n] for n in taken])
  d = e["description"]
  assert d["num_classes"] == 0 and d["class_names"] == [] and d["source"]["head"] == head
  assert "classifier_input" not in d["source"] and "classes" not in d["model"]["heads"]
  assert not os.path.exists(os.path.join(e["dir"], export.PREDICT_FILE))
  assert export.missing_parts(e["dir"]) == []
  with pytest.raises(ValueError, match="has no classifier"):
    export.load_predict(e["dir"])


@pytest.mark.slow
def test_trunk_only_export_gives_features_without_tensorflow(r26_heads):
  """export.load_endpoints (jax and orbax only) reads the features, and s4l_jax.embed writes
  them for a dataset of other classes (digits)."""
  e = r26_heads["exports"]["none"]
  features, _ = export.load_endpoints(e["dir"], "pre_logits")
  np.testing.assert_allclose(features(r26_heads["images"]), e["got"]["pre_logits"],
                             rtol=1e-5, atol=1e-5 * np.abs(e["got"]["pre_logits"]).max())
  arrays = embed.embed_export(e["dir"], "digits", "test", "pre_logits", batch_size=128)
  assert arrays["features"].shape == (len(arrays["labels"]), 2048)
  assert np.isfinite(arrays["features"]).all() and arrays["features"].std() > 0


@pytest.mark.slow
def test_projection_export_starts_finetuning_from_proj_1(r26_heads):
  """`simclrv2.py:pretrained=` takes trunk and proj_1 from a --head=projection export; a
  --head=none export has no proj_1 and fails in one line."""
  exported = r26_heads["exports"]["projection"]["dir"]
  finetune = load_config("simclrv2", f"dataset=digits,steps=2,pretrained={exported}"
                         ).stages.finetune
  from s4l_jax import initialization as model_init  # pylint: disable=g-import-not-at-top
  from s4l_jax.models import build_model  # pylint: disable=g-import-not-at-top
  start = model_init.init_variables(build_model(finetune.model, 10), (8, 8, 3),
                                    jax.random.PRNGKey(0), init_from=exported,
                                    init_take=finetune.init_take)
  for collection in ("params", "batch_stats"):
    for name in ("trunk", "head_proj_1"):
      jax.tree.map(np.testing.assert_array_equal, start[collection][name],
                   r26_heads["exports"]["projection"]["variables"][collection][name])
  with pytest.raises(ValueError, match=r"has no projection head 'proj' .* --head=projection"):
    load_config("simclrv2", "dataset=digits,pretrained=" + r26_heads["exports"]["none"]["dir"])


def test_raw_weights_read_the_trained_copy(r26):
  prefix, written, _ = r26
  reader = tf_checkpoint.CheckpointReader(prefix)
  for weights, source in (("raw", ""), ("ema", "ema_model/")):
    _, variables, info = convert.convert_variables(reader, weights, "pre_logits", SIZE)
    assert info["weights"] == weights
    np.testing.assert_array_equal(variables["params"]["trunk"]["block1_unit1_conv2"]["kernel"],
                                  written[source + "base_model/conv2d_3/kernel"])
    np.testing.assert_array_equal(variables["batch_stats"]["head_proj_3"]["bn"]["var"],
                                  written[source + "head_contrastive/nl_2/batch_normalization/"
                                          "moving_variance"])
  assert not np.array_equal(written["base_model/conv2d_3/kernel"],
                            written["ema_model/base_model/conv2d_3/kernel"])


def test_architecture_is_inferred_from_counts_and_the_stem():
  def shapes(convs, bns, stem):
    s = {f"base_model/conv2d{f'_{i}' if i else ''}/kernel": (1, 1, 1, 1) for i in range(convs)}
    s.update({f"base_model/batch_normalization{f'_{i}' if i else ''}/gamma": (1,)
              for i in range(bns)})
    s["base_model/conv2d/kernel"] = stem
    return s
  assert convert.infer_architecture(shapes(53, 53, (7, 7, 3, 64)), "") == dict(
      depth=50, width_multiplier=1, sk_ratio=0.0)
  assert convert.infer_architecture(shapes(87, 71, (3, 3, 3, 32)), "") == dict(
      depth=50, width_multiplier=1, sk_ratio=0.0625)
  assert convert.infer_architecture(shapes(3 + 5 * 50 + 4, 3 + 4 * 50 + 4, (3, 3, 3, 96)),
                                    "") == dict(depth=152, width_multiplier=3, sk_ratio=0.0625)
  with pytest.raises(ValueError, match="53 convolutions and 52 BatchNorms fit no resnet_v1"):
    convert.infer_architecture(shapes(53, 52, (7, 7, 3, 64)), "")
  with pytest.raises(ValueError, match="100 output channels"):
    convert.infer_architecture(shapes(53, 53, (7, 7, 3, 100)), "")


def test_name_map_follows_creation_order():
  """conv2d_10 follows conv2d_9 (not lexical order); SK adds two convs and one BN per unit."""
  names = [n for n, _ in convert.name_map(50, sk=False)]
  convs = [n for n in names if n.endswith("/kernel") and n.startswith("base_model/")]
  assert len(convs) == 53 and convs[9:11] == ["base_model/conv2d_9/kernel",
                                              "base_model/conv2d_10/kernel"]
  mapping = dict(convert.name_map(50, sk=True))
  assert mapping["base_model/conv2d_3/kernel"] == ("params", "trunk", "block1_unit1_proj", "kernel")
  assert mapping["base_model/conv2d_6/kernel"] == ("params", "trunk", "block1_unit1_sk_conv1",
                                                   "kernel")
  assert mapping["base_model/batch_normalization_70/moving_mean"] == (
      "batch_stats", "trunk", "block4_unit3_bn3", "mean")
  assert len(names) == len(set(names))


def _rewrite(r26, directory, drop=(), add=None):
  """The R26 checkpoint rewritten under directory/pretrained without `drop`, plus `add`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  _, written, _ = r26
  values = {n: v for n, v in written.items() if n not in drop} | (add or {})
  os.makedirs(directory / "pretrained")
  prefix = str(directory / "pretrained" / "model.ckpt-1")
  names = sorted(values)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=[tf.constant(values[n]) for n in names])
  return prefix


@pytest.mark.parametrize("drop,add,weights,message", [
    (("base_model/batch_normalization_7/moving_variance",), None, "raw",
     "tensor base_model/batch_normalization_7/moving_variance is missing"),
    ((), {"head_contrastive/nl_3/dense/kernel": np.zeros((128, 128), np.float32)}, "raw",
     r"tensor head_contrastive/nl_3/dense/kernel \(and 0 more\) .* is not part of a resnet_v1 "
     "depth 26"),
    (("ema_model/base_model/conv2d_28/kernel",), None, "ema",
     "ema_model/base_model/: 28 convolutions and 29 BatchNorms fit no resnet_v1 depth"),
    ((), {"base_model/conv2d_4/kernel": np.zeros((1, 1, 64, 65), np.float32)}, "raw",
     r"tensor base_model/conv2d_4/kernel has shape \(1, 1, 64, 65\) but "
     r"params/trunk/block1_unit1_conv3/kernel .* has \(1, 1, 64, 256\)"),
    (("head_supervised/linear_layer/dense/kernel",), None, "ema",
     "tensor ema_model/head_supervised/linear_layer/dense/kernel .* is missing"),
])
def test_bad_checkpoints_fail_in_one_line(r26, tmp_path, drop, add, weights, message):
  prefix = _rewrite(r26, tmp_path, drop, add)
  with pytest.raises(ValueError, match=message) as error:
    convert.convert_variables(tf_checkpoint.CheckpointReader(prefix), weights, "auto", SIZE)
  assert "\n" not in str(error.value)


@pytest.mark.parametrize("drop,head,message", [
    (("head_supervised/",), "supervised", r"^--head=supervised but the checkpoint has no "
     r"classifier \(no head_supervised/ tensors\); use --head=projection or none$"),
    (("head_supervised/", "head_contrastive/"), "projection", r"^--head=projection but the "
     r"checkpoint has no projection head \(no head_contrastive/ tensors\); use --head=none$"),
    ((), "linear", r"^--head='linear'; valid: supervised, projection, none$"),
])
def test_requested_head_absent_fails_in_one_line(r26, tmp_path, drop, head, message):
  prefix = _rewrite(r26, tmp_path, [n for n in r26[1]
                                    if n.removeprefix("ema_model/").startswith(drop)])
  with pytest.raises(ValueError, match=message):
    convert.convert_variables(tf_checkpoint.CheckpointReader(prefix), "auto", "auto", SIZE, head)


def test_trunk_only_checkpoint_converts_with_head_none(r26, tmp_path):
  prefix = _rewrite(r26, tmp_path, [n for n in r26[1] if "head_" in n])
  reader = tf_checkpoint.CheckpointReader(prefix)
  record, variables, source = convert.convert_variables(reader, "raw", "auto", SIZE, "none")
  assert set(variables["params"]) == {"trunk"} and record["heads"] == {}
  assert source["head"] == "none" and source["weights"] == "raw"
  np.testing.assert_array_equal(variables["params"]["trunk"]["root_conv"]["kernel"],
                                r26[1]["base_model/conv2d/kernel"])
  with pytest.raises(ValueError, match="^--classifier_input=proj_1 but --head=none exports no "
                     "classifier"):
    convert.convert_variables(reader, "raw", "proj_1", SIZE, "none")


def test_paths_and_options_that_are_no_checkpoint(r26, tmp_path):
  (tmp_path / "notes.txt").write_text("not a checkpoint")
  with pytest.raises(ValueError, match="holds 0 TF checkpoints"):
    tf_checkpoint.CheckpointReader(str(tmp_path))
  with pytest.raises(ValueError, match="no .*notes.txt.index"):
    tf_checkpoint.CheckpointReader(str(tmp_path / "notes.txt"))
  (tmp_path / "bad.index").write_text("garbage")
  with pytest.raises(ValueError, match="is not a readable TF checkpoint"):
    tf_checkpoint.CheckpointReader(str(tmp_path / "bad"))
  raw_only = _rewrite(r26, tmp_path / "raw", drop=[n for n in r26[1] if n.startswith("ema_")])
  reader = tf_checkpoint.CheckpointReader(raw_only)
  with pytest.raises(ValueError, match="no ema_model/ tensors; use --weights=raw"):
    convert.convert_variables(reader, "ema", "pre_logits", SIZE)
  assert convert.convert_variables(reader, "auto", "pre_logits", SIZE)[2]["weights"] == "raw"
  with pytest.raises(ValueError, match="--classifier_input=pre_logits .* or proj_1"):
    convert.resolve_classifier_input("/data/mine/model.ckpt-1", "auto")
  assert convert.resolve_classifier_input("/d/finetuned_1pct/r50_1x_sk0", "auto") == "proj_1"


@pytest.mark.slow
def test_cli_fails_in_one_line_without_traceback(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "s4l_jax.convert", "simclrv2", str(tmp_path / "none"),
       f"--out={tmp_path / 'export'}"], cwd=ROOT, capture_output=True, text=True, check=False,
      env=dict(os.environ, PYTHONPATH=ROOT))
  assert result.returncode != 0 and "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("ERROR: ") and "none.index" in last
  assert not os.path.exists(tmp_path / "export")


@pytest.mark.slow
def test_pretrained_export_starts_finetune_and_distill(r26, tmp_path):
  """`simclrv2.py:pretrained=EXPORT` on digits: the pipeline is fine-tune -> distill with no
  pretraining stage, both with the export's architecture; the fine-tuning's initial weights
  are the converted trunk and first projection layer, the classifier (on proj_1) at zero.
  (Training it, 2 steps of each stage on 8 x 8 digits, takes minutes of XLA compilation of
  the smallest resnet_v1, R26, on a CPU: run by hand, see the README; the stages' mechanics
  are the three-stage pipeline's, tests/test_runner.py.)"""
  prefix, _, _ = r26
  exported = str(tmp_path / "export")
  convert.convert_simclrv2(os.path.dirname(prefix), exported, image_size=SIZE)
  c = load_config("simclrv2", f"dataset=digits,steps=2,pretrained={exported}")
  assert list(c.stages) == ["distill", "finetune"] and c.run_stages == "all"
  assert runner.stage_order(c.stages) == ["finetune", "distill"]
  finetune = c.stages.finetune
  assert finetune.init_from == exported and c.stages.distill.frozen_teacher == "@finetune"
  for stage in c.stages.values():
    assert (stage.model.name, stage.model.depth, stage.model.sk_ratio) == ("resnet_v1", 26, 0.0)
  step3 = load_config("simclrv2", f"dataset=digits,step=3,pretrained={exported}")
  assert step3.run_stages == "distill"
  from s4l_jax import initialization  # pylint: disable=g-import-not-at-top
  from s4l_jax.models import build_model  # pylint: disable=g-import-not-at-top
  start = initialization.init_variables(build_model(finetune.model, 10), (8, 8, 3),
                                        jax.random.PRNGKey(0), init_from=exported,
                                        init_take=finetune.init_take)["params"]
  converted = export.load_variables(exported)["params"]
  assert set(start) == {"trunk", "head_proj_1", "head_classes"}
  for name in ("trunk", "head_proj_1"):
    jax.tree.map(np.testing.assert_array_equal, start[name], converted[name])
  jax.tree.map(lambda w: np.testing.assert_array_equal(w, 0.0), start["head_classes"])
  with pytest.raises(ValueError, match="replaces the pretraining stage"):
    load_config("simclrv2", f"dataset=digits,step=1,pretrained={exported}")


@pytest.mark.skipif(not os.environ.get(REAL_CHECKPOINT_ENV),
                    reason=f"set {REAL_CHECKPOINT_ENV}=a released SimCLRv2 checkpoint folder "
                    "(e.g. gs://simclr-checkpoints/simclrv2/pretrained/r50_1x_sk0, copied)")
def test_real_checkpoint_matches_the_official_forward_pass(tmp_path):
  path = os.environ[REAL_CHECKPOINT_ENV]
  description = convert.convert_simclrv2(path, str(tmp_path / "export"), image_size=64)
  m, source = description["model"], description["source"]
  reader = tf_checkpoint.CheckpointReader(path)
  values = {name: reader.get(name) for name in reader.shapes}
  images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
  want = ref.forward(ref.Variables(values, "ema_model/" if source["weights"] == "ema" else ""),
                     images / 255.0, depth=m["depth"], width=m["width_multiplier"],
                     sk=m["sk_ratio"] > 0, num_classes=description["num_classes"],
                     ft_proj_selector=CLASSIFIER_SELECTOR[source["classifier_input"]])
  predict, _ = export.load_predict(str(tmp_path / "export"))
  logits = np.asarray(predict(images))
  np.testing.assert_array_less(np.abs(logits - want["classes"]).max(),
                               RTOL * np.abs(want["classes"]).max())


CLASSIFIER_SELECTOR = {"pre_logits": 0, "proj_1": 1}
