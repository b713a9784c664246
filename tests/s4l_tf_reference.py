"""The independent side of the S4L converter's parity tests: the forward pass of S4L's released
Hub modules in plain TensorFlow ops, written from google-research/s4l `models/resnet.py`
(`resnet50`, mode v2: `bottleneck_v2`, `fixed_padding`, `batch_norm`) and
`semi_supervised/utils.py` + `utils.linear` (one 1x1-convolution head per output on the
pooled features) in inference mode, plus a writer of a module's `variables/variables`
checkpoint. It shares no code with s4l_jax.

Variables are named by the tf.variable_scope path the official code opens (`block1/unit1/b/
conv2d/kernel`, ...), created (`Variables(rng=...)`: random values) or read from a mapping of
released names.
"""
import os

import numpy as np
import tensorflow as tf

from simclr_tf_reference import random_weight  # the same random draws as the SimCLRv2 reference

NUM_LAYERS = (3, 4, 6, 3)  # resnet50
BATCH_NORM_EPSILON = 1e-3  # tf.layers.batch_normalization's default


class Variables:
  """Variables by name: created (random, recorded in `values`) with `rng`, else read from
  `values` (name -> array); `read` lists the names read."""

  def __init__(self, values=None, rng=None):
    self.values = {} if values is None else values
    self.rng, self.read = rng, []

  def get(self, name, shape, kind):
    if self.rng is not None:
      self.values[name] = random_weight(self.rng, shape, kind)
    value = np.asarray(self.values[name], np.float32)
    assert value.shape == tuple(shape), (name, value.shape, shape)
    self.read.append(name)
    return tf.constant(value)


def batch_norm(v, x, scope):
  """tf.layers.batch_normalization(x, training=False) in variable scope `scope`."""
  layer, c = f"{scope}batch_normalization", x.shape[-1]
  gamma = v.get(f"{layer}/gamma", (c,), "gamma")
  beta = v.get(f"{layer}/beta", (c,), "beta")
  mean = v.get(f"{layer}/moving_mean", (c,), "moving_mean")
  var = v.get(f"{layer}/moving_variance", (c,), "moving_variance")
  return tf.nn.batch_normalization(x, mean, var, beta, gamma, BATCH_NORM_EPSILON)


def conv2d(v, x, scope, filters, kernel_size, strides, padding):
  """tf.layers.conv2d(use_bias=False) in variable scope `scope`."""
  kernel = v.get(f"{scope}conv2d/kernel", (kernel_size, kernel_size, x.shape[-1], filters),
                 "kernel")
  return tf.nn.conv2d(x, kernel, strides, padding)


def fixed_padding(x, kernel_size):
  pad_beg = (kernel_size - 1) // 2
  pad_end = kernel_size - 1 - pad_beg
  return tf.pad(x, [[0, 0], [pad_beg, pad_end], [pad_beg, pad_end], [0, 0]])


def bottleneck_v2(v, x, filters, strides, scope):
  x_shortcut = x
  x = tf.nn.relu(batch_norm(v, x, scope))
  if strides > 1 or filters != x.shape[-1]:
    x_shortcut = conv2d(v, x, scope + "proj/", filters, 1, strides, "VALID")
  middle = filters // 4
  x = conv2d(v, x, scope + "a/", middle, 1, 1, "SAME")
  x = tf.nn.relu(batch_norm(v, x, scope + "b/"))
  x = conv2d(v, fixed_padding(x, 3), scope + "b/", middle, 3, strides, "VALID")
  x = tf.nn.relu(batch_norm(v, x, scope + "c/"))
  x = conv2d(v, x, scope + "c/", filters, 1, 1, "SAME")
  return x + x_shortcut


def resnet50_v2(v, x, filters_factor):
  """resnet(mode='v2', num_classes=None) -> end_points['pre_logits'] (N, 1, 1, C)."""
  filters = 16 * filters_factor
  x = conv2d(v, fixed_padding(x, 7), "root_block/", filters, 7, 2, "VALID")
  x = tf.nn.max_pool2d(fixed_padding(x, 3), 3, 2, "VALID")
  filters *= 4
  for block, units in enumerate(NUM_LAYERS):
    if block:
      filters *= 2
    for unit in range(units):
      strides = 2 if block and unit == 0 else 1
      x = bottleneck_v2(v, x, filters, strides, f"block{block + 1}/unit{unit + 1}/")
  x = tf.nn.relu(batch_norm(v, x, ""))
  return tf.reduce_mean(x, axis=[1, 2], keepdims=True)


def forward(v, images, *, filters_factor, outputs):
  """images (N, H, W, 3) float32 in [-1, 1] -> {pre_logits, *outputs} (numpy), `outputs`
  {head: width} as apply_model_semi's."""
  pre_logits = resnet50_v2(v, tf.constant(images, tf.float32), filters_factor)
  out = {"pre_logits": tf.squeeze(pre_logits, [1, 2])}
  for name, width in outputs.items():  # utils.linear: a 1x1 conv with bias, squeezed
    kernel = v.get(f"{name}/kernel", (1, 1, pre_logits.shape[-1], width), "kernel")
    bias = v.get(f"{name}/bias", (width,), "bias")
    out[name] = tf.squeeze(tf.nn.conv2d(pre_logits, kernel, 1, "VALID") + bias, [1, 2])
  return {k: np.asarray(t) for k, t in out.items()}


def save_module_variables(module_dir, values):
  """Writes `values` as `module_dir/variables/variables`, a Hub module's checkpoint (the
  converter reads nothing else of a module)."""
  os.makedirs(os.path.join(module_dir, "variables"), exist_ok=True)
  names = sorted(values)
  tf.raw_ops.SaveV2(prefix=os.path.join(module_dir, "variables", "variables"),
                    tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=[tf.constant(values[n]) for n in names])
