"""Helpers shared by the objectives (`s4l_jax/objectives/*`): forward passes, view flattening,
rotation inputs, the grouped exemplar triplet, VAT wiring, the puzzle and colorization
losses, accuracy.

Objectives import this module and `losses`, never each other.
"""
import jax
import jax.numpy as jnp
import numpy as np

from s4l_jax import colorization, losses, objectives, permutations, vat
from s4l_jax.data import views
from s4l_jax.models import heads
from s4l_jax.models.heads import dense_logits

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


# The `loss` keys of the exemplar triplet: the embedding's width (set by the config per regime,
# `configs/common.exemplar_loss`), G (`exemplar_triplet`'s groups; 1: global) and the quirk.
EXEMPLAR_LOSS_KEYS = {"embed_dim": objectives.LossKey(objectives.REQUIRED, objectives.AT_LEAST_ONE),
                      "triplet_groups": objectives.LossKey(1, objectives.AT_LEAST_ONE),
                      "exemplar_id_quirk": objectives.LossKey(False, objectives.BOOL)}


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


def vat_loss_keys(eps: float) -> dict:
  """The `loss` keys `vat_kwargs` reads (part of a VAT objective's LOSS_KEYS), S4L's defaults
  with radius `eps` (at 224 px; configs scale it with the image size)."""
  return {"vat_eps": objectives.LossKey(eps, objectives.POSITIVE),
          "vat_xi": objectives.LossKey(1e-6, objectives.POSITIVE),
          "vat_num_iters": objectives.LossKey(1, objectives.AT_LEAST_ONE),
          # released code; "clean_perturbed": the paper
          "vat_kl_direction": objectives.LossKey("perturbed_clean", vat.KL_DIRECTIONS),
          # |r_adv| = eps; "released": l2_normalize(eps=1e-12)
          "vat_normalization": objectives.LossKey("exact_eps", vat.NORMALIZATIONS)}


def vat_kwargs(loss_config) -> dict:
  """Keyword arguments of `s4l_jax.vat.vat_loss` from `loss_config` (`vat_loss_keys`)."""
  return dict(eps=loss_config.vat_eps, xi=loss_config.vat_xi,
              num_iters=loss_config.vat_num_iters, kl_direction=loss_config.vat_kl_direction,
              normalization=loss_config.vat_normalization)


def _require(ok: bool, message: str):
  if not ok:
    raise ValueError(message)


def check_jigsaw_head(config):
  """ValueError unless `loss.permutations` is a valid table and head "jigsaw" 9 x P wide."""
  table = permutations.check(config.loss.permutations, views.NUM_TILES)
  width = views.NUM_TILES * len(table)
  _require(config.model.heads.get("jigsaw") == width, f"model.heads.jigsaw="
           f"{config.model.heads.get('jigsaw')!r} must be {width}: 9 blocks of P = "
           f"{len(table)} logits (P = the rows of loss.permutations)")


def check_colorization_head(config):
  """ValueError unless head "colorization" is a dense head of the Q ab-bin logits."""
  head = config.model.heads.colorization
  bins = len(colorization.ab_bins())
  _require(hasattr(head, "keys") and tuple(head.get("dims", ())) == (bins,)
           and head.get("input") == heads.FEATURE_MAP,
           f"model.heads.colorization must be dict(dims=({bins},), input="
           f"{heads.FEATURE_MAP!r}): a dense head of Q = {bins} ab-bin logits")


def check_index_pipeline(config):
  """ValueError unless the input pipeline carries each image's index (`memory`)."""
  _require(config.input.pipeline == "memory", f"objective {config.objective} reads each "
           "image's index, which only input.pipeline=memory carries (digits, cifar10, folder:)")


def normalize_tiles(tiles, eps: float = 1e-5):
  """Each tile standardised by its own mean and std over its pixels and channels (Noroozi &
  Favaro, against low-level shortcuts): (..., t, t, C) -> same shape."""
  mean = tiles.mean(axis=(-3, -2, -1), keepdims=True)
  var = tiles.var(axis=(-3, -2, -1), keepdims=True)
  return (tiles - mean) / jnp.sqrt(var + eps)


def puzzle_logits(head_out, order):
  """A linear head on the concatenated features of G tiles, from a per-tile head.

  head_out: (B * G, G * K), image-major (row G b + i is tile i of image b), block j of a row
  being W_j f (the weights W_j of concatenation slot j); order: int (B, G), the tile in slot j.
  Returns (B, K) `sum_j W_j f_{order[b, j]}` = W [f_{order[b, 0]}; ...; f_{order[b, G-1]}]
  (the G biases add up to one). The per-tile head keeps the model's (N, dim) head contract.
  """
  g = order.shape[1]
  blocks = head_out.reshape(order.shape[0], g, g, -1)  # (B, tile, slot, K)
  slotted = jnp.take_along_axis(blocks, order[:, :, None, None], axis=1)  # (B, slot, slot, K)
  return jnp.diagonal(slotted, axis1=1, axis2=2).sum(-1)


def tile_puzzle_loss(model, params, batch_stats, tiles, order, labels, head: str):
  """Cross-entropy of the puzzle classifier `head` (`puzzle_logits`) and its accuracy.

  tiles: (B, G, t, t, C); order, labels: int (B, G), (B,). One train-mode pass of the B G tiles
  (BN on the tiles' batch); its BN statistics are discarded (the moving averages come from
  whole images, which evaluation sees).
  """
  outputs, _ = apply_train(model, params, batch_stats, flatten_views(tiles))
  logits = puzzle_logits(outputs[head], order)
  return losses.softmax_xent(logits, labels), accuracy(logits, labels)


def jigsaw_loss(model, params, batch_stats, tiles, permutations, rng):
  """Jigsaw (Noroozi & Favaro 2016) on tiles (B, 9, t, t, C) in grid order: each image gets a
  permutation index drawn from `rng` uniformly over `permutations` (P, 9); slot j of its puzzle
  holds tile permutations[label][j]; tiles normalised one by one; head "jigsaw" (9 P wide).
  Returns (cross-entropy over the P classes, accuracy)."""
  table = jnp.asarray(permutations, jnp.int32)
  labels = jax.random.randint(rng, (tiles.shape[0],), 0, table.shape[0])
  return tile_puzzle_loss(model, params, batch_stats, normalize_tiles(tiles), table[labels],
                          labels, "jigsaw")


def relative_position_loss(model, params, batch_stats, stream):
  """Relative position (Doersch et al. 2015) of a `relative_position` view stream ("image"
  (B, 2, t, t, C): centre, neighbour; "position" (B, 2)): head "relative_position" (2 x 8
  wide) on the pair's concatenated features. Returns (cross-entropy over 8, accuracy)."""
  tiles = stream["image"]
  order = jnp.broadcast_to(jnp.arange(2), (tiles.shape[0], 2))
  return tile_puzzle_loss(model, params, batch_stats, tiles, order, stream["position"][:, 0],
                          "relative_position")


# The `loss` keys of `colorization_loss`: Zhang et al.'s soft targets (5 nearest bins,
# sigma 5) and rebalancing (lambda 0.5).
COLORIZATION_LOSS_KEYS = {"neighbours": objectives.LossKey(5, objectives.AT_LEAST_ONE),
                          "sigma": objectives.LossKey(5.0, objectives.POSITIVE),
                          "rebalance_lambda": objectives.LossKey(0.5, objectives.Range(0, 1))}


def colorization_state():
  """The colorization objectives' state at step 0: {"bin_counts": (Q,) float32 zeros}."""
  return {"bin_counts": jnp.zeros(len(colorization.ab_bins()), jnp.float32)}


def colorization_loss(model, params, batch_stats, images, bin_counts, loss_config):
  """Colorization (Zhang et al. 2016) of images (B, H, W, 3) in [-1, 1] by the dense head
  "colorization" (Q logits per position of the trunk's h x w feature map).

  The network sees L only (L / 50 - 1 in all 3 channels); the targets are the images' ab
  averaged over each h x w cell, soft-encoded over the Q bins (`colorization.soft_encode`,
  `loss.neighbours`, `loss.sigma`); each position's cross-entropy is weighted by the
  rebalancing weight of its nearest bin (`colorization.rebalance_weights`,
  `loss.rebalance_lambda`; 1 = no rebalancing) under the prior of the bins counted so far,
  `bin_counts` (Q,) plus this batch's. One train-mode pass whose BN statistics are discarded.
  Returns (mean weighted cross-entropy, accuracy of the nearest bin, new bin_counts).
  """
  bins = jnp.asarray(colorization.ab_bins())
  lab = colorization.rgb_to_lab((images + 1.0) / 2.0)
  grey = jnp.repeat(lab[..., :1] / 50.0 - 1.0, 3, axis=-1)
  outputs, _ = apply_train(model, params, batch_stats, grey)
  logits = dense_logits(outputs["colorization"], bins.shape[0])
  (b, h, w, _), size = logits.shape, images.shape[1]
  ab = lab[..., 1:].reshape(b, h, size // h, w, size // w, 2).mean(axis=(2, 4))
  sigma = loss_config.sigma
  targets = colorization.soft_encode(ab, bins, loss_config.neighbours, sigma)
  nearest = jnp.argmin(colorization.squared_distances(ab, bins), axis=-1)
  counts = bin_counts + jnp.zeros_like(bin_counts).at[nearest.reshape(-1)].add(1.0)
  weights = colorization.rebalance_weights(counts / counts.sum(), bins,
                                           loss_config.rebalance_lambda, sigma)
  xent = -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)
  loss = jnp.mean(jax.lax.stop_gradient(weights[nearest]) * xent)
  return loss, accuracy(logits, nearest), counts
