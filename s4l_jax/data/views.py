"""Views: compositions of registered augmentation ops (`ops/`), parsed and compiled to one
jit-able function on the device.

A view is one crop op taking `*N` crops of each uint8 image (B, H, W, C) (`crops.py`:
inception_crop, pad_crop, central_crop, simclr_crop, central_crop_875, resize_small_crop), then
ops on the crops in [0, 1] (flip, rotate4, hsv_noise, color_jitter, grey, blur, simclr_augment,
jigsaw_tiles, patch_pair, color_drop, shift, randaugment, cutout; `ops/` by family); the result
is float32 in [-1, 1] (`to_pm1`). Views are declared once, in `NAMED_VIEWS` (train, rotate4,
exemplar8, jigsaw, relative_position, simclr2, simclr_train, eval, simclr_eval; all but the eval
views take their crop op from `input.crop`), or written in a config as a composition that
names its crop op first:

    crop_op[(args)][*N]|op[(args)][@k]|...

e.g. `"inception_crop|flip|hsv_noise"` or FixMatch's weak (copy 0) and strong (copy 1) views
`"central_crop*2|flip|shift|randaugment(2, 27)@1|cutout(0.5)@1"`. Each op is a call parsed as
big_vision's `pp/registry` does (`registry.parse_call`: literal positional and keyword
arguments; a bare name takes the op's defaults); `*N` takes N independent crops of each
image (default 1); `op@k` applies a random op to crop k < N only. The tf.data path
(`tf_views.py`) only decodes and crops on the host (each crop op's `host` twin);
`make_view_fn(..., host_cropped=True)` applies the same ops to its crops. Evaluation sees one
deterministic crop op, `input.eval_crop` (`eval_crop_view`; `make_eval_crop_fn` on the
device, its host twin in `tf_views.make_tf_eval_fn`). All functions are
jit-able, vectorised over the batch and deterministic given `rng`. This module must not import
TensorFlow.
"""
import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

# Every op family, imported to register its ops.
from s4l_jax.data.ops import colour, crops, geometry, pretext, randaugment, registry, simclr  # pylint: disable=unused-import
from s4l_jax.data.ops.crops import BICUBIC, S4L_ASPECT, S4L_AREA, SIMCLR_CROP  # pylint: disable=g-multiple-import
from s4l_jax.data.ops.pretext import NEIGHBOURS, NUM_TILES  # pylint: disable=unused-import (config_lib, validation)
from s4l_jax.data.ops.resize import RESIZES

NUM_EXEMPLAR = 8

ViewFn = Callable[[jax.Array, dict[str, jax.Array]], dict[str, jax.Array]]


def to_pm1(x, max_value: float = 1.0):
  """The model's input scaling: [0, max_value] -> [-1, 1], `x * (2 / max_value) - 1`, float32
  (uint8 images: `max_value=255`). Not clipped."""
  return jnp.asarray(x, jnp.float32) * (2.0 / max_value) - 1.0


def _to_unit(images):
  """uint8 -> float32 in [0, 1]."""
  return images.astype(jnp.float32) / 255.0


# `input.crop` value -> the crop op of the named views (compositions name their own).
INPUT_CROPS = {"inception": "inception_crop", "pad_crop": "pad_crop", "none": "central_crop"}
ONLY = "@"  # `op@k`: the op on crop k of each image only

INPUT_CROP = "<input.crop>"  # a named view's crop: the op `INPUT_CROPS[config.input.crop]`


@dataclasses.dataclass(frozen=True)
class View:
  """`crops` crops of each image by the crop op `crop`, then `ops` in order.

  area_range, aspect_range: the box ranges of `inception_crop` / `simclr_crop`.
  resize: how crop ops resize (`RESIZES`); pad_crop does not resize.
  """
  crop: str
  ops: tuple[str, ...] = ()
  crops: int = 1
  area_range: tuple[float, float] = S4L_AREA
  aspect_range: tuple[float, float] = S4L_ASPECT
  resize: str = "bilinear"


NAMED_VIEWS = {
    "train": View(INPUT_CROP, ("flip",)),
    "rotate4": View(INPUT_CROP, ("flip", "rotate4")),
    "exemplar8": View(INPUT_CROP, ("flip", "hsv_noise"), crops=NUM_EXEMPLAR),
    # Jigsaw (9 tiles in grid order) and relative position (centre + neighbour patch).
    "jigsaw": View(INPUT_CROP, ("flip", "jigsaw_tiles")),
    "relative_position": View(INPUT_CROP, ("flip", "patch_pair", "color_drop")),
    # SimCLRv2 pretraining (2 views), fine-tuning / distillation (crop + flip), eval.
    "simclr2": View(INPUT_CROP, ("simclr_augment",), crops=2, **SIMCLR_CROP),
    "simclr_train": View(INPUT_CROP, ("flip",), **SIMCLR_CROP),
    "eval": View("central_crop"),
    "simclr_eval": View("central_crop_875", **BICUBIC),
}


def _only(op: str) -> tuple[str, int | None]:
  """`"call@k"` -> ("call", k); `"call"` -> ("call", None) (k unchecked: `parse_view`)."""
  call, at, k = op.partition(ONLY)
  return call.strip(), (int(k) if at and k.strip().isdigit() else -1 if at else None)


def _canonical(call: str) -> str:
  """A call's canonical text (`registry.format_call`: spacing and literals normalised, e.g.
  `cutout( 0.50 )` -> `cutout(0.5)`); arguments equal to the defaults are kept as written."""
  return registry.format_call(*registry.parse_call(call))


def _valid() -> str:
  return (f"valid: a named view ({', '.join(NAMED_VIEWS)}) or crop_op[(args)][*N]|op[(args)]"
          f"[@k]|... with {registry.valid_ops()}")


def parse_view(view: str) -> View:
  """A named view (`NAMED_VIEWS`) or a composition `"crop_op[*N]|op[@k]|..."` of op calls
  (`registry.parse_call`: `name` or `name(args, kw=value)`), crop op first, with its
  `view_fields` (else S4L box ranges and bilinear resizing); `*N` takes N independent crops
  of each image, default 1; `op@k`, for a random op, applies it to crop k < N only. E.g.
  `"inception_crop|flip|hsv_noise"`, `"pad_crop*2|flip"` (two augmentations per image),
  `"pad_crop*2|flip|cutout(0.5)@1"` or `"simclr_crop*2|simclr_augment"` (= simclr2 with
  inception). Every op is built once here, so bad arguments fail here.

  Raises a one-line ValueError naming the view, the bad op and the valid names.
  """
  if view in NAMED_VIEWS:
    return NAMED_VIEWS[view]
  parts = [part.strip() for part in view.split("|")]
  first, star, count_text = parts[0].partition("*")
  try:
    calls = [_canonical(first)] + [_canonical(_only(part)[0]) for part in parts[1:]]
  except ValueError as e:
    raise ValueError(f"view {view!r}: {e}") from None
  names = [registry.parse_call(call)[0] for call in calls]
  for name in names:
    if name not in registry.CROPS and name not in registry.OPS:
      raise ValueError(f"view {view!r}: unknown op {name!r}; {_valid()}")
  if names[0] not in registry.CROPS or any(name in registry.CROPS for name in names[1:]):
    raise ValueError(f"view {view!r}: exactly one crop op, first ({', '.join(registry.CROPS)})")
  count_text = count_text.strip()
  if star and not (count_text.isdigit() and int(count_text) >= 1):
    raise ValueError(f"view {view!r}: the crop count after '*' must be an integer >= 1, "
                     f"got {count_text!r}")
  num_crops = int(count_text) if star else 1
  try:
    crop_op = registry.build(calls[0], registry.CROPS)
    ops = [registry.build(call, registry.OPS) for call in calls[1:]]
  except ValueError as e:
    raise ValueError(f"view {view!r}: {e}") from None
  only = [_only(part)[1] for part in parts[1:]]
  for part, op, k in zip(parts[1:], ops, only):
    if k is not None and not (op.copies == 1 and 0 <= k < num_crops):
      raise ValueError(f"view {view!r}: {part!r} needs a random op and 0 <= k < {num_crops}, "
                       "the crop count after '*'")
  return View(calls[0], tuple(call if k is None else f"{call}{ONLY}{k}"
                              for call, k in zip(calls[1:], only)),
              crops=num_crops, **crop_op.view_fields)


def resolve(view: str, crop: str) -> View:
  """`parse_view(view)` with a named view's crop op taken from `crop` (`input.crop`, one of
  `INPUT_CROPS`); ValueError for an unknown view, op or crop."""
  if crop not in INPUT_CROPS:
    raise ValueError(f"input.crop={crop!r} unknown; valid: {', '.join(INPUT_CROPS)}")
  spec = parse_view(view)
  if spec.crop == INPUT_CROP:
    spec = dataclasses.replace(spec, crop=INPUT_CROPS[crop])
  return spec


def build_crop(spec: View) -> registry.Crop:
  """The crop op of a resolved view."""
  return registry.build(spec.crop, registry.CROPS)


def host_crops() -> list[str]:
  """The crop ops that tf.data supports: those with a host twin (the rest are device-only)."""
  return [name for name, factory in registry.CROPS.items() if factory().host]


def host_twin(spec: View) -> registry.HostTwin:
  """The tf.data twin of a resolved view's crop op; a one-line ValueError when it has none."""
  twin = build_crop(spec).host
  if twin is None:
    raise ValueError(f"crop op {spec.crop!r} has no tf.data twin: tf.data supports "
                     f"{', '.join(host_crops())} (or use input.pipeline=memory)")
  return twin


def eval_crop_view(eval_crop: str) -> View:
  """The view of the eval crop `eval_crop` (`input.eval_crop`): one deterministic crop op call,
  e.g. `resize_small_crop(1.0)`, `central_crop_875`, or a named view of one (`simclr_eval`);
  a one-line ValueError otherwise."""
  def is_eval_crop(spec):
    return (spec.crop != INPUT_CROP and not spec.ops and spec.crops == 1
            and not build_crop(spec).random)
  try:
    spec = parse_view(eval_crop)
  except ValueError as e:
    raise ValueError(f"input.eval_crop: {e}") from None
  if not is_eval_crop(spec):
    crops = [name for name, factory in registry.CROPS.items() if not factory().random]
    named = [name for name, view in NAMED_VIEWS.items() if is_eval_crop(view)]
    raise ValueError(f"input.eval_crop={eval_crop!r} must be one deterministic crop op call "
                     f"(e.g. resize_small_crop(1.0); {', '.join(crops)}) or the view "
                     f"{' or '.join(named)}")
  return spec


def to_uint8(x):
  """[0, 1] float -> uint8, clipped and rounded half to even (as `tf_views._uint8` on the
  host)."""
  return jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def make_eval_crop_fn(eval_crop: str, *, image_size: int):
  """`fn(images uint8 (B, H, W, C)) -> uint8 (B, S, S, C)`, jitted: the device implementation
  of the eval crop `eval_crop` (`eval_crop_view`), which tf.data runs as its host twin
  (`tf_views.make_tf_eval_fn`); S = image_size."""
  spec = eval_crop_view(eval_crop)
  crop = build_crop(spec)
  return jax.jit(lambda images: to_uint8(crop.fn(None, _to_unit(images), image_size, spec)))


def _build_ops(spec: View) -> list[tuple[registry.Op, int | None]]:
  """[(op, k of `op@k` or None)] of a view's ops, in order."""
  return [(registry.build(call, registry.OPS), k) for call, k in map(_only, spec.ops)]


def copies(view: str) -> int:
  """Images the model sees per source image of `view` (train 1, rotate4 4, exemplar8 8,
  simclr2 2)."""
  spec = parse_view(view)
  return spec.crops * math.prod(op.copies for op, _ in _build_ops(spec))


def make_view_fn(view: str, *, image_size: int, crop: str,
                 host_cropped: bool = False) -> ViewFn:
  """Returns `fn(rng, batch) -> dict` of the view `resolve(view, crop)`, float32 in [-1, 1].

  `batch["image"]` is uint8: source images (B, H, W, C), or with `host_cropped` the host's
  crops at S = image_size ((B, S, S, C), or (B, K, S, S, C) for K crops per image), or a
  canvas (B, H, W, C) with `batch["boxes"]` int32 (B, K, 4) [y, x, h, w] resized here
  (`tf_views.make_tf_crop_fn`). Output: {"image": (B, S, S, C), or (B, K', S, S, C) with K' =
  `copies(view)`}, plus int32 (B, K') labels of copy-making ops ("rotation" for rotate4).

  Keys: `rng` is split into one key for the crop and one per random op, in order (none when
  nothing is random: `rng` may be None); a random op splits its key into one per crop. With
  `host_cropped`, the crop key goes unused, so the ops after the crop draw the same numbers.
  """
  spec = resolve(view, crop)
  crop_op, ops = build_crop(spec), _build_ops(spec)
  num_random_ops = sum(op.random for op, _ in ops)
  is_random = crop_op.random or num_random_ops > 0

  def fn(rng, batch):
    keys = list(jax.random.split(rng, 1 + num_random_ops)) if is_random else [None]
    if host_cropped:
      x = _host_crops(batch, image_size, RESIZES[spec.resize].canvas_fn)
      b = x.shape[0]
      x = x.reshape((-1,) + x.shape[-3:])
    else:
      b = batch["image"].shape[0]
      x = crop_op.fn(keys[0], _to_unit(batch["image"]), image_size, spec)
    return _apply_ops(ops, iter(keys[1:]), x, b, spec.crops)

  return fn


def _host_crops(batch, size, resize):
  """The host's uint8 crops as float32 in [0, 1]; a canvas + boxes `resize`d to `size` here."""
  if "boxes" not in batch:
    return _to_unit(batch["image"])
  crop = functools.partial(resize, size=size)
  return jax.vmap(jax.vmap(crop, in_axes=(None, 0)))(batch["image"], batch["boxes"]) / 255.0


def _apply_ops(ops, op_keys, x, b: int, crops: int) -> dict:
  """`ops` [(Op, only)] on x (b * crops, S, S, C) in [0, 1], one key of `op_keys` per random
  op; returns make_view_fn's dict (images in [-1, 1], labels of copy-making ops)."""
  labels = {}
  for op, only in ops:
    if only is not None:  # a random op on crop `only` of each image (and all its copies)
      y = x.reshape((b, crops, -1) + x.shape[1:])
      sel = y[:, only].reshape((-1,) + x.shape[1:])
      sel = jax.vmap(op.fn)(jax.random.split(next(op_keys), sel.shape[0]), sel)
      x = y.at[:, only].set(sel.reshape(y[:, only].shape)).reshape(x.shape)
      continue
    if op.copies == 1:
      x = jax.vmap(op.fn)(jax.random.split(next(op_keys), x.shape[0]), x)
      continue
    n, copy_label = x.shape[0], None
    if op.random:
      x = jax.vmap(op.fn)(jax.random.split(next(op_keys), n), x)
      x, copy_label = x if op.label else (x, None)
    else:
      x = op.fn(x)
    x = x.reshape((n * op.copies,) + x.shape[2:])
    labels = {k: jnp.repeat(v, op.copies) for k, v in labels.items()}
    if op.label:
      labels[op.label] = (jnp.tile(jnp.arange(op.copies, dtype=jnp.int32), n)
                          if copy_label is None else jnp.repeat(copy_label, op.copies))
  lead = (b, x.shape[0] // b) if x.shape[0] > b else (b,)
  out = {"image": jnp.clip(to_pm1(x), -1.0, 1.0).reshape(lead + x.shape[1:])}
  return out | {k: v.reshape(lead) for k, v in labels.items()}


def make_ops_fn(ops: str):
  """`fn(rng, images) -> dict`: the ops of a composition after its crop (e.g. "rotate4",
  "patch_pair|color_drop") on images float32 (B, S, S, C) in [-1, 1] (a view's output), with
  make_view_fn's output. For objectives that derive several tasks' inputs from one view
  (multi-task); `rng` is split into one key per random op (None: no random op)."""
  parsed = _build_ops(parse_view(f"central_crop|{ops}"))
  num_random = sum(op.random for op, _ in parsed)

  def fn(rng, images):
    keys = iter(jax.random.split(rng, num_random)) if num_random else iter(())
    return _apply_ops(parsed, keys, (images + 1.0) / 2.0, images.shape[0], 1)
  return fn
