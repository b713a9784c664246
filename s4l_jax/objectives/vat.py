"""VAT and VAT+EntMin (`s4l:semi_supervised/vat.py`).

    L = L_cls + vat_weight * L_vat + entmin_weight * L_ent

* One clean forward pass on concat[unlabeled; labeled] (train-mode BN; this pass alone
  updates the BN moving averages; with `model.bn_group_size` each group holds its core's
  share of both streams, `objective_lib.core_order`, in the perturbed passes too). L_cls = cross-entropy on the labeled clean logits.
* L_vat (`s4l_jax.vat.vat_loss`) and L_ent (mean entropy of the clean class predictions,
  gradient flowing) on labeled+unlabeled images when `vat_apply_to_labeled`, else on the
  unlabeled images only. The perturbed passes use train-mode BN (statistics of the
  perturbed batch) and their batch_stats updates are discarded, as S4L freezes the moving
  averages there.
`loss` keys: vat_eps, vat_xi, vat_num_iters, vat_weight, entmin_weight,
vat_apply_to_labeled, vat_kl_direction: "perturbed_clean" = KL(p(x+r) || p(x)) as in the
released S4L code (default, for its numbers); "clean_perturbed" = KL(p(x) || p(x+r)), the
paper's / Miyato et al.'s intent. `rng` seeds the random start of the power iteration.
"""
import jax.numpy as jnp

from s4l_jax import losses, objectives, vat
from s4l_jax.objective_lib import (accuracy, apply_train_streams,  # pylint: disable=g-multiple-import
                                   perturbed_apply_fn, vat_kwargs, vat_loss_keys)

REQUIRES = objectives.Requirements(streams={"labeled": 1, "unlabeled": 1}, heads=("classes",))

LOSS_KEYS = dict(vat_loss_keys(eps=40.0),
                 vat_apply_to_labeled=objectives.LossKey(True, objectives.BOOL),
                 vat_weight=objectives.LossKey(0.5, objectives.NON_NEGATIVE),
                 entmin_weight=objectives.LossKey(0.0, objectives.NON_NEGATIVE))  # VAT+EntMin: 1


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del aux
  labeled, unlabeled = batch["labeled"], batch["unlabeled"]
  sizes = [unlabeled["image"].shape[0], labeled["image"].shape[0]]
  num_u = sizes[0]
  x = jnp.concatenate([unlabeled["image"], labeled["image"]])
  outputs, new_stats = apply_train_streams(model, params, batch_stats, x, sizes)
  logits = outputs["classes"]
  lab_logits = logits[num_u:]
  sup_loss = losses.softmax_xent(lab_logits, labeled["label"])
  if loss_config.vat_apply_to_labeled:
    x_v, z_v, v_sizes = x, logits, sizes
  else:
    x_v, z_v, v_sizes = x[:num_u], logits[:num_u], sizes[:1]
  vat_loss = vat.vat_loss(perturbed_apply_fn(model, params, batch_stats, sizes=v_sizes), x_v,
                          z_v, rng, **vat_kwargs(loss_config))
  entmin_loss = losses.entropy(z_v)
  loss = (sup_loss + loss_config.vat_weight * vat_loss
          + loss_config.entmin_weight * entmin_loss)
  metrics = dict(sup_loss=sup_loss, vat_loss=vat_loss, entmin_loss=entmin_loss,
                 sup_accuracy=accuracy(lab_logits, labeled["label"]))
  return objectives.LossOutput(loss, new_stats, metrics)
