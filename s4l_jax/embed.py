"""Features of a dataset split from an export's endpoint, to a `.npz`.

    python -m s4l_jax.embed --export_dir=WORKDIR/export --dataset=digits --split=test \\
        --endpoint=pre_logits --out=features.npz

writes `features` float32 (N, D), `labels` int32 (N,) and `endpoint` (its name), in the
split's order (`--split=validation` as `s4l_jax.evaluate`); the endpoints an export offers
are its export.json's `endpoints` (`s4l_jax.endpoints`). Needs no s4l_jax model code.
"""
import io
import sys

import jax.numpy as jnp
import numpy as np

from s4l_jax import evaluate, export as export_lib, storage


def embed_export(export_dir: str, dataset: str, split: str = "test", endpoint: str = "pre_logits",
                 data_dir: str = "", batch_size: int = 500, validation_spec: str = "",
                 labels_spec: str = "all") -> dict:
  """{"features" (N, D), "labels" (N,), "endpoint"} of the export on `dataset`'s `split`; the
  export's classes (if any) need not be the dataset's (e.g. ImageNet weights on a folder)."""
  batches, _ = evaluate.export_split_batches(export_dir, dataset, split, data_dir, batch_size,
                                             validation_spec, labels_spec, same_classes=False)
  fn, _ = export_lib.load_endpoints(export_dir, endpoint)
  features, labels = [], []
  for batch in batches:
    keep = np.asarray(batch["mask"], bool)
    features.append(np.asarray(fn(jnp.asarray(batch["image"])))[keep])
    labels.append(np.asarray(batch["label"], np.int32)[keep])
  return dict(features=np.concatenate(features).astype(np.float32),
              labels=np.concatenate(labels), endpoint=np.array(endpoint))


def write_npz(path: str, arrays: dict):
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  storage.write_bytes(path, buffer.getvalue())


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  try:
    arrays = embed_export(f.export_dir, f.dataset, f.split, f.endpoint, f.data_dir,
                          f.batch_size, f.validation, f.labels)
  except (ValueError, FileNotFoundError) as e:  # bad export, dataset, split or endpoint
    sys.exit(f"ERROR: {e}")
  write_npz(f.out, arrays)
  print(f"{f.out}: features {arrays['features'].shape} of endpoint {f.endpoint}, labels "
        f"{arrays['labels'].shape}")



def run():
  """The command line (`s4l-embed`, `python -m s4l_jax.embed`): its flags, then `main`;
  defined here, not at import, so that importing this module defines no flag."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("export_dir", None, "WORKDIR/export of a finished run.", required=True)
  flags.DEFINE_string("dataset", None, "digits | cifar10 | folder:PATH.", required=True)
  flags.DEFINE_string("split", "test", "Split to embed: test, validation (held out from train, "
                      "see --validation), or any split of the dataset (train).")
  flags.DEFINE_string("endpoint", "pre_logits", "An endpoint of the export (export.json's "
                      "`endpoints`): block1.., pre_logits, proj_k, classes, ...")
  flags.DEFINE_string("out", None, "Output .npz path.", required=True)
  flags.DEFINE_string("validation", "", "The run's input.validation ('' = the dataset's "
                      "default), for --split=validation.")
  flags.DEFINE_string("labels", "all", "The run's labels, for --split=validation.")
  flags.DEFINE_string("data_dir", "", "tfds data_dir, for tfds datasets.")
  flags.DEFINE_integer("batch_size", 500, "Images per call.")
  from s4l_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)


if __name__ == "__main__":
  run()
