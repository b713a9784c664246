"""S4L-Exemplar: batch-hard triplet on 8 views per image + class loss (`s4l:semi_supervised/`).

Both streams use the `exemplar8` view, flattened image-major to (8B, H, W, C). One forward
pass on concat[unlabeled; labeled] (with `model.bn_group_size`, BN groups per core:
`objective_lib.core_order`); e = l2_normalize(head "embeddings"):
    L_ex  = (triplet(e_unlabeled) + triplet(e_labeled)) / 2   # soft margin, batch-hard
    L_cls = xent_cls(all 8 views of each labeled image, its class label)
    L     = L_cls + loss.triplet_weight * L_ex
The triplet identity of view j is j // 8 within its stream;
`loss.exemplar_id_quirk=True` reproduces the released code's swapped arguments
(`do_triplet(emb, ninstances, nexamples)` in `exemplar.py`: id = j // images_per_group). The
paper computes the triplet per TPU core; here it is over the global batch of each stream
unless `loss.triplet_groups` = G > 1 splits each stream into G contiguous groups of images
(G = cores mimics the original; on a data-sharded batch group g is device g's shard),
averaging the per-group losses.
"""
import jax.numpy as jnp

from s4l_jax import losses, objectives
from s4l_jax.objective_lib import (EXEMPLAR_LOSS_KEYS, NUM_EXEMPLAR_VIEWS, accuracy,  # pylint: disable=g-multiple-import
                                   exemplar_embeddings, exemplar_triplet)

REQUIRES = objectives.Requirements(streams={"labeled": 8, "unlabeled": 8},
                                   heads=("classes", "embeddings"))

LOSS_KEYS = dict(EXEMPLAR_LOSS_KEYS,
                 triplet_weight=objectives.LossKey(1.0, objectives.NON_NEGATIVE))


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng, aux
  unlabeled, labeled = batch["unlabeled"], batch["labeled"]
  b_u, b_l = unlabeled["image"].shape[0], labeled["image"].shape[0]
  outputs, new_stats, emb = exemplar_embeddings(model, params, batch_stats,
                                                [unlabeled, labeled])
  n_u = b_u * NUM_EXEMPLAR_VIEWS
  kw = dict(groups=loss_config.triplet_groups, quirk=loss_config.exemplar_id_quirk)
  ex_u = exemplar_triplet(emb[:n_u], b_u, **kw)
  ex_l = exemplar_triplet(emb[n_u:], b_l, **kw)
  ex_loss = (ex_u + ex_l) / 2
  cls_logits = outputs["classes"][n_u:]
  labels = jnp.repeat(labeled["label"], NUM_EXEMPLAR_VIEWS)
  sup_loss = losses.softmax_xent(cls_logits, labels)
  loss = sup_loss + loss_config.triplet_weight * ex_loss
  return objectives.LossOutput(loss, new_stats, {
      "sup_loss": sup_loss, "sup_accuracy": accuracy(cls_logits, labels),
      "triplet_loss": ex_loss, "triplet_unlabeled_loss": ex_u, "triplet_labeled_loss": ex_l})
