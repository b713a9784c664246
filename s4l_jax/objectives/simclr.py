"""SimCLR(v2) contrastive pretraining: NT-Xent on two views of every image (methods.md 3.5).

Both streams use a 2-copy view (`simclr2`): images (B, 2, H, W, C). One forward pass runs on
concat[view 1 of (unlabeled; labeled), view 2 of (unlabeled; labeled)] (2N images, N = B_u +
B_l; BatchNorm over all of them, as SimCLR concatenates the views on the batch axis), and

    L = nt_xent(proj(view 1), proj(view 2), temperature)    (+ L_linear, see below)

with head "proj" (the 3-layer projection head; its output is L2-normalised inside nt_xent) and
the negatives of each anchor taken from the whole global batch (2N - 2 views).
Linear evaluation while pretraining (SimCLR TF2's `lineareval_while_pretraining`): when the
model has a head "classes" (declared with `stop_gradient=True`, so it never moves the
encoder), L_linear = xent(classes, labels) on both views of the LABELED images only.
`loss` keys: temperature (0.1), linear_eval_weight (1.0).
"""
import jax.numpy as jnp

from s4l_jax import losses, objectives
from s4l_jax.objective_lib import accuracy, apply_train

REQUIRES = objectives.Requirements(streams={"unlabeled": 2, "labeled": 2}, heads=("proj",))


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng, aux
  labeled, unlabeled = batch["labeled"], batch["unlabeled"]
  num_u, num_l = unlabeled["image"].shape[0], labeled["image"].shape[0]
  n = num_u + num_l
  x = jnp.concatenate([unlabeled["image"][:, 0], labeled["image"][:, 0],
                       unlabeled["image"][:, 1], labeled["image"][:, 1]])
  outputs, new_stats = apply_train(model, params, batch_stats, x)
  z = outputs["proj"]
  contrastive, contrast_acc = losses.nt_xent(z[:n], z[n:],
                                             loss_config.get("temperature", 0.1))
  loss, metrics = contrastive, dict(contrastive_loss=contrastive, contrast_accuracy=contrast_acc)
  if "classes" in outputs:
    logits = jnp.concatenate([outputs["classes"][num_u:n], outputs["classes"][n + num_u:]])
    labels = jnp.tile(labeled["label"], 2)
    linear = losses.softmax_xent(logits, labels)
    loss += loss_config.get("linear_eval_weight", 1.0) * linear
    metrics.update(linear_eval_loss=linear, sup_accuracy=accuracy(logits, labels))
  return loss, (new_stats, metrics)
