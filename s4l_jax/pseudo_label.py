"""Pseudo-labels from a teacher export (`s4l:pseudo_labeling/`; MOAM step 2; Noisy Student).

Every train image gets `argmax` of the teacher's logits on its eval crop (`input.eval_crop`,
as the evaluation: the in-memory image itself by default, S4L's on ImageNet), with
the softmax confidence kept for optional thresholding and class balancing
(`data.pipeline.pseudo_label_subset`). `pseudo_label_type="soft"` also stores the teacher's
probabilities softmax(logits / `pseudo_label_temperature`) (float16, N x num_classes), the
targets of the soft cross-entropy. Labels are stored by example index.
"""
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from s4l_jax import export, storage
from s4l_jax.data import pipeline, sources, views

TYPES = ("hard", "soft")  # `pseudo_label_type`: the teacher's argmax | its probabilities


def train_batches(config, image_size: int, batch_size: int):
  """Yields {image uint8, label, mask} over the whole train split in index order."""
  if config.input.pipeline == "memory":
    train = sources.load_split(config.dataset, "train", image_size=image_size,
                               data_dir=config.data_dir or None)
    yield from pipeline.masked_batches(train, batch_size, eval_crop=views.make_eval_crop_fn(
        config.input.eval_crop, image_size=image_size))
    return
  from s4l_jax.data import tfds_pipeline  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  config.pseudo_labels, config.labels, config.input.image_size = "", "all", image_size
  yield from tfds_pipeline.TfdsPipeline(config).eval_batches(batch_size, split="train")


def generate(teacher_dir: str, config, out_path: str, *, batch_size: int = 500) -> dict:
  """Labels `config.dataset`'s train split; writes `out_path` (.npz: labels, confidence and,
  for soft pseudo-labels, probs)."""
  predict, description = export.load_predict(teacher_dir)
  soft = config.pseudo_label_type == "soft"
  labels, confidence, truth, soft_probs = [], [], [], []
  for batch in train_batches(config, description["input_size"][0], batch_size):
    logits = predict(jnp.asarray(batch["image"]))
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    mask = batch["mask"]
    labels.append(probs.argmax(-1)[mask])
    confidence.append(probs.max(-1)[mask])
    truth.append(batch["label"][mask])
    if soft:
      tempered = jax.nn.softmax(logits / config.pseudo_label_temperature, axis=-1)
      soft_probs.append(np.asarray(tempered, np.float16)[mask])
  labels = np.concatenate(labels).astype(np.int32)
  confidence = np.concatenate(confidence).astype(np.float32)
  agreement = float(np.mean(labels == np.concatenate(truth)))
  arrays = dict(labels=labels, confidence=confidence)
  if soft:
    arrays["probs"] = np.concatenate(soft_probs)
  with storage.open_file(out_path, "wb") as f:
    np.savez(f, **arrays)
  logging.info("Pseudo-labelled %d images with %s: %.2f%% agree with the true labels",
               len(labels), teacher_dir, 100 * agreement)
  return {"num_images": len(labels), "agreement_with_truth": agreement,
          "mean_confidence": float(confidence.mean())}
