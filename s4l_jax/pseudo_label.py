"""Pseudo-labels from a teacher export (methods.md 2.5e; MOAM step 2).

Every train image gets `argmax` of the teacher's logits on its central, unrotated view (the
in-memory image itself, or the tf.data eval view: short side resized, central crop), with
the softmax confidence kept for optional thresholding. Labels are stored by example index.
"""
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from s4l_jax import export, storage
from s4l_jax.data import pipeline, sources


def train_batches(config, image_size: int, batch_size: int):
  """Yields {image uint8, label, mask} over the whole train split in index order."""
  if config.input.pipeline == "memory":
    train = sources.load_split(config.dataset, "train", image_size=image_size,
                               data_dir=config.data_dir or None)
    yield from pipeline.masked_batches(train, batch_size)
    return
  from s4l_jax.data import tfds_pipeline  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  config.pseudo_labels, config.labels, config.input.image_size = "", "all", image_size
  yield from tfds_pipeline.TfdsPipeline(config).eval_batches(batch_size, split="train")


def generate(teacher_dir: str, config, out_path: str, *, batch_size: int = 500) -> dict:
  """Labels `config.dataset`'s train split; writes `out_path` (.npz: labels, confidence)."""
  predict, description = export.load_predict(teacher_dir)
  labels, confidence, truth = [], [], []
  for batch in train_batches(config, description["input_size"][0], batch_size):
    probs = np.asarray(jax.nn.softmax(predict(jnp.asarray(batch["image"])), axis=-1))
    mask = batch["mask"]
    labels.append(probs.argmax(-1)[mask])
    confidence.append(probs.max(-1)[mask])
    truth.append(batch["label"][mask])
  labels = np.concatenate(labels).astype(np.int32)
  confidence = np.concatenate(confidence).astype(np.float32)
  agreement = float(np.mean(labels == np.concatenate(truth)))
  with storage.open_file(out_path, "wb") as f:
    np.savez(f, labels=labels, confidence=confidence)
  logging.info("Pseudo-labelled %d images with %s: %.2f%% agree with the true labels",
               len(labels), teacher_dir, 100 * agreement)
  return {"num_images": len(labels), "agreement_with_truth": agreement,
          "mean_confidence": float(confidence.mean())}
