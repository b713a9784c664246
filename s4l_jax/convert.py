"""Released SimCLRv2 TF1 checkpoints -> this project's export (`export.write_export`).

    python -m s4l_jax.convert simclrv2 CKPT_DIR_OR_PREFIX --out=EXPORT_DIR
        [--weights=auto|ema|raw] [--head=supervised|projection|none]
        [--classifier_input=auto|pre_logits|proj_1] [--image_size=224]
    python -m s4l_jax.convert s4l HUB_MODULE_DIR --out=EXPORT_DIR [--image_size=224]

(the second: S4L's released TF1 Hub modules, `s4l_jax/convert_s4l.py`; this module holds the
CLI; the checkpoint reading both share is `s4l_jax/tf_checkpoint.py`)

reads a name-based TF1 checkpoint of google-research/simclr (`base_model/conv2d[_N]/kernel`,
`base_model/batch_normalization[_N]/{gamma,beta,moving_mean,moving_variance}`,
`head_contrastive/nl_{0,1,2}/...`, `head_supervised/linear_layer/dense/{kernel,bias}`, the
`ema_model/` copies, optimizer `Momentum` slots, `global_step`, `memory`) and writes the
export every run writes (`predict.jax`, `variables/`, `export.json`), so `init_from`,
`frozen_teacher`, `configs/simclrv2.py:pretrained=EXPORT_DIR`, `s4l_jax.evaluate` and
`pseudo_label` read it unchanged. TensorFlow (the `[tf]` extra) is needed here only, to read
the checkpoint.

The model: `resnet_v1` (depth, width multiplier and SK inferred from the checkpoint's counts
and shapes: R50 has 53 convolutions and 53 BatchNorms, with SK 87 and 71) and, by `--head`:
`supervised` (default) the 3-layer projection head `proj` and the checkpoint's linear
classifier as `classes`, reading the pooled features (`pre_logits`: pretrained, supervised
and finetuned_100pct checkpoints) or the first projection layer (`proj_1`: finetuned_1pct /
10pct, SimCLR's `ft_proj_selector=1`); `projection` the projection head and no classifier
(an export of features and projections, no predict.jax: fine-tuning from `proj_1` takes
trunk and proj_1 from it); `none` the trunk alone. The heads left out are skipped on purpose;
a requested head the checkpoint lacks fails in one line.
The TF variable names are generated from (depth, SK) in the official code's creation order
(`conv2d_10` follows `conv2d_9`); every selected tensor fills exactly one variable of the
model, with its shape, or the conversion fails in one line naming the tensor.
Weights: `ema` reads the `ema_model/` copies (the classifier from `ema_model/head_supervised`
if there is one, else the raw `head_supervised`, which is recorded), `raw` the trained ones,
`auto` ema when the checkpoint has ema copies. Input: the export's usual uint8 images at
`image_size`; the released models saw RGB in [0, 1] after the eval crop (central 0.875, resized
to 224), which export.json records with the class order (tfds imagenet2012: sorted WNIDs).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads (when it does)
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from s4l_jax import (  # pylint: disable=g-import-not-at-top,wrong-import-position
    convert_s4l, export, tf_checkpoint)
from s4l_jax.models import presets, resnet_v1  # pylint: disable=g-import-not-at-top,wrong-import-position

# Top-level names of non-weight tensors (the step, the contrastive memory's queue), ignored
# like every optimizer slot (`.../Momentum`).
IGNORED = ("global_step", "memory")
SLOT_SUFFIX = "/Momentum"
EMA_PREFIX = "ema_model/"
SUPERVISED_SCOPE, PROJECTION_SCOPE = "head_supervised/", "head_contrastive/"
CLASSIFIER = SUPERVISED_SCOPE + "linear_layer/dense/"
# --head -> the checkpoint scopes the export takes besides base_model/
HEAD_SCOPES = {"supervised": (PROJECTION_SCOPE, SUPERVISED_SCOPE),
               "projection": (PROJECTION_SCOPE,), "none": ()}
CLASSIFIER_INPUTS = ("pre_logits", "proj_1")
# Released checkpoint folders (gs://simclr-checkpoints/simclrv2/<folder>/...) -> the input of
# their classifier (`--classifier_input=auto`).
RELEASED_CLASSIFIER_INPUT = {"pretrained": "pre_logits", "supervised": "pre_logits",
                             "finetuned_100pct": "pre_logits", "finetuned_10pct": "proj_1",
                             "finetuned_1pct": "proj_1"}
EVAL_CROP = ("RGB in [0, 1]; central crop of 0.875 of the shorter side, resized (bicubic) to "
             "224 x 224 (simclr data_util.preprocess_for_eval)")


def _layer(kind: str, index: int) -> str:
  """tf.layers' zero-based unique names: conv2d, conv2d_1, conv2d_2, ..."""
  return kind if index == 0 else f"{kind}_{index}"


def _indices(shapes: dict, scope: str, kind: str, leaf: str) -> list[int]:
  """Sorted N of the `{scope}{kind}[_N]/{leaf}` tensors (no suffix: N = 0)."""
  found = []
  for name in shapes:
    layer, _, tail = name[len(scope):].partition("/")
    if not name.startswith(scope) or tail != leaf:
      continue
    if layer == kind:
      found.append(0)
    elif layer.startswith(kind + "_") and layer[len(kind) + 1:].isdigit():
      found.append(int(layer[len(kind) + 1:]))
  return sorted(found)


def infer_architecture(shapes: dict, prefix: str) -> dict:
  """(depth, width_multiplier, sk_ratio) of the `{prefix}base_model/` trunk from its counts
  of convolutions and BatchNorms and its stem's kernel; ValueError when no resnet_v1 fits."""
  scope = prefix + "base_model/"
  convs = _indices(shapes, scope, "conv2d", "kernel")
  bns = _indices(shapes, scope, "batch_normalization", "gamma")
  stem = shapes.get(scope + "conv2d/kernel")
  if stem is None or len(stem) != 4:
    raise ValueError(f"no ResNet trunk: tensor {scope}conv2d/kernel (the stem) is missing")
  sk = stem[0] == 3  # SK models have the ResNet-D stem: three 3x3 convolutions
  # convolutions: stem + 4 projection shortcuts + per unit 3 (SK: 5); BatchNorms alike, 3 (4)
  stem_layers, per_unit = (3, (5, 4)) if sk else (1, (3, 3))
  units = (len(convs) - stem_layers - 4) / per_unit[0]
  depth = next((d for d, blocks in resnet_v1.BLOCKS.items() if sum(blocks) == units), None)
  expected_bns = stem_layers + 4 + per_unit[1] * units
  if depth is None or len(bns) != expected_bns:
    raise ValueError(f"{scope}: {len(convs)} convolutions and {len(bns)} BatchNorms fit no "
                     f"resnet_v1 depth {sorted(resnet_v1.BLOCKS)} {'with' if sk else 'without'}"
                     " SK (R50: 53 and 53, with SK 87 and 71)")
  width, remainder = divmod(stem[-1], 32 if sk else 64)
  if remainder or width < 1:
    raise ValueError(f"{scope}conv2d/kernel has {stem[-1]} output channels: no width "
                     f"multiplier gives it (64 x width, SK: 32 x width)")
  return dict(depth=depth, width_multiplier=width,
              sk_ratio=presets.SIMCLR_SK_RATIO if sk else 0.0)


def name_map(depth: int, sk: bool, head: str = "supervised"
             ) -> list[tuple[str, tuple[str, ...]]]:
  """[(TF name without the ema prefix, (collection, *path in the flax variables))], in the
  order simclr's resnet.py and model_util.py create the variables; the heads of `--head`."""
  out, counts = [], {"conv2d": 0, "batch_normalization": 0}

  def conv(module):
    out.append((f"base_model/{_layer('conv2d', counts['conv2d'])}/kernel",
                ("params", "trunk", module, "kernel")))
    counts["conv2d"] += 1

  def bn(module):
    layer = _layer("batch_normalization", counts["batch_normalization"])
    for leaf, (collection, ours) in tf_checkpoint.BN_TENSORS.items():
      out.append((f"base_model/{layer}/{leaf}", (collection, "trunk", module, ours)))
    counts["batch_normalization"] += 1

  stem = ("root_conv1", "root_conv2", "root_conv3") if sk else ("root_conv",)
  for module in stem:
    conv(module)
    bn(module.replace("conv", "bn"))
  for b, units in enumerate(resnet_v1.BLOCKS[depth]):
    for u in range(units):
      unit = f"block{b + 1}_unit{u + 1}"
      if u == 0:  # simclr's use_projection: the first unit of every block group
        conv(f"{unit}_proj")
        bn(f"{unit}_proj_bn")
      conv(f"{unit}_conv1")
      bn(f"{unit}_bn1")
      conv(f"{unit}_conv2")
      bn(f"{unit}_bn2")
      if sk:
        conv(f"{unit}_sk_conv1")
        bn(f"{unit}_sk_bn")
        conv(f"{unit}_sk_conv2")
      conv(f"{unit}_conv3")
      bn(f"{unit}_bn3")
  if PROJECTION_SCOPE in HEAD_SCOPES[head]:
    for k in range(3):  # head_contrastive/nl_k: dense (no bias) -> BN (the last without beta)
      module = f"head_proj_{k + 1}"
      out.append((f"{PROJECTION_SCOPE}nl_{k}/dense/kernel", ("params", module, "kernel")))
      for leaf, (collection, ours) in tf_checkpoint.BN_TENSORS.items():
        if not (k == 2 and leaf == "beta"):
          out.append((f"{PROJECTION_SCOPE}nl_{k}/batch_normalization/{leaf}",
                      (collection, module, "bn", ours)))
  if SUPERVISED_SCOPE in HEAD_SCOPES[head]:
    out += [(CLASSIFIER + "kernel", ("params", "head_classes", "kernel")),
            (CLASSIFIER + "bias", ("params", "head_classes", "bias"))]
  return out


def released_model_record(architecture: dict, head: str, classifier_input: str) -> dict:
  """The export's `model`: SimCLRv2's resnet_v1 with the heads `--head` keeps (projection
  head `proj`, linear classifier `classes` on `classifier_input`)."""
  heads = {}
  if PROJECTION_SCOPE in HEAD_SCOPES[head]:
    heads["proj"] = presets.simclr_projection_head()
  if SUPERVISED_SCOPE in HEAD_SCOPES[head]:
    heads["classes"] = dict(dims=-1, input=classifier_input)
  return dict(name="resnet_v1", **architecture, **presets.SIMCLR_BN, heads=heads)


def _choose_weights(shapes: dict, weights: str) -> str:
  has_ema = any(name.startswith(EMA_PREFIX) for name in shapes)
  if weights == "auto":
    weights = "ema" if has_ema else "raw"
  if weights not in ("ema", "raw"):
    raise ValueError(f"--weights={weights!r}; valid: auto, ema, raw")
  if weights == "ema" and not has_ema:
    raise ValueError(f"--weights=ema but the checkpoint has no {EMA_PREFIX} tensors; "
                     "use --weights=raw")
  return weights


def _check_head(shapes: dict, head: str):
  """ValueError (one line) for an unknown `--head` or one whose scopes the checkpoint lacks."""
  if head not in HEAD_SCOPES:
    raise ValueError(f"--head={head!r}; valid: {', '.join(HEAD_SCOPES)}")
  what = {SUPERVISED_SCOPE: "no classifier", PROJECTION_SCOPE: "no projection head"}
  for scope in HEAD_SCOPES[head]:
    if not any(n.startswith((scope, EMA_PREFIX + scope)) for n in shapes):
      keep = [h for h, scopes in HEAD_SCOPES.items() if scope not in scopes]
      raise ValueError(f"--head={head} but the checkpoint has {what[scope]} (no {scope} "
                       f"tensors); use --head={' or '.join(keep)}")


def resolve_classifier_input(path: str, classifier_input: str) -> str:
  """`--classifier_input`; `auto`: from the released folder (`finetuned_10pct`, ...) in path."""
  if classifier_input == "auto":
    folders = [part for part in os.path.normpath(path).split(os.sep)
               if part in RELEASED_CLASSIFIER_INPUT]
    if not folders:
      raise ValueError(f"--classifier_input=auto: {path} is under none of the released "
                       f"folders {', '.join(RELEASED_CLASSIFIER_INPUT)}; give "
                       "--classifier_input=pre_logits (pretrained, supervised, "
                       "finetuned_100pct) or proj_1 (finetuned_1pct, finetuned_10pct)")
    return RELEASED_CLASSIFIER_INPUT[folders[-1]]
  if classifier_input not in CLASSIFIER_INPUTS:
    raise ValueError(f"--classifier_input={classifier_input!r}; valid: auto, "
                     f"{', '.join(CLASSIFIER_INPUTS)}")
  return classifier_input


def convert_variables(reader: tf_checkpoint.CheckpointReader, weights: str = "auto",
                      classifier_input: str = "auto", image_size: int = 224,
                      head: str = "supervised"):
  """Returns (model record, {"params", "batch_stats"} numpy float32, source description).

  Fails with a one-line ValueError on an architecture no resnet_v1 has, a requested head the
  checkpoint lacks, a tensor the model does not use (outside the heads `head` leaves out), a
  tensor it needs and the checkpoint lacks, or a shape that differs.
  """
  shapes = reader.shapes
  weights = _choose_weights(shapes, weights)
  prefix = EMA_PREFIX if weights == "ema" else ""
  _check_head(shapes, head)
  supervised = SUPERVISED_SCOPE in HEAD_SCOPES[head]
  if supervised:
    classifier_input = resolve_classifier_input(reader.prefix, classifier_input)
  elif classifier_input != "auto":
    raise ValueError(f"--classifier_input={classifier_input} but --head={head} exports no "
                     "classifier (it applies to --head=supervised)")
  architecture = infer_architecture(shapes, prefix)
  classifier_prefix = prefix if prefix + CLASSIFIER + "kernel" in shapes else ""
  num_classes = 0
  if supervised:
    kernel = shapes.get(classifier_prefix + CLASSIFIER + "kernel")
    if kernel is None:
      raise ValueError(f"tensor {prefix}{CLASSIFIER}kernel (the classifier"
                       f"{f', or {CLASSIFIER}kernel' if prefix else ''}) is missing")
    num_classes = kernel[-1]
  record = released_model_record(architecture, head, classifier_input)
  pairs = [((classifier_prefix if name.startswith(CLASSIFIER) else prefix) + name, path)
           for name, path in name_map(architecture["depth"], architecture["sk_ratio"] > 0,
                                      head)]
  variables, used = tf_checkpoint.fill_variables(
      reader, pairs, record, num_classes, image_size, f"a resnet_v1 {_describe(architecture)}")
  def other_copy(name):  # the unselected copy (raw or ema) of a tensor that was used
    return (EMA_PREFIX + name in used) if prefix else (
        name.startswith(EMA_PREFIX) and name[len(EMA_PREFIX):] in used)
  left_out = tuple(s for s in (PROJECTION_SCOPE, SUPERVISED_SCOPE) if s not in HEAD_SCOPES[head])
  extra = sorted(n for n in shapes if n not in used and n.split("/")[0] not in IGNORED
                 and not n.endswith(SLOT_SUFFIX) and not other_copy(n)
                 and not n.removeprefix(EMA_PREFIX).startswith(left_out))
  if extra:
    raise ValueError(f"tensor {extra[0]} (and {len(extra) - 1} more) of {reader.prefix} is "
                     f"not part of a resnet_v1 {_describe(architecture)} with its heads")
  step = int(reader.get("global_step")) if "global_step" in shapes else 0
  source = dict(format="simclrv2_tf1_checkpoint", checkpoint=reader.prefix, weights=weights,
                head=head, global_step=step, preset=preset_name(record),
                released_preprocessing=EVAL_CROP)
  if supervised:
    source.update(classifier_weights="ema" if classifier_prefix else "raw",
                  classifier_input=classifier_input)
  return record, variables, source


def preset_name(record: dict) -> str | None:
  """The `presets.MODEL_PRESETS` entry with `record`'s architecture (`r50_1x`), or None."""
  return next((name for name, preset in presets.MODEL_PRESETS.items()
               if all(record.get(k) == v for k, v in preset.items())), None)


def _describe(architecture: dict) -> str:
  return (f"depth {architecture['depth']} width {architecture['width_multiplier']}x "
          f"{'with' if architecture['sk_ratio'] else 'without'} SK")


def convert_simclrv2(checkpoint: str, out: str, *, weights: str = "auto",
                     classifier_input: str = "auto", image_size: int = 224,
                     head: str = "supervised") -> dict:
  """Converts `checkpoint` into the export `out`; returns export.json's contents."""
  reader = tf_checkpoint.CheckpointReader(checkpoint)
  record, variables, source = convert_variables(reader, weights, classifier_input, image_size,
                                                head)
  classifier = variables["params"].get("head_classes")
  class_names = tf_checkpoint.imagenet_class_names(
      classifier["bias"].shape[0] if classifier else 0)
  meta = dict(method="simclrv2_checkpoint", dataset="imagenet2012" if len(class_names) == 1000
              else "", labels="", step=source["global_step"], weights=weights, top1=None,
              source=source)
  export.write_export(out, record, variables, image_size=image_size, channels=3,
                      class_names=class_names, meta=meta)
  return export.load_description(out)


SIMCLRV2_OPTIONS = ("weights", "head", "classifier_input")


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  converters = {"simclrv2": convert_simclrv2, "s4l": convert_s4l.convert_s4l}
  if len(argv) != 3 or argv[1] not in converters:
    sys.exit("ERROR: usage: python -m s4l_jax.convert simclrv2 CKPT_DIR_OR_PREFIX "
             "--out=EXPORT_DIR | python -m s4l_jax.convert s4l HUB_MODULE_DIR --out=EXPORT_DIR")
  options = {name: f[name].value for name in SIMCLRV2_OPTIONS}
  if argv[1] == "s4l":
    given = [name for name in SIMCLRV2_OPTIONS if f[name].present]
    if given:
      sys.exit(f"ERROR: --{given[0]} applies to simclrv2 checkpoints, not to S4L modules")
    options = {}
  try:
    description = converters[argv[1]](argv[2], f.out, image_size=f.image_size, **options)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"ERROR: {e}")
  m = description["model"]
  architecture = " ".join(f"{k} {m[k]}" for k in ("depth", "width_multiplier", "sk_ratio",
                                                  "filters_factor") if k in m)
  print(f"wrote {f.out}: {m['name']} {architecture}, heads {', '.join(m['heads']) or 'none'}, "
        f"{description['num_classes']} classes")


def run():
  """The command line (`s4l-convert`, `python -m s4l_jax.convert`): its flags, then `main`;
  defined here, not at import, so that importing this module defines no flag."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("out", None, "Export directory to write.", required=True)
  flags.DEFINE_string("weights", "auto", "simclrv2: ema | raw | auto (ema if the checkpoint "
                      "has ema_model/ copies).")
  flags.DEFINE_string("head", "supervised", "simclrv2: supervised (projection head and "
                      "classifier) | projection (no classifier) | none (the trunk only).")
  flags.DEFINE_string("classifier_input", "auto", "simclrv2 with --head=supervised: "
                      "pre_logits | proj_1 | auto (from the released folder name: "
                      "finetuned_1pct / 10pct read proj_1).")
  flags.DEFINE_integer("image_size", 224, "Square input size of the exported functions.")
  from s4l_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)


if __name__ == "__main__":
  run()
