"""Top-1 / top-5 evaluation, in the trainer and as a CLI over an export.

    python -m s4l_jax.evaluate --export_dir=WORKDIR/export --dataset=digits [--split=test]
        [--rotation_average] [--split=validation [--validation=10pct] [--labels=file:PATH]]

prints `{"top1": ..., "top5": ..., "count": ...}` computed with the exported `predict`
(jax only, no s4l_jax model code), which matches `WORKDIR/results.json` (`top1`, or
`validation_top1` with `--split=validation`: the run's held-out train images, carved by
`subsets.split_train` from `--validation`, default the dataset's, and `--labels`, which
matters for `file:PATH` lists only); with
`--rotation_average` also `rot_avg_top1` / `rot_avg_top5`, the accuracy of the mean logits
over the 4 rotations (the S4L-Rotation evaluation).
"""
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from s4l_jax import export as export_lib


def topk_hits(logits, labels, k: int):
  """(N,) float32: 1 where the label is among the k largest logits, pessimistically.

  The label's rank is the number of *other* classes whose logit is >= the label's, so ties
  count against it (constant logits score 0 at top-1 unless k covers every class), and a
  row with any NaN or +-inf logit is a miss.
  """
  label_logit = jnp.take_along_axis(logits, labels[:, None], axis=1)
  others = jnp.arange(logits.shape[1])[None, :] != labels[:, None]
  rank = jnp.sum((logits >= label_logit) & others, axis=1)
  finite = jnp.all(jnp.isfinite(logits), axis=1)
  return ((rank < k) & finite).astype(jnp.float32)


def masked_sums(logits, labels, mask) -> dict:
  mask = mask.astype(jnp.float32)
  return {"top1": jnp.sum(topk_hits(logits, labels, 1) * mask),
          "top5": jnp.sum(topk_hits(logits, labels, min(5, logits.shape[1])) * mask),
          "count": jnp.sum(mask)}


def make_eval_step(model, rotation_average: bool = False):
  """`(variables, batch uint8 {image,label,mask}) -> sums` on the central, unrotated view.

  With `rotation_average`, also scores the mean logits over the 4 rotations (`rot_avg_*`).
  """
  def eval_step(variables, batch):
    x = export_lib.to_model_input(batch["image"])
    logits = model.apply(variables, x, train=False)["classes"]
    sums = masked_sums(logits, batch["label"], batch["mask"])
    if rotation_average:
      sums.update(rotation_averaged_sums(
          lambda r: model.apply(variables, r, train=False)["classes"], x, logits,
          batch["label"], batch["mask"]))
    return sums
  return eval_step


def rotation_averaged_sums(logits_fn, images, logits, labels, mask) -> dict:
  """Hits of the mean of `logits` and `logits_fn` of the 3 other rot90s of square NHWC images."""
  avg = sum((logits_fn(jnp.rot90(images, k, axes=(1, 2))) for k in range(1, 4)), logits) / 4
  sums = masked_sums(avg, labels, mask)
  return {"rot_avg_top1": sums["top1"], "rot_avg_top5": sums["top5"]}


def accumulate(step_fn, batches) -> dict:
  """Runs `step_fn` over batches and turns the summed hits into accuracies."""
  totals = None
  for batch in batches:
    sums = jax.device_get(step_fn(batch))
    totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
  count = float(totals.pop("count"))
  return {k: float(v) / count for k, v in totals.items()} | {"count": int(count)}


def export_split_batches(export_dir: str, dataset: str, split: str = "test", data_dir: str = "",
                         batch_size: int = 500, validation_spec: str = "",
                         labels_spec: str = "all", same_classes: bool = True):
  """(batches {image, label, mask} of `dataset`'s `split` at the export's input size through
  the run's eval crop (export.json's `eval_crop`), the export's description); ValueError
  first if their classes differ (`same_classes`; False for features, which any export gives
  for any dataset).

  `split="validation"`: the train images that `input.validation=validation_spec` ('' = the
  dataset's default) and `labels=labels_spec` hold out (`subsets.split_train`).
  """
  from s4l_jax.data import datasets, pipeline, sources, subsets, views  # pylint: disable=g-import-not-at-top
  names = sources.class_names(dataset, data_dir or None)
  description = export_lib.load_description(export_dir)
  if same_classes:
    export_lib.check_classes(export_dir, description, dataset, names)
  data = sources.load_split(dataset, "train" if split == "validation" else split,
                            image_size=description["input_size"][0], data_dir=data_dir or None)
  indices = None
  if split == "validation":
    spec = validation_spec or datasets.get(dataset).validation
    indices = subsets.split_train(data.labels, labels_spec=labels_spec, validation_spec=spec,
                                  seed=0, num_classes=len(names),
                                  filenames=data.filenames, dataset=dataset,
                                  class_names=names).validation
    if not indices.size:
      raise ValueError(f"--split=validation with --validation={spec!r}: no validation images")
  eval_crop = description.get("eval_crop")  # absent (older exports): the stored images
  if eval_crop:
    eval_crop = views.make_eval_crop_fn(eval_crop, image_size=description["input_size"][0])
  return (pipeline.masked_batches(data, batch_size, indices=indices, eval_crop=eval_crop),
          description)


def evaluate_export(export_dir: str, dataset: str, split: str = "test", data_dir: str = "",
                    batch_size: int = 500, rotation_average: bool = False,
                    validation_spec: str = "", labels_spec: str = "all") -> dict:
  """Scores the export on `dataset`'s `split` (`export_split_batches`)."""
  batches, _ = export_split_batches(export_dir, dataset, split, data_dir, batch_size,
                                    validation_spec, labels_spec)
  predict, _ = export_lib.load_predict(export_dir)

  def step(batch):
    images, labels, mask = (jnp.asarray(batch[k]) for k in ("image", "label", "mask"))
    logits = predict(images)
    sums = masked_sums(logits, labels, mask)
    if rotation_average:
      sums.update(rotation_averaged_sums(predict, images, logits, labels, mask))
    return sums

  return accumulate(step, batches)


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  try:
    results = evaluate_export(f.export_dir, f.dataset, f.split, f.data_dir, f.batch_size,
                              f.rotation_average, f.validation, f.labels)
  except (ValueError, FileNotFoundError) as e:  # bad export, dataset or split: one line
    sys.exit(f"ERROR: {e}")
  print(json.dumps(results))



def run():
  """The command line (`s4l-evaluate`, `python -m s4l_jax.evaluate`): its flags, then `main`;
  defined here, not at import, so that importing this module defines no flag."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("export_dir", None, "WORKDIR/export of a finished run.", required=True)
  flags.DEFINE_string("dataset", None, "digits | cifar10 | folder:PATH.", required=True)
  flags.DEFINE_string("split", "test", "Split to score: test, validation (held out from "
                      "train, see --validation), or any split of the dataset.")
  flags.DEFINE_string("validation", "", "The run's input.validation ('' = the dataset's "
                      "default), for --split=validation.")
  flags.DEFINE_string("labels", "all", "The run's labels, for --split=validation: only a "
                      "file:PATH list changes the validation images.")
  flags.DEFINE_string("data_dir", "", "tfds data_dir, for tfds datasets.")
  flags.DEFINE_integer("batch_size", 500, "Images per predict call.")
  flags.DEFINE_bool("rotation_average", False, "Also score the mean logits over the 4 "
                    "rotations (rot_avg_top1, rot_avg_top5).")
  from s4l_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)


if __name__ == "__main__":
  run()
