"""Pseudo-labels from a teacher export (methods.md 2.5e; MOAM step 2).

Every train image gets `argmax` of the teacher's logits on its central, unrotated view
(the in-memory image itself), with the softmax confidence kept for optional thresholding.
"""
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from s4l_jax import export
from s4l_jax.data import sources, streams


def generate(teacher_dir: str, dataset: str, out_path: str, *, data_dir: str = "",
             batch_size: int = 500) -> dict:
  """Writes `out_path` (.npz: labels, confidence) and returns summary statistics."""
  predict, description = export.load_predict(teacher_dir)
  train = sources.load_split(dataset, "train", image_size=description["input_size"][0],
                             data_dir=data_dir or None)
  labels = np.zeros(len(train.labels), np.int32)
  confidence = np.zeros(len(train.labels), np.float32)
  for idx, mask in streams.eval_batches(len(train.labels), batch_size):
    probs = jax.nn.softmax(predict(jnp.asarray(train.images[idx])), axis=-1)
    probs = np.asarray(probs)[mask]
    labels[idx[mask]] = probs.argmax(-1)
    confidence[idx[mask]] = probs.max(-1)
  agreement = float(np.mean(labels == train.labels))
  np.savez(out_path, labels=labels, confidence=confidence)
  logging.info("Pseudo-labelled %d images with %s: %.2f%% agree with the true labels",
               len(labels), teacher_dir, 100 * agreement)
  return {"num_images": len(labels), "agreement_with_truth": agreement,
          "mean_confidence": float(confidence.mean())}
