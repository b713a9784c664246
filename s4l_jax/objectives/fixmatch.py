"""FixMatch (Sohn et al. 2020): pseudo-labels from a weak view, enforced on a strong view.

Each unlabeled image comes in two views (image (B_u, 2, H, W, C)): copy 0 weak (flip + shift),
copy 1 strong (+ RandAugment + Cutout; `configs/fixmatch.py`). One train-mode forward pass on
concat[labeled; weak; strong] (BatchNorm statistics of the whole batch, as the released code's
single interleaved batch; its moving averages are updated from it):

    L = L_s + unlabeled_weight * L_u
    L_s = mean over labeled images of xent(logits, label)
    L_u = mean over unlabeled images of mask * xent(strong logits, pseudo)
    pseudo = argmax softmax(weak logits), mask = [max softmax(weak logits) >= threshold]

with no gradient through `pseudo` or `mask` (stop_gradient on the weak probabilities).
`loss` keys: threshold (paper 0.95), unlabeled_weight (lambda_u, paper 1).
Metrics: mask_rate (fraction of unlabeled images above the threshold), pseudo_label_accuracy
(argmax of the weak view vs the unlabeled stream's true labels, all images: logging only,
never in the loss), mask_correct_rate (fraction above the threshold *and* correct:
mask_correct_rate / mask_rate is the accuracy of the pseudo-labels the loss uses), sup_loss,
unsup_loss, sup_accuracy.
"""
import jax
import jax.numpy as jnp

from s4l_jax import losses, objectives
from s4l_jax.objective_lib import accuracy, apply_train

REQUIRES = objectives.Requirements(streams={"labeled": 1, "unlabeled": 2}, heads=("classes",))

LOSS_KEYS = {"threshold": objectives.LossKey(0.95, objectives.Range(0, 1)),  # tau
             "unlabeled_weight": objectives.LossKey(1.0, objectives.NON_NEGATIVE)}  # lambda_u


def unlabeled_loss(weak_logits, strong_logits, threshold: float):
  """(mean of mask * xent(strong, pseudo), mask (B_u,) float32, pseudo (B_u,) int32)."""
  probs = jax.lax.stop_gradient(jax.nn.softmax(weak_logits.astype(jnp.float32)))
  pseudo = probs.argmax(-1)
  mask = (probs.max(-1) >= threshold).astype(jnp.float32)
  logp = jax.nn.log_softmax(strong_logits.astype(jnp.float32))
  xent = -jnp.take_along_axis(logp, pseudo[:, None], axis=-1)[:, 0]
  return jnp.mean(mask * xent), mask, pseudo


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng, aux
  labeled, unlabeled = batch["labeled"], batch["unlabeled"]
  num_l, num_u = labeled["image"].shape[0], unlabeled["image"].shape[0]
  x = jnp.concatenate([labeled["image"], unlabeled["image"][:, 0], unlabeled["image"][:, 1]])
  outputs, new_stats = apply_train(model, params, batch_stats, x)
  logits = outputs["classes"]
  sup_loss = losses.softmax_xent(logits[:num_l], labeled["label"])
  unsup_loss, mask, pseudo = unlabeled_loss(logits[num_l:num_l + num_u], logits[num_l + num_u:],
                                            loss_config.threshold)
  loss = sup_loss + loss_config.unlabeled_weight * unsup_loss
  return objectives.LossOutput(loss, new_stats, {
      "sup_loss": sup_loss, "unsup_loss": unsup_loss, "mask_rate": mask.mean(),
      "pseudo_label_accuracy": (pseudo == unlabeled["label"]).mean(),
      "mask_correct_rate": (mask * (pseudo == unlabeled["label"])).mean(),
      "sup_accuracy": accuracy(logits[:num_l], labeled["label"])})
