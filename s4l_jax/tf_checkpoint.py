"""Reading TF1 name-based checkpoints into this project's variables: what both converters
(`convert.py`: SimCLRv2 checkpoints; `convert_s4l.py`: S4L's Hub modules) share.

TensorFlow (the `[tf]` extra) is imported only when a checkpoint is read.
"""
import os

import numpy as np

# TF BatchNorm tensor -> (flax collection, leaf).
BN_TENSORS = {"gamma": ("params", "scale"), "beta": ("params", "bias"),
              "moving_mean": ("batch_stats", "mean"), "moving_variance": ("batch_stats", "var")}


class CheckpointReader:
  """Names, shapes and values of a TF1 name-based checkpoint (`tf.train.load_checkpoint`)."""

  def __init__(self, path: str):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top (the [tf] extra)
    self.prefix = checkpoint_prefix(path)
    try:
      self._reader = tf.train.load_checkpoint(self.prefix)
    except (tf.errors.OpError, ValueError) as e:
      raise ValueError(f"{path} is not a readable TF checkpoint: "
                       f"{str(e).splitlines()[0]}") from None
    self.shapes = {name: tuple(shape)
                   for name, shape in self._reader.get_variable_to_shape_map().items()}

  def get(self, name: str) -> np.ndarray:
    return np.asarray(self._reader.get_tensor(name))


def checkpoint_prefix(path: str) -> str:
  """A checkpoint prefix (`DIR/model.ckpt-250228`) or a folder holding one checkpoint."""
  if not os.path.isdir(path):
    if not os.path.exists(path + ".index"):
      raise ValueError(f"{path} is not a TF checkpoint: no {path}.index (give the folder or "
                       "the prefix, e.g. r50_1x_sk0/model.ckpt-250228)")
    return path
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  latest = tf.train.latest_checkpoint(path)
  if latest:
    return latest
  indexes = sorted(n[:-len(".index")] for n in os.listdir(path) if n.endswith(".index"))
  if len(indexes) != 1:
    raise ValueError(f"{path} holds {len(indexes)} TF checkpoints (*.index) and no "
                     "'checkpoint' file naming one; give the prefix")
  return os.path.join(path, indexes[0])


def fill_variables(reader: CheckpointReader, pairs, record: dict, num_classes: int,
                   image_size: int, model_name: str, dense_from_conv=frozenset()):
  """({"params", "batch_stats"} of `record`'s model, numpy float32, every variable filled by
  its tensor of `pairs` [(TF name, (collection, *path))], the TF names used).

  `dense_from_conv`: TF names of 1x1-convolution kernels (1, 1, in, out) that fill Dense
  kernels (in, out). ValueError (one line, naming it) for a tensor missing or of another
  shape, or a model variable no tensor fills; `model_name` ("a resnet_v1 depth 50 ...")
  says whose.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from s4l_jax import models  # pylint: disable=g-import-not-at-top
  model = models.build_model(record, num_classes)
  expected = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(
      (1, image_size, image_size, 3)), train=False))
  expected = {tuple(k.key for k in path): tuple(leaf.shape)
              for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]}
  variables, used = {}, set()
  for name, path in pairs:
    if name not in reader.shapes:
      raise ValueError(f"tensor {name} is missing from {reader.prefix} ({model_name} "
                       "needs it)")
    want = expected.get(path)
    stored = (1, 1) + want if want is not None and name in dense_from_conv else want
    if want is None or reader.shapes[name] != stored:
      raise ValueError(f"tensor {name} has shape {reader.shapes[name]} but {'/'.join(path)} "
                       f"of {model_name} has {stored}")
    node = variables
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = reader.get(name).astype(np.float32).reshape(want)
    used.add(name)
    del expected[path]
  if expected:
    raise ValueError(f"model variable {'/'.join(next(iter(expected)))} of {model_name} has "
                     "no tensor")
  return variables, used


def imagenet_class_names(num_classes: int) -> list[str]:
  """tfds imagenet2012's label order (sorted WNIDs) for 1000 outputs, else '0'..'K-1'."""
  if num_classes != 1000:
    return [str(i) for i in range(num_classes)]
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top (the [tf] extra)
  return list(tfds.builder("imagenet2012").info.features["label"].names)
