"""Supervised baseline: cross-entropy on the labeled images only (`s4l:semi_supervised/`).

With soft pseudo-labels (`pseudo_label_type="soft"`, Noisy Student) the labeled stream carries
`soft_label` (B, K) probabilities and the loss is the soft cross-entropy
-sum_y p_y log softmax(logits)_y; else the integer `label`'s. The model's noise (dropout,
stochastic depth) is driven by the step's `rng`.
"""
from s4l_jax import losses, objectives
from s4l_jax.objective_lib import accuracy, apply_train

REQUIRES = objectives.Requirements(streams={"labeled": 1}, heads=("classes",), model_noise=True)

LOSS_KEYS = {}


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del loss_config, aux
  labeled = batch["labeled"]
  outputs, new_stats = apply_train(model, params, batch_stats, labeled["image"], rng)
  logits = outputs["classes"]
  if "soft_label" in labeled:
    loss = losses.soft_target_xent(logits, labeled["soft_label"])
  else:
    loss = losses.softmax_xent(logits, labeled["label"])
  return objectives.LossOutput(loss, new_stats, {
      "sup_loss": loss, "sup_accuracy": accuracy(logits, labeled["label"])})
