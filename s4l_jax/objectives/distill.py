"""Distillation / self-training from a frozen teacher (SimCLRv2 eq. 2-3).

The teacher is rebuilt from the export `config.frozen_teacher` (`aux["teacher"]`: inference-
mode BN, no gradient) and sees exactly the student's augmented unlabeled images, in the same
step. One student pass on concat[labeled; unlabeled] (train-mode BN):

    L = distill_weight * T^k * mean_u -sum_y softmax(t_u / T)_y log softmax(s_u / T)_y
        + sup_weight * xent(s_l, labels)

with t = the teacher's "classes" logits, s = the student's, T = `temperature` (the paper's
default 1), k = 2 if `scale_by_temperature_squared` (the official colab's T^2 weight) else 0.
The paper's headline runs are pure distillation (sup_weight 0). The student may be a different
(smaller) architecture than the teacher; both read images in [-1, 1].
`loss` keys: temperature (1.0), distill_weight (1.0), sup_weight (0.0),
scale_by_temperature_squared (False).
The unlabeled labels are used only for the teacher-accuracy metric, never in the loss.
"""
import jax.numpy as jnp

from s4l_jax import losses, objectives
from s4l_jax.objective_lib import accuracy, apply_train

REQUIRES = objectives.Requirements(streams={"labeled": 1, "unlabeled": 1}, heads=("classes",),
                                   aux=("teacher",))

LOSS_KEYS = {"temperature": objectives.LossKey(1.0, objectives.POSITIVE),
             "distill_weight": objectives.LossKey(1.0, objectives.NON_NEGATIVE),
             "sup_weight": objectives.LossKey(0.0, objectives.NON_NEGATIVE),
             "scale_by_temperature_squared": objectives.LossKey(False, objectives.BOOL)}


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng
  lc = loss_config
  temperature = lc.temperature
  labeled, unlabeled = batch["labeled"], batch["unlabeled"]
  num_l = labeled["image"].shape[0]
  outputs, new_stats = apply_train(
      model, params, batch_stats, jnp.concatenate([labeled["image"], unlabeled["image"]]))
  student_l, student_u = outputs["classes"][:num_l], outputs["classes"][num_l:]
  teacher_u = aux["teacher"](unlabeled["image"])["classes"]
  distill = losses.soft_xent(student_u, teacher_u, temperature)
  if lc.scale_by_temperature_squared:
    distill *= temperature ** 2
  sup = losses.softmax_xent(student_l, labeled["label"])
  loss = lc.distill_weight * distill + lc.sup_weight * sup
  metrics = dict(
      distill_loss=distill, sup_loss=sup, sup_accuracy=accuracy(student_l, labeled["label"]),
      teacher_agreement=accuracy(student_u, teacher_u.argmax(-1)),
      teacher_accuracy=accuracy(teacher_u, unlabeled["label"]))
  return objectives.LossOutput(loss, new_stats, metrics)
