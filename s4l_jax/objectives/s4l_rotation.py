"""S4L-Rotation (methods.md 2.5b): rotation prediction on both streams + class loss.

Both streams use the `rotate4` view, flattened image-major to (4B, H, W, C) (row 4i + r is
image i turned r quarter turns). One forward pass on concat[unlabeled; labeled]:

    L_rot = (xent_rot(unlabeled) + xent_rot(labeled)) / 2
    L_cls = xent_cls(all 4 rotations of each labeled image, its class label)
    L     = L_cls + config.loss.rot_weight * L_rot
"""
import jax.numpy as jnp

from s4l_jax import losses


def flatten_views(x):
  """(B, V, ...) -> (B * V, ...), image-major (row v + V * i is view v of image i)."""
  return x.reshape((-1,) + x.shape[2:])


def rotation_inputs(streams):
  """Flattened images (sum 4B, H, W, C), rotation labels (sum 4B,) and per-stream sizes."""
  images = jnp.concatenate([flatten_views(s["image"]) for s in streams])
  rotations = jnp.concatenate([s["rotation"].reshape(-1) for s in streams])
  return images, rotations, [4 * s["image"].shape[0] for s in streams]


def accuracy(logits, labels):
  return (logits.argmax(-1) == labels).mean()


def loss_fn(params, batch_stats, batch, rng, *, model, config):
  del rng
  unlabeled, labeled = batch["unlabeled"], batch["labeled"]
  images, rotations, (n_u, _) = rotation_inputs([unlabeled, labeled])
  outputs, new = model.apply({"params": params, "batch_stats": batch_stats}, images,
                             train=True, mutable=["batch_stats"])
  rot_logits, cls_logits = outputs["rotations"], outputs["classes"][n_u:]
  rot_u = losses.softmax_xent(rot_logits[:n_u], rotations[:n_u])
  rot_l = losses.softmax_xent(rot_logits[n_u:], rotations[n_u:])
  rot_loss = (rot_u + rot_l) / 2
  labels = jnp.repeat(labeled["label"], 4)  # Every rotated copy keeps its class label.
  sup_loss = losses.softmax_xent(cls_logits, labels)
  loss = sup_loss + config.loss.rot_weight * rot_loss
  return loss, (new["batch_stats"], {
      "sup_loss": sup_loss, "sup_accuracy": accuracy(cls_logits, labels),
      "rot_loss": rot_loss, "rot_unlabeled_loss": rot_u, "rot_labeled_loss": rot_l,
      "rot_accuracy": accuracy(rot_logits, rotations)})
