"""MOAM step 1 = S4L-Rotation + VAT + EntMin (`s4l:semi_supervised/rotation_vat.py`).

    L = rot_weight * L_rot + sup_weight * L_cls + vat_weight * L_vat + entmin_weight * L_ent

Both streams use the `rotate4` view: images (B, 4, H, W, C), "rotation" (B, 4). They are
flattened image-major to (4B, H, W, C) and one forward pass runs on
concat[4 B_u unlabeled; 4 B_l labeled] (train-mode BN, updates the moving averages; BN groups
per core with `model.bn_group_size`, `objective_lib.core_order`).
* L_rot = 0.5 * xent_rot(unlabeled rows) + 0.5 * xent_rot(labeled rows), head "rotations".
* L_cls = xent of head "classes" on all 4 rotations of every labeled image.
* L_vat (`s4l_jax.vat.vat_loss`, perturbed passes with train-mode BN whose batch_stats are
  discarded) and L_ent (mean entropy of the clean class predictions, gradient flowing) on
  the 4 B_u rotated UNLABELED images only (S4L ignores `apply_vat_to_labeled` here).
`loss` keys (S4L `moam_step_1.sh` defaults when absent):
  sup_weight 0.3, vat_weight 0.3, entmin_weight 0.3,
  rot_weight (default 1 - sup_weight - vat_weight = 0.4, as in the code),
  vat_eps 32.0, vat_xi 1e-6, vat_num_iters 1,
  vat_kl_direction "perturbed_clean" (S4L code) | "clean_perturbed" (Miyato et al.).
`rng` seeds the random start of the power iteration.
"""
import jax.numpy as jnp

from s4l_jax import losses, objectives, vat
from s4l_jax.objective_lib import (accuracy, apply_train_streams,  # pylint: disable=g-multiple-import
                                   perturbed_apply_fn, rotation_inputs, vat_kwargs,
                                   vat_loss_keys)

REQUIRES = objectives.Requirements(streams={"labeled": 4, "unlabeled": 4},
                                   heads=("classes", "rotations"))

LOSS_KEYS = dict(vat_loss_keys(eps=32.0),
                 rot_weight=objectives.LossKey(0.4, objectives.NON_NEGATIVE),
                 sup_weight=objectives.LossKey(0.3, objectives.NON_NEGATIVE),
                 vat_weight=objectives.LossKey(0.3, objectives.NON_NEGATIVE),
                 entmin_weight=objectives.LossKey(0.3, objectives.NON_NEGATIVE))


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del aux
  lc = loss_config
  sup_weight, vat_weight = lc.sup_weight, lc.vat_weight
  rot_weight, entmin_weight = lc.rot_weight, lc.entmin_weight
  labeled, unlabeled = batch["labeled"], batch["unlabeled"]
  x, rotations, sizes = rotation_inputs([unlabeled, labeled])
  num_u = sizes[0]
  outputs, new_stats = apply_train_streams(model, params, batch_stats, x, sizes)
  cls_logits, rot_logits = outputs["classes"], outputs["rotations"]
  rot_u = losses.softmax_xent(rot_logits[:num_u], rotations[:num_u])
  rot_l = losses.softmax_xent(rot_logits[num_u:], rotations[num_u:])
  rot_loss = 0.5 * rot_u + 0.5 * rot_l
  labels = jnp.repeat(labeled["label"], labeled["image"].shape[1])
  sup_loss = losses.softmax_xent(cls_logits[num_u:], labels)
  vat_loss = vat.vat_loss(perturbed_apply_fn(model, params, batch_stats),
                          x[:num_u], cls_logits[:num_u], rng, **vat_kwargs(lc))
  entmin_loss = losses.entropy(cls_logits[:num_u])
  loss = (rot_weight * rot_loss + sup_weight * sup_loss + vat_weight * vat_loss
          + entmin_weight * entmin_loss)
  metrics = dict(
      rot_loss=rot_loss, sup_loss=sup_loss, vat_loss=vat_loss, entmin_loss=entmin_loss,
      sup_accuracy=accuracy(cls_logits[num_u:], labels),
      rot_accuracy=accuracy(rot_logits, rotations))
  return objectives.LossOutput(loss, new_stats, metrics)
