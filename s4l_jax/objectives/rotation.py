"""Self-supervised rotation pretraining (S4L's "Rotation + Linear / Fine-tune" baselines).

All images of both streams (the unlabeled stream is the whole train split; the labeled batch
is used as further unlabeled images, its labels are ignored) take the `rotate4` view;
`L = xent_rot` averaged over every rotated image. The "classes" head gets no loss: it only
keeps the export contract (`predict` -> class logits) and is replaced or re-trained by the
linear evaluation / fine-tuning run.
"""
from s4l_jax import losses, objectives
from s4l_jax.objective_lib import accuracy, apply_train_streams, rotation_inputs

REQUIRES = objectives.Requirements(streams={"labeled": 4, "unlabeled": 4},
                                   heads=("classes", "rotations"))

LOSS_KEYS = {}


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux):
  del rng, loss_config, aux
  streams = [batch[k] for k in ("unlabeled", "labeled") if k in batch]
  images, rotations, sizes = rotation_inputs(streams)
  outputs, new_stats = apply_train_streams(model, params, batch_stats, images, sizes)
  logits = outputs["rotations"]
  loss = losses.softmax_xent(logits, rotations)
  return objectives.LossOutput(loss, new_stats, {
      "rot_loss": loss, "rot_accuracy": accuracy(logits, rotations)})
