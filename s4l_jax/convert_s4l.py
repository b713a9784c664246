"""S4L's released TF1 Hub modules (gs://s4l-models) -> this project's export.

    python -m s4l_jax.convert s4l MODULE_DIR --out=EXPORT_DIR [--image_size=224]

A TF1 Hub module is a folder (`saved_model.pb`, `tfhub_module.pb`,
`variables/variables.{index,data-*}`); its variables are a name-based checkpoint that
`tf.train.load_checkpoint` reads offline, without the graph. google-research/s4l builds the
module's graph in `trainer.make_hub_predictor` with no enclosing scope: `models/resnet.py:
resnet50` (mode v2, `filters_factor` k, no classifier inside) and one 1x1-convolution head per
output of `semi_supervised/utils.apply_model_semi` (`classes`; `rotations` for S4L-Rotation,
`embeddings` for S4L-Exemplar), named by their tf.layers scopes:

    root_block/conv2d/kernel                      7x7/2 convolution, 16k channels
    block{b}/unit{u}/batch_normalization/*        the unit's pre-activation BN (+ ReLU)
    block{b}/unit{u}/proj/conv2d/kernel           1x1 shortcut of the first unit of a block
    block{b}/unit{u}/a/conv2d/kernel              1x1
    block{b}/unit{u}/{b,c}/batch_normalization/*  BN + ReLU before the 3x3 (b) and 1x1 (c)
    block{b}/unit{u}/{b,c}/conv2d/kernel
    batch_normalization/*                         the final BN (+ ReLU, global average pool)
    {head}/kernel (1, 1, C, n), {head}/bias       each output head on the pooled features

That network is this project's `resnet50v2` trunk (`ResNet50V2`: the same pre-activation
order, zero fixed padding, stride in the 3x3 convolution, BN epsilon 1e-3) with linear
heads of the same names (`classes`, `rotations`, `embeddings`). The released models saw
`resize_small(256)|crop(224)|-1_to_1` (the export's [-1, 1] input after that crop), and
classes in the label order of the slim ImageNet TFRecords minus 1 (sorted WNIDs, as tfds).
"""
import collections
import os
import re

from s4l_jax import export, tf_checkpoint

ROOT = "root_block/conv2d/kernel"  # the stem, which locates the module's scope
BLOCK_UNITS = (3, 4, 6, 3)  # ResNet-50: the only depth of `resnet50v2`
TRUNK_SCOPES = ("root_block", "block1", "block2", "block3", "block4", "batch_normalization")
IGNORED = ("global_step",)
EVAL_CROP = ("[-1, 1] = uint8 / 255 * 2 - 1 after resize_small(256) (area) and a central "
             "224 x 224 crop (s4l config/*.sh preprocessing_eval)")


def variables_prefix(module_dir: str) -> str:
  """`MODULE_DIR/variables/variables` (the module's checkpoint), or ValueError (one line)."""
  prefix = os.path.join(module_dir, "variables", "variables")
  if not os.path.exists(prefix + ".index"):
    raise ValueError(f"{module_dir} is not a TF1 Hub module: no {prefix}.index (copy the "
                     "whole module folder, e.g. gsutil -m cp -r gs://s4l-models/...)")
  return prefix


def module_scope(shapes: dict) -> str:
  """The scope the module's variables share ('' for the released modules)."""
  scopes = [n[:-len(ROOT)] for n in shapes if n.endswith(ROOT)]
  if len(scopes) != 1:
    raise ValueError(f"{len(scopes)} tensors named .../{ROOT} (the stem of an S4L ResNet); "
                     "expected one")
  return scopes[0]


def infer_architecture(shapes: dict, scope: str) -> dict:
  """{"filters_factor": k} from the stem (16k channels); ValueError (one line) unless the
  blocks hold ResNet-50's (3, 4, 6, 3) bottleneck units."""
  stem = shapes[scope + ROOT]
  k, remainder = divmod(stem[-1], 16)
  if stem[:3] != (7, 7, 3) or remainder or k < 1:
    raise ValueError(f"{scope}{ROOT} has shape {stem}: no filters_factor gives it "
                     "(7 x 7 x 3 x 16k)")
  unit = re.compile(re.escape(scope) + r"block(\d+)/unit\d+/a/conv2d/kernel")
  per_block = collections.Counter(int(m[1]) for m in map(unit.fullmatch, shapes) if m)
  units = tuple(per_block[b] for b in range(1, 5))
  first = shapes.get(f"{scope}block1/unit1/a/conv2d/kernel", ())
  if units != BLOCK_UNITS or first[:2] != (1, 1):
    raise ValueError(f"{scope or 'the module'}: blocks of {units} units "
                     f"{'(bottleneck)' if first[:2] == (1, 1) else '(not bottleneck)'}; this "
                     f"project's resnet50v2 is the ResNet-50 of {BLOCK_UNITS} bottleneck units")
  return dict(filters_factor=k)


def head_names(shapes: dict, scope: str) -> list[str]:
  """The module's output heads: top-level `{scope}{head}/kernel` outside the trunk."""
  names = []
  for name in shapes:
    head, _, leaf = name[len(scope):].partition("/")
    if name.startswith(scope) and leaf == "kernel" and head not in TRUNK_SCOPES:
      names.append(head)
  return sorted(names)


def name_map(scope: str, heads) -> list[tuple[str, tuple[str, ...]]]:
  """[(TF name, (collection, *path in the flax variables))] of S4L's resnet50 (v2) trunk
  with linear `heads`, in the order models/resnet.py creates them."""
  out = []

  def conv(tf_scope, module):
    out.append((f"{scope}{tf_scope}conv2d/kernel", ("params", "trunk", module, "kernel")))

  def bn(tf_scope, module):
    out.extend((f"{scope}{tf_scope}batch_normalization/{leaf}",
                (collection, "trunk", module, ours))
               for leaf, (collection, ours) in tf_checkpoint.BN_TENSORS.items())

  conv("root_block/", "root_conv")
  for b, units in enumerate(BLOCK_UNITS):
    for u in range(units):
      tf_unit, unit = f"block{b + 1}/unit{u + 1}/", f"block{b + 1}_unit{u + 1}"
      bn(tf_unit, f"{unit}_bn0")
      if u == 0:  # resnet.py's projection: stride > 1 or a new width (every block's first)
        conv(tf_unit + "proj/", f"{unit}_proj")
      conv(tf_unit + "a/", f"{unit}_conv1")
      bn(tf_unit + "b/", f"{unit}_bn1")
      conv(tf_unit + "b/", f"{unit}_conv2")
      bn(tf_unit + "c/", f"{unit}_bn2")
      conv(tf_unit + "c/", f"{unit}_conv3")
  bn("", "final_bn")
  for head in heads:
    out += [(f"{scope}{head}/kernel", ("params", f"head_{head}", "kernel")),
            (f"{scope}{head}/bias", ("params", f"head_{head}", "bias"))]
  return out


def convert_variables(reader: tf_checkpoint.CheckpointReader, image_size: int = 224):
  """Returns (model record, {"params", "batch_stats"} numpy float32, source description);
  ValueError (one line, naming it) for another architecture, a tensor missing, left over or
  of another shape."""
  shapes = reader.shapes
  scope = module_scope(shapes)
  architecture = infer_architecture(shapes, scope)
  heads = head_names(shapes, scope)
  widths = {head: shapes[f"{scope}{head}/kernel"][-1] for head in heads}
  record = dict(name="resnet50v2", **architecture, heads=widths)
  model_name = f"a resnet50v2 with filters_factor {architecture['filters_factor']}"
  pairs = name_map(scope, heads)
  variables, used = tf_checkpoint.fill_variables(
      reader, pairs, record, widths.get(export.CLASSIFIER, 0), image_size, model_name,
      dense_from_conv={f"{scope}{head}/kernel" for head in heads})
  extra = sorted(n for n in shapes if n not in used and n[len(scope):] not in IGNORED)
  if extra:
    raise ValueError(f"tensor {extra[0]} (and {len(extra) - 1} more) of {reader.prefix} is "
                     f"not part of {model_name} and its heads {', '.join(heads) or '(none)'}")
  source = dict(format="s4l_tf1_hub_module", checkpoint=reader.prefix, heads=heads,
                released_preprocessing=EVAL_CROP)
  return record, variables, source


def convert_s4l(module_dir: str, out: str, *, image_size: int = 224) -> dict:
  """Converts the Hub module `module_dir` into the export `out`; returns export.json's
  contents (no classifier and no predict.jax if the module has no `classes` head)."""
  reader = tf_checkpoint.CheckpointReader(variables_prefix(module_dir))
  record, variables, source = convert_variables(reader, image_size)
  class_names = tf_checkpoint.imagenet_class_names(record["heads"].get(export.CLASSIFIER, 0))
  meta = dict(method="s4l_hub_module", dataset="imagenet2012" if len(class_names) == 1000
              else "", labels="", step=0, weights="module", top1=None, source=source)
  export.write_export(out, record, variables, image_size=image_size, channels=3,
                      class_names=class_names, meta=meta)
  return export.load_description(out)
