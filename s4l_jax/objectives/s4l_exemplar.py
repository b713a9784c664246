"""S4L-Exemplar (methods.md 2.5c): batch-hard triplet on 8 views per image + class loss.

Both streams use the `exemplar8` view, flattened image-major to (8B, H, W, C). One forward
pass on concat[unlabeled; labeled]; e = l2_normalize(head "embeddings"):

    L_ex  = (triplet(e_unlabeled) + triplet(e_labeled)) / 2   # soft margin, batch-hard
    L_cls = xent_cls(all 8 views of each labeled image, its class label)
    L     = L_cls + config.loss.triplet_weight * L_ex

The triplet identity of view j is j // 8 within its stream (`exemplar_ids`);
`config.loss.exemplar_id_quirk=True` reproduces the released code's swapped arguments
(id = j // images_per_group, methods.md 2.8.1). The paper computes the triplet per TPU core;
here it is over the global batch of each stream unless `config.loss.triplet_groups` = G > 1
splits each stream into G contiguous groups of images (G = cores mimics the original;
on a data-sharded batch group g is device g's shard), averaging the per-group losses.
"""
import jax

from s4l_jax import losses
from s4l_jax.data import views
from s4l_jax.objectives import s4l_rotation

NUM_VIEWS = views.NUM_EXEMPLAR


def triplet_loss(emb, num_images: int, groups: int = 1, quirk: bool = False):
  """Mean batch-hard soft-margin triplet of (num_images * 8, D) image-major embeddings."""
  if num_images % groups:
    raise ValueError(f"loss.triplet_groups={groups} must divide the {num_images} images")
  per_group = num_images // groups
  ids = losses.exemplar_ids(per_group, NUM_VIEWS, quirk)
  emb = emb.reshape(groups, per_group * NUM_VIEWS, emb.shape[-1])
  return jax.vmap(lambda e: losses.batch_hard_triplet(e, ids))(emb).mean()


def embed(params, batch_stats, streams, model):
  """Forward on concat(streams); returns (outputs, new batch_stats, normalised embeddings)."""
  images = jax.numpy.concatenate([s4l_rotation.flatten_views(s["image"]) for s in streams])
  outputs, new = model.apply({"params": params, "batch_stats": batch_stats}, images,
                             train=True, mutable=["batch_stats"])
  return outputs, new["batch_stats"], losses.l2_normalize(outputs["embeddings"])


def loss_fn(params, batch_stats, batch, rng, *, model, config):
  del rng
  unlabeled, labeled = batch["unlabeled"], batch["labeled"]
  b_u, b_l = unlabeled["image"].shape[0], labeled["image"].shape[0]
  outputs, new_stats, emb = embed(params, batch_stats, [unlabeled, labeled], model)
  n_u = b_u * NUM_VIEWS
  kw = dict(groups=config.loss.triplet_groups, quirk=config.loss.exemplar_id_quirk)
  ex_u = triplet_loss(emb[:n_u], b_u, **kw)
  ex_l = triplet_loss(emb[n_u:], b_l, **kw)
  ex_loss = (ex_u + ex_l) / 2
  cls_logits = outputs["classes"][n_u:]
  labels = jax.numpy.repeat(labeled["label"], NUM_VIEWS)
  sup_loss = losses.softmax_xent(cls_logits, labels)
  loss = sup_loss + config.loss.triplet_weight * ex_loss
  return loss, (new_stats, {
      "sup_loss": sup_loss, "sup_accuracy": s4l_rotation.accuracy(cls_logits, labels),
      "triplet_loss": ex_loss, "triplet_unlabeled_loss": ex_u, "triplet_labeled_loss": ex_l})
