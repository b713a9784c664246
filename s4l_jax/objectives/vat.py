"""VAT and VAT+EntMin (methods.md 2.5d, `s4l:semi_supervised/vat.py`).

    L = L_cls + vat_weight * L_vat + entmin_weight * L_ent

* One clean forward pass on concat[unlabeled; labeled] (train-mode BN; this pass alone
  updates the BN moving averages). L_cls = cross-entropy on the labeled clean logits.
* L_vat (`s4l_jax.vat.vat_loss`) and L_ent (mean entropy of the clean class predictions,
  gradient flowing) on labeled+unlabeled images when `vat_apply_to_labeled`, else on the
  unlabeled images only. The perturbed passes use train-mode BN (statistics of the
  perturbed batch) and their batch_stats updates are discarded, as S4L freezes the moving
  averages there.

`config.loss` keys: vat_eps, vat_xi, vat_num_iters, vat_weight, entmin_weight,
vat_apply_to_labeled, vat_kl_direction: "perturbed_clean" = KL(p(x+r) || p(x)) as in the
released S4L code (default, for its numbers); "clean_perturbed" = KL(p(x) || p(x+r)), the
paper's / Miyato et al.'s intent. `rng` seeds the random start of the power iteration.
"""
import jax.numpy as jnp

from s4l_jax import losses, vat


def perturbed_apply_fn(model, params, batch_stats, head: str = "classes"):
  """`x (N, H, W, C) -> logits (N, dim)` of `head`: train-mode BN, batch_stats discarded."""
  variables = {"params": params, "batch_stats": batch_stats}

  def apply_fn(x):
    outputs, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    return outputs[head]
  return apply_fn


def vat_kwargs(loss_config, default_eps: float = 40.0) -> dict:
  """Keyword arguments of `s4l_jax.vat.vat_loss` from `config.loss` (S4L defaults)."""
  return dict(eps=loss_config.get("vat_eps", default_eps),
              xi=loss_config.get("vat_xi", 1e-6),
              num_iters=loss_config.get("vat_num_iters", 1),
              kl_direction=loss_config.get("vat_kl_direction", "perturbed_clean"))


def loss_fn(params, batch_stats, batch, rng, *, model, config):
  labeled, unlabeled = batch["labeled"], batch["unlabeled"]
  num_u = unlabeled["image"].shape[0]
  x = jnp.concatenate([unlabeled["image"], labeled["image"]])
  outputs, new = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                             mutable=["batch_stats"])
  logits = outputs["classes"]
  lab_logits = logits[num_u:]
  sup_loss = losses.softmax_xent(lab_logits, labeled["label"])

  if config.loss.vat_apply_to_labeled:
    x_v, z_v = x, logits
  else:
    x_v, z_v = x[:num_u], logits[:num_u]
  vat_loss = vat.vat_loss(perturbed_apply_fn(model, params, batch_stats), x_v, z_v, rng,
                          **vat_kwargs(config.loss))
  entmin_loss = losses.entropy(z_v)
  loss = (sup_loss + config.loss.vat_weight * vat_loss
          + config.loss.entmin_weight * entmin_loss)
  metrics = dict(sup_loss=sup_loss, vat_loss=vat_loss, entmin_loss=entmin_loss,
                 sup_accuracy=(lab_logits.argmax(-1) == labeled["label"]).mean())
  return loss, (new["batch_stats"], metrics)
