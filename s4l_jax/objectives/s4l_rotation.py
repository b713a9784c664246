"""S4L-Rotation: rotation prediction on both streams + class loss (`s4l:semi_supervised/`).

Both streams use the `rotate4` view, flattened image-major to (4B, H, W, C) (row 4i + r is
image i turned r quarter turns). One forward pass on concat[unlabeled; labeled] (with
`model.bn_group_size`, BN groups per core: `objective_lib.core_order`):
    L_rot = (xent_rot(unlabeled) + xent_rot(labeled)) / 2
    L_cls = xent_cls(all 4 rotations of each labeled image, its class label)
    L     = L_cls + loss.rot_weight * L_rot
"""
import jax.numpy as jnp

from s4l_jax import losses, objectives
from s4l_jax.objective_lib import accuracy, apply_train_streams, rotation_inputs

REQUIRES = objectives.Requirements(streams={"labeled": 4, "unlabeled": 4},
                                   heads=("classes", "rotations"))

LOSS_KEYS = {"rot_weight": objectives.LossKey(1.0, objectives.NON_NEGATIVE)}


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng, aux
  unlabeled, labeled = batch["unlabeled"], batch["labeled"]
  images, rotations, sizes = rotation_inputs([unlabeled, labeled])
  n_u = sizes[0]
  outputs, new_stats = apply_train_streams(model, params, batch_stats, images, sizes)
  rot_logits, cls_logits = outputs["rotations"], outputs["classes"][n_u:]
  rot_u = losses.softmax_xent(rot_logits[:n_u], rotations[:n_u])
  rot_l = losses.softmax_xent(rot_logits[n_u:], rotations[n_u:])
  rot_loss = (rot_u + rot_l) / 2
  labels = jnp.repeat(labeled["label"], 4)  # Every rotated copy keeps its class label.
  sup_loss = losses.softmax_xent(cls_logits, labels)
  loss = sup_loss + loss_config.rot_weight * rot_loss
  return objectives.LossOutput(loss, new_stats, {
      "sup_loss": sup_loss, "sup_accuracy": accuracy(cls_logits, labels),
      "rot_loss": rot_loss, "rot_unlabeled_loss": rot_u, "rot_labeled_loss": rot_l,
      "rot_accuracy": accuracy(rot_logits, rotations)})
