"""The independent side of the converter's parity tests: SimCLRv2's forward pass in plain
TensorFlow ops, written from google-research/simclr's TF1 `resnet.py` (`resnet_v1`,
`bottleneck_block`, `sk_conv2d`, `conv2d_fixed_padding`, `batch_norm_relu`) and
`model_util.py` (`projection_head`, `supervised_head`) in inference mode, plus a writer of
TF1 name-based checkpoints laid out as the released ones. It shares no code with s4l_jax.

Variables are named as tf.layers names them (zero-based per variable scope: `conv2d`,
`conv2d_1`, ...; `batch_normalization`, ...; `dense`), in the order the official code creates
them, by running the same calls in the same order: creating them (`Variables(rng=...)`: random
values) or reading them from a mapping of released names (a checkpoint).
"""
import numpy as np
import tensorflow as tf

# resnet.py's model_params of the bottleneck ResNets, plus R26
LAYERS = {26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
          200: (3, 24, 36, 3)}
BATCH_NORM_EPSILON = 1e-5
SK_RATIO, SK_MIN_DIM = 0.0625, 32


def random_weight(rng, shape, kind):
  """A random float32 tensor of a checkpoint variable of `kind`: kernels (conv HWIO or dense
  (in, out)) fan-in scaled, BN gammas U(0.5, 1.5), moving variances U(0.5, 2), the rest
  (betas, moving means, biases) N(0, 0.2)."""
  if kind == "kernel":
    return (rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))).astype(np.float32)
  if kind == "gamma":
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)
  if kind == "moving_variance":
    return rng.uniform(0.5, 2.0, shape).astype(np.float32)
  return rng.normal(0.0, 0.2, shape).astype(np.float32)


class Variables:
  """Variables by name. With `rng`: created (random, recorded in `values`); else read from
  `values` (a dict name -> array) with the name prefix `prefix` (`ema_model/`), the classifier
  unprefixed where the prefixed one is absent (the released EMA copies lack it)."""

  def __init__(self, values=None, prefix="", rng=None):
    self.values = {} if values is None else values
    self.prefix, self.rng, self.counts, self.read = prefix, rng, {}, []

  def layer(self, scope, kind):
    n = self.counts.get((scope, kind), 0)
    self.counts[(scope, kind)] = n + 1
    return f"{scope}/{kind}" + (f"_{n}" if n else "")

  def get(self, name, shape, kind):
    if self.rng is not None:
      self.values[name] = random_weight(self.rng, shape, kind)
      return tf.constant(self.values[name])
    if self.prefix + name in self.values or not name.startswith("head_supervised/"):
      name = self.prefix + name
    value = np.asarray(self.values[name], np.float32)
    assert value.shape == tuple(shape), (name, value.shape, shape)
    self.read.append(name)
    return tf.constant(value)


def batch_norm_relu(v, x, scope, relu=True, center=True):
  """resnet.batch_norm_relu in inference mode (moving statistics), channels last."""
  layer, c = v.layer(scope, "batch_normalization"), x.shape[-1]
  gamma = v.get(f"{layer}/gamma", (c,), "gamma")
  beta = v.get(f"{layer}/beta", (c,), "beta") if center else None
  mean = v.get(f"{layer}/moving_mean", (c,), "moving_mean")
  var = v.get(f"{layer}/moving_variance", (c,), "moving_variance")
  x = tf.nn.batch_normalization(x, mean, var, beta, gamma, BATCH_NORM_EPSILON)
  return tf.nn.relu(x) if relu else x


def fixed_padding(x, kernel_size):
  pad_beg = (kernel_size - 1) // 2
  pad_end = kernel_size - 1 - pad_beg
  return tf.pad(x, [[0, 0], [pad_beg, pad_end], [pad_beg, pad_end], [0, 0]])


def conv2d_fixed_padding(v, x, filters, kernel_size, strides):
  if strides > 1:
    x = fixed_padding(x, kernel_size)
  kernel = v.get(v.layer("base_model", "conv2d") + "/kernel",
                 (kernel_size, kernel_size, x.shape[-1], filters), "kernel")
  return tf.nn.conv2d(x, kernel, strides, "SAME" if strides == 1 else "VALID")


def conv1x1(v, x, filters):  # sk_conv2d's tf.layers.conv2d(kernel_size=1, use_bias=False)
  kernel = v.get(v.layer("base_model", "conv2d") + "/kernel", (1, 1, x.shape[-1], filters),
                 "kernel")
  return tf.nn.conv2d(x, kernel, 1, "VALID")


def sk_conv2d(v, x, filters, strides):
  x = conv2d_fixed_padding(v, x, 2 * filters, 3, strides)
  x = batch_norm_relu(v, x, "base_model")
  x = tf.stack(tf.split(x, 2, axis=3))
  mid_dim = max(int(filters * SK_RATIO), SK_MIN_DIM)
  g = tf.reduce_mean(tf.reduce_sum(x, axis=0), [1, 2], keepdims=True)
  g = batch_norm_relu(v, conv1x1(v, g, mid_dim), "base_model")
  mixing = tf.stack(tf.split(conv1x1(v, g, 2 * filters), 2, axis=3))
  mixing = tf.nn.softmax(mixing, axis=0)
  return tf.reduce_sum(x * mixing, axis=0)


def bottleneck_block(v, x, filters, strides, use_projection, sk):
  shortcut = x
  if use_projection:
    if sk:  # ResNet-D
      shortcut = fixed_padding(x, 2) if strides > 1 else x
      shortcut = tf.nn.avg_pool2d(shortcut, 2, strides, "SAME" if strides == 1 else "VALID")
      shortcut = conv2d_fixed_padding(v, shortcut, 4 * filters, 1, 1)
    else:
      shortcut = conv2d_fixed_padding(v, x, 4 * filters, 1, strides)
    shortcut = batch_norm_relu(v, shortcut, "base_model", relu=False)
  x = batch_norm_relu(v, conv2d_fixed_padding(v, x, filters, 1, 1), "base_model")
  if sk:
    x = sk_conv2d(v, x, filters, strides)
  else:
    x = batch_norm_relu(v, conv2d_fixed_padding(v, x, filters, 3, strides), "base_model")
  x = conv2d_fixed_padding(v, x, 4 * filters, 1, 1)
  x = batch_norm_relu(v, x, "base_model", relu=False)
  return tf.nn.relu(x + shortcut)


def resnet_v1(v, x, depth, width, sk):
  if sk:
    x = conv2d_fixed_padding(v, x, 64 * width // 2, 3, 2)
    x = batch_norm_relu(v, x, "base_model")
    x = conv2d_fixed_padding(v, x, 64 * width // 2, 3, 1)
    x = batch_norm_relu(v, x, "base_model")
    x = conv2d_fixed_padding(v, x, 64 * width, 3, 1)
  else:
    x = conv2d_fixed_padding(v, x, 64 * width, 7, 2)
  x = batch_norm_relu(v, x, "base_model")
  x = tf.nn.max_pool2d(x, 3, 2, "SAME")
  for group, (blocks, strides) in enumerate(zip(LAYERS[depth], (1, 2, 2, 2))):
    filters = 64 * width * 2**group
    x = bottleneck_block(v, x, filters, strides, True, sk)
    for _ in range(1, blocks):
      x = bottleneck_block(v, x, filters, 1, False, sk)
  return tf.reduce_mean(x, [1, 2])


def linear_layer(v, x, num_classes, scope, use_bias=True, use_bn=False):
  layer = v.layer(scope, "dense")
  x = tf.matmul(x, v.get(f"{layer}/kernel", (x.shape[-1], num_classes), "kernel"))
  if use_bias and not use_bn:
    x = x + v.get(f"{layer}/bias", (num_classes,), "bias")
  if use_bn:
    x = batch_norm_relu(v, x, scope, relu=False, center=use_bias)
  return x


def forward(v, images, *, depth, width, sk, num_classes, ft_proj_selector, proj_out_dim=128):
  """images (N, H, W, 3) float32 in [0, 1] -> {pre_logits, proj_1, proj, classes} (numpy)."""
  hiddens = resnet_v1(v, tf.constant(images, tf.float32), depth, width, sk)
  hiddens_list = [hiddens]
  x = hiddens
  for j in range(3):  # projection_head, proj_head_mode='nonlinear', num_proj_layers=3
    last = j == 2
    x = linear_layer(v, x, proj_out_dim if last else hiddens.shape[-1],
                     f"head_contrastive/nl_{j}", use_bias=not last, use_bn=True)
    x = x if last else tf.nn.relu(x)
    hiddens_list.append(x)
  logits = linear_layer(v, hiddens_list[ft_proj_selector], num_classes,
                        "head_supervised/linear_layer")
  return {k: np.asarray(t) for k, t in dict(pre_logits=hiddens, proj_1=hiddens_list[1],
                                            proj=hiddens_list[3], classes=logits).items()}


def save_released_checkpoint(prefix, values, *, rng, step=250228, ema=True):
  """Writes `values` as a TF1 name-based checkpoint laid out as the released ones: the
  trained tensors, an `ema_model/` copy of base_model/ and head_contrastive/ (perturbed, so
  that the two differ), a `.../Momentum` slot of every trainable tensor, `global_step` and
  the contrastive `memory` queue.
  Returns every written name -> value."""
  out = dict(values)
  for name, value in values.items():
    if ema and name.startswith(("base_model/", "head_contrastive/")):
      out["ema_model/" + name] = (value * rng.uniform(0.9, 1.1, value.shape)).astype(np.float32)
    if not name.endswith(("moving_mean", "moving_variance")):
      out[name + "/Momentum"] = rng.normal(size=value.shape).astype(np.float32)
  out["global_step"] = np.int64(step)
  out["memory"] = rng.normal(size=(64, 128)).astype(np.float32)
  names = sorted(out)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=[tf.constant(out[n]) for n in names])
  return out
