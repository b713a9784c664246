"""Helpers shared by the objectives (`s4l_jax/objectives/*`): forward passes, view flattening,
rotation inputs, the grouped exemplar triplet, VAT wiring, accuracy.

Objectives import this module and `losses`, never each other.
"""
import jax
import jax.numpy as jnp
import numpy as np

from s4l_jax import losses, objectives
from s4l_jax.data import views

NUM_EXEMPLAR_VIEWS = views.copies("exemplar8")


def accuracy(logits, labels):
  """Mean of argmax(logits) == labels: logits (N, K), labels (N,) -> scalar."""
  return (logits.argmax(-1) == labels).mean()


def apply_train(model, params, batch_stats, x, rng=None):
  """Train-mode forward of x (N, H, W, C): (outputs dict, updated batch_stats).

  `rng` drives the model's noise (model.dropout, model.stochastic_depth); objectives that
  pass it declare `Requirements(model_noise=True)`.
  """
  rngs = {} if rng is None else {"rngs": {"dropout": rng}}
  outputs, new = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                             mutable=["batch_stats"], **rngs)
  return outputs, new["batch_stats"]


def core_order(sizes, group_size: int | None) -> np.ndarray | None:
  """Row order (sum(sizes),) that makes ghost-BN groups mirror TPU cores, or None (keep).

  `sizes`: rows of each stream in concat(streams) (e.g. [4 B_u, 4 B_l]); `group_size`: the
  model's `bn_group_size` (None / 0: global BN). With G = sum(sizes) / group_size groups
  (= cores), group g is core g's batch: rows [g n_s / G, (g + 1) n_s / G) of every stream s,
  in stream order, as each core of the paper concatenated its own unlabeled and labeled
  images. `x[order]` feeds the model, `outputs[np.argsort(order)]` restores concat order.
  None for global BN or a single stream (contiguous groups are already per core).
  """
  if not group_size or len(sizes) < 2:
    return None
  total = sum(sizes)
  if total % group_size:
    raise ValueError(f"model.bn_group_size={group_size} must divide the {total} rows of the "
                     f"forward pass (streams {list(sizes)})")
  groups = total // group_size
  if any(n % groups for n in sizes):
    raise ValueError(f"model.bn_group_size={group_size} makes {groups} groups (cores), which "
                     f"must divide every stream's rows {list(sizes)}")
  starts = np.cumsum([0] + list(sizes[:-1]))
  return np.concatenate([start + np.arange(g * n // groups, (g + 1) * n // groups)
                         for g in range(groups) for start, n in zip(starts, sizes)])


def apply_train_streams(model, params, batch_stats, x, sizes, rng=None):
  """`apply_train` of x = concat(streams of `sizes` rows) with its BN groups per core
  (`core_order` of the model's `bn_group_size`); outputs come back in x's row order. With
  global BN exactly `apply_train(x)`."""
  order = core_order(sizes, model.trunk.bn_group_size)
  if order is None:
    return apply_train(model, params, batch_stats, x, rng)
  outputs, new_stats = apply_train(model, params, batch_stats, x[order], rng)
  inverse = np.argsort(order)
  return {k: v[inverse] for k, v in outputs.items()}, new_stats


def flatten_views(x):
  """(B, V, ...) -> (B * V, ...), image-major (row v + V * i is view v of image i)."""
  return x.reshape((-1,) + x.shape[2:])


def rotation_inputs(streams):
  """Flattened images (sum 4B, H, W, C), rotation labels (sum 4B,) and per-stream sizes."""
  images = jnp.concatenate([flatten_views(s["image"]) for s in streams])
  rotations = jnp.concatenate([s["rotation"].reshape(-1) for s in streams])
  return images, rotations, [4 * s["image"].shape[0] for s in streams]


def exemplar_embeddings(model, params, batch_stats, streams):
  """Train-mode forward on concat(flattened streams) -> (outputs, batch_stats, unit embeddings).

  BN groups per core (`apply_train_streams`). The embeddings are head "embeddings",
  L2-normalised: (sum 8B, D).
  """
  flat = [flatten_views(s["image"]) for s in streams]
  outputs, new_stats = apply_train_streams(model, params, batch_stats, jnp.concatenate(flat),
                                           [f.shape[0] for f in flat])
  return outputs, new_stats, losses.l2_normalize(outputs["embeddings"])


def exemplar_triplet(emb, num_images: int, groups: int = 1, quirk: bool = False):
  """Mean batch-hard soft-margin triplet of (num_images * 8, D) image-major embeddings.

  The identity of row j is j // 8 (`quirk`: the released code's j // images_per_group);
  `groups` = G > 1 splits the images into G contiguous groups (one per TPU core in the
  paper) and averages the per-group losses.
  """
  if num_images % groups:
    raise ValueError(f"loss.triplet_groups={groups} must divide the {num_images} images")
  per_group = num_images // groups
  ids = losses.exemplar_ids(per_group, NUM_EXEMPLAR_VIEWS, quirk)
  emb = emb.reshape(groups, per_group * NUM_EXEMPLAR_VIEWS, emb.shape[-1])
  return jax.vmap(lambda e: losses.batch_hard_triplet(e, ids))(emb).mean()


def perturbed_apply_fn(model, params, batch_stats, head: str = "classes", sizes=None):
  """`x (N, H, W, C) -> logits (N, dim)` of `head`: train-mode BN, batch_stats discarded
  (S4L freezes the moving averages in VAT's perturbed passes); x = concat(streams of
  `sizes` rows) gets BN groups per core (`apply_train_streams`; None: one stream)."""
  if sizes is None:  # one stream: its contiguous BN groups already are per core
    return lambda x: apply_train(model, params, batch_stats, x)[0][head]
  return lambda x: apply_train_streams(model, params, batch_stats, x, sizes)[0][head]


# Ranges of the `loss` keys `vat_kwargs` reads (part of a VAT objective's LOSS_RANGES).
VAT_LOSS_RANGES = {"vat_eps": objectives.POSITIVE, "vat_xi": objectives.POSITIVE,
                   "vat_num_iters": objectives.AT_LEAST_ONE}


def vat_kwargs(loss_config, default_eps: float = 40.0) -> dict:
  """Keyword arguments of `s4l_jax.vat.vat_loss` from `config.loss` (S4L defaults)."""
  return dict(eps=loss_config.get("vat_eps", default_eps),
              xi=loss_config.get("vat_xi", 1e-6),
              num_iters=loss_config.get("vat_num_iters", 1),
              kl_direction=loss_config.get("vat_kl_direction", "perturbed_clean"),
              normalization=loss_config.get("vat_normalization", "exact_eps"))
