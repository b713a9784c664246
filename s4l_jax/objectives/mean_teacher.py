"""Mean Teacher (Tarvainen & Valpola 2017; S4L Table 2 "Mean Teacher").

The teacher is the EMA of the student's weights (`aux["ema_params"]`, `ema_halflife_epochs`).
Each unlabeled image comes in two independent augmentations (a 2-copy view, image
(B_u, 2, H, W, C)): copy 0 goes through the student, copy 1 through the teacher.

    L = L_cls + w * L_cons
    L_cls  = xent of the student's classes on the labeled images
    L_cons = mean over unlabeled images and classes of (softmax(s) - softmax(t))^2,
             the teacher's probabilities without gradient
    w      = consistency_weight * exp(-5 (1 - min(p / consistency_rampup, 1))^2)

p = `aux["progress"]` (fraction of the run done): the paper's sigmoid ramp-up over the first
`consistency_rampup` of training (0 = full weight from the start).
One student pass on concat[labeled; unlabeled copy 0] updates the BatchNorm moving averages;
the teacher pass uses training-mode BatchNorm (statistics of its own batch, as the reference
implementations run both networks in train mode) and its statistics updates are discarded.
`loss` keys: consistency_weight, consistency_rampup.
The unlabeled labels are used only for the teacher-accuracy metric, never in the loss.
"""
import jax
import jax.numpy as jnp

from s4l_jax import losses, objectives
from s4l_jax.objective_lib import accuracy, apply_train

REQUIRES = objectives.Requirements(streams={"labeled": 1, "unlabeled": 2}, heads=("classes",),
                                   aux=("progress", "ema_params"))

LOSS_KEYS = {"consistency_weight": objectives.LossKey(8.0, objectives.NON_NEGATIVE),
             "consistency_rampup": objectives.LossKey(0.4, objectives.Range(0, 1))}


def consistency_weight(progress, weight: float, rampup: float):
  """`weight * exp(-5 (1 - min(progress / rampup, 1))^2)`; `weight` when rampup <= 0."""
  if rampup <= 0:
    return jnp.float32(weight)
  return weight * jnp.exp(-5.0 * (1.0 - jnp.minimum(progress / rampup, 1.0)) ** 2)


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng
  labeled, unlabeled = batch["labeled"], batch["unlabeled"]
  num_l = labeled["image"].shape[0]
  x = jnp.concatenate([labeled["image"], unlabeled["image"][:, 0]])
  outputs, new_stats = apply_train(model, params, batch_stats, x)
  logits = outputs["classes"]
  sup_loss = losses.softmax_xent(logits[:num_l], labeled["label"])
  teacher, _ = apply_train(model, aux["ema_params"], batch_stats, unlabeled["image"][:, 1])
  teacher_logits = jax.lax.stop_gradient(teacher["classes"])
  cons_loss = jnp.mean(jnp.square(jax.nn.softmax(logits[num_l:])
                                  - jax.nn.softmax(teacher_logits)))
  weight = consistency_weight(aux["progress"], loss_config.consistency_weight,
                              loss_config.consistency_rampup)
  loss = sup_loss + weight * cons_loss
  return objectives.LossOutput(loss, new_stats, {
      "sup_loss": sup_loss, "consistency_loss": cons_loss, "consistency_weight": weight,
      "sup_accuracy": accuracy(logits[:num_l], labeled["label"]),
      "teacher_accuracy": accuracy(teacher_logits, unlabeled["label"])})
