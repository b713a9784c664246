"""Supervised baseline: cross-entropy on the labeled images only (`s4l:semi_supervised/`).

With soft pseudo-labels (`pseudo_label_type="soft"`, Noisy Student) the labeled stream carries
`soft_label` (B, K) probabilities and the loss is the soft cross-entropy
-sum_y p_y log softmax(logits)_y; else the integer `label`'s. The model's noise (dropout,
stochastic depth) is driven by the step's `rng`.

With a `pseudo` stream (a student's pseudo-labelled images in their own batch, Noisy
Student's Algorithm 1) both streams go through one forward pass and the loss is the sum of
the two streams' mean cross-entropies: L = mean_labeled xent + mean_pseudo xent.
"""
import jax.numpy as jnp

from s4l_jax import losses, objectives
from s4l_jax.data import views
from s4l_jax.objective_lib import accuracy, apply_train, apply_train_streams

REQUIRES = objectives.Requirements(streams={"labeled": 1}, heads=("classes",), model_noise=True)

LOSS_KEYS = {}

PSEUDO = "pseudo"  # the optional stream of pseudo-labelled images read with "labeled"


def xent(logits, stream):
  """Mean cross-entropy of `logits` (B, K) against the stream's soft_label, else its label."""
  if "soft_label" in stream:
    return losses.soft_target_xent(logits, stream["soft_label"])
  return losses.softmax_xent(logits, stream["label"])


def check(config):
  """A `pseudo` stream, when the config has one, makes one view per image."""
  pseudo = config.input.get(PSEUDO)
  if pseudo is not None and pseudo.batch_size and views.copies(pseudo.view) != 1:
    raise ValueError(f"objective supervised needs input.pseudo.view making 1 copy per image, "
                     f"got {pseudo.view!r} ({views.copies(pseudo.view)})")


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del loss_config, aux
  labeled = batch["labeled"]
  if PSEUDO not in batch:
    outputs, new_stats = apply_train(model, params, batch_stats, labeled["image"], rng)
    logits = outputs["classes"]
    loss = xent(logits, labeled)
    return objectives.LossOutput(loss, new_stats, {
        "sup_loss": loss, "sup_accuracy": accuracy(logits, labeled["label"])})
  pseudo, num_l = batch[PSEUDO], labeled["image"].shape[0]
  images = jnp.concatenate([labeled["image"], pseudo["image"]])
  outputs, new_stats = apply_train_streams(model, params, batch_stats, images,
                                           (num_l, pseudo["image"].shape[0]), rng)
  logits = outputs["classes"]
  sup_loss, pseudo_loss = xent(logits[:num_l], labeled), xent(logits[num_l:], pseudo)
  return objectives.LossOutput(sup_loss + pseudo_loss, new_stats, {
      "sup_loss": sup_loss, "sup_accuracy": accuracy(logits[:num_l], labeled["label"]),
      "pseudo_loss": pseudo_loss,
      "pseudo_accuracy": accuracy(logits[num_l:], pseudo["label"])})
