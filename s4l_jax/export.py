"""A self-contained model export: `WORKDIR/export/`.

* `predict.jax`: `jax.export`-serialized `predict(images uint8 (B, S, S, C)) -> logits
  float32 (B, num_classes)`, batch dimension polymorphic, weights embedded, lowered for CPU,
  CUDA and TPU. Loading it needs jax only (`load_predict`). Absent from an export whose
  model has no classifier (`num_classes` 0: features only, e.g. a released checkpoint
  converted with `--head=projection|none`).
* `endpoints.jax`: `jax.export`-serialized `endpoints(variables, images uint8 (B, S, S, C))
  -> {endpoint: float32 (B, D)}` (`s4l_jax.endpoints`: pooled block outputs, pre_logits,
  projection-head endpoints, logits), the weights an argument (read from variables/, not a
  second copy); `load_endpoints` gives one endpoint's function.
* `export.json`: input size, preprocessing, class names, step, the run's metadata,
  `endpoints` ({name: D}) and `model`, the record `models.build_model` rebuilds the network
  from (`load_model`).
* `variables/`: the same weights as an Orbax checkpoint (`{"params", "batch_stats"}`), to
  initialise fine-tuning or pseudo-labelling.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from s4l_jax import distributed, endpoints as endpoints_lib, models, storage
from s4l_jax.data import views

PLATFORMS = ("cpu", "cuda", "tpu")
DESCRIPTION_FILE = "export.json"
PREDICT_FILE = "predict.jax"
ENDPOINTS_FILE = "endpoints.jax"
CLASSIFIER = "classes"  # the head predict.jax returns
PREPROCESSING = "x = uint8 image / 255 * 2 - 1 (range [-1, 1]); input already at input_size"


def to_model_input(images):
  """uint8 images -> float32 in [-1, 1], the value range every S4L model sees."""
  return views.to_pm1(images, max_value=255)


def make_predict(model, variables):
  def predict(images):
    return model.apply(variables, to_model_input(images), train=False)[CLASSIFIER]
  return predict


def make_endpoints(model):
  def endpoints(variables, images):
    return endpoints_lib.apply_endpoints(model, variables, to_model_input(images))
  return endpoints


def write_export(export_dir: str, model_config, variables, *, image_size: int, channels: int,
                 class_names, meta: dict):
  """Writes predict.jax (when the model has a classifier), endpoints.jax, export.json and
  variables/ (replacing a previous export).

  Every process of a job calls it: process 0 writes the plain files into `<export_dir>.tmp`,
  all take part in Orbax's save of variables/, then process 0 renames the whole.
  `model_config`: `config.model`; export.json records it resolved (`models.model_record`)
  and predict.jax traces the network built from that record, so the two cannot disagree.
  """
  variables = jax.device_get(variables)
  tmp = export_dir.rstrip("/") + ".tmp"
  if distributed.is_writer():
    record = models.model_record(model_config, len(class_names))
    model = models.build_model(record, len(class_names))
    storage.rmtree(tmp)
    storage.makedirs(tmp)
    spec = jax.ShapeDtypeStruct(
        jax.export.symbolic_shape(f"b, {image_size}, {image_size}, {channels}"), jnp.uint8)
    if CLASSIFIER in record["heads"]:
      exported = jax.export.export(jax.jit(make_predict(model, variables)),
                                   platforms=PLATFORMS)(spec)
      storage.write_bytes(storage.join(tmp, PREDICT_FILE), exported.serialize())
    weights = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), variables)
    exported = jax.export.export(jax.jit(make_endpoints(model)),
                                 platforms=PLATFORMS)(weights, spec)
    storage.write_bytes(storage.join(tmp, ENDPOINTS_FILE), exported.serialize())
    dims = endpoints_lib.endpoint_dims(model, variables, (image_size, image_size, channels))
    description = dict(meta, input_size=[image_size, image_size, channels],
                       input_dtype="uint8", preprocessing=PREPROCESSING,
                       class_names=list(class_names), num_classes=len(class_names),
                       platforms=list(PLATFORMS), endpoints=dims, model=record)
    storage.write_text(storage.join(tmp, DESCRIPTION_FILE), json.dumps(description, indent=2))
  distributed.barrier(f"export: {tmp} created")
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(storage.as_path(tmp) / "variables", variables)
    checkpointer.wait_until_finished()
  distributed.barrier(f"export: {tmp} written")
  if distributed.is_writer():
    storage.rmtree(export_dir)
    storage.rename(tmp, export_dir)
  distributed.barrier(f"export: {export_dir} in place")


# What a complete export holds (relative paths; predict.jax only with a classifier);
# variables/ is complete once Orbax has written its metadata, the last file of its save.
PARTS = (PREDICT_FILE, ENDPOINTS_FILE, DESCRIPTION_FILE, "variables/_CHECKPOINT_METADATA")


def missing_parts(export_dir: str) -> list[str]:
  """The entries of PARTS absent from `export_dir` ([] = complete)."""
  missing = [part for part in PARTS
             if not storage.exists(storage.join(export_dir, *part.split("/")))]
  if DESCRIPTION_FILE not in missing and not load_description(export_dir)["num_classes"]:
    return [part for part in missing if part != PREDICT_FILE]
  return missing


def load_description(export_dir: str) -> dict:
  path = storage.join(export_dir, DESCRIPTION_FILE)
  if not storage.exists(path):
    raise FileNotFoundError(f"No export at {export_dir!r} (missing export.json); an export is "
                            "written to WORKDIR/export at the end of every run")
  return json.loads(storage.read_text(path))


def load_predict(export_dir: str):
  """Returns (predict, description); `predict(uint8 images) -> logits` needs only jax.
  ValueError (one line) for an export without a classifier."""
  description = load_description(export_dir)
  if not description["num_classes"]:
    raise ValueError(f"{export_dir} has no classifier (no '{CLASSIFIER}' head: features only, "
                     "e.g. converted with --head=projection or none); read its features with "
                     "load_endpoints or python -m s4l_jax.embed")
  serialized = storage.read_bytes(storage.join(export_dir, PREDICT_FILE))
  exported = jax.export.deserialize(bytearray(serialized))
  return exported.call, description


def load_endpoints(export_dir: str, endpoint: str):
  """Returns (fn, description); `fn(uint8 images (B, S, S, C)) -> float32 (B, D)`, the
  export's `endpoint` (export.json's `endpoints`); needs jax and orbax only."""
  description = load_description(export_dir)
  if not storage.exists(storage.join(export_dir, ENDPOINTS_FILE)):
    raise ValueError(f"{export_dir} predates endpoints (no {ENDPOINTS_FILE}); re-export it by "
                     "re-running its training command with a new --workdir")
  endpoints_lib.check_endpoint(endpoint, list(description["endpoints"]), export_dir)
  exported = jax.export.deserialize(
      bytearray(storage.read_bytes(storage.join(export_dir, ENDPOINTS_FILE))))
  variables = load_variables(export_dir)
  return (lambda images: exported.call(variables, images)[endpoint]), description


def load_variables(export_dir: str) -> dict:
  """The exported `{"params", "batch_stats"}` as numpy arrays."""
  load_description(export_dir)
  path = storage.as_path(export_dir) / "variables"
  with ocp.StandardCheckpointer() as checkpointer:
    return jax.tree.map(np.asarray, checkpointer.restore(path))


def load_model(export_dir: str):
  """Returns (model, variables, description): the exported network rebuilt as a flax module."""
  description = load_description(export_dir)
  if "model" not in description:
    raise ValueError(f"{export_dir} predates self-describing exports (no 'model' in "
                     f"{DESCRIPTION_FILE}); re-export it by re-running its training command "
                     "with a new --workdir")
  model = models.build_model(description["model"], description["num_classes"])
  return model, load_variables(export_dir), description


def describe_classes(names) -> str:
  shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
  return f"{len(names)} class{'es' if len(names) != 1 else ''} ({shown})"


def check_classes(export_dir: str, description: dict, dataset: str, names,
                  role: str = "export"):
  """Rejects an export whose classes (names, in label order) are not `dataset`'s `names`."""
  theirs = list(description.get("class_names", []))
  if not theirs:
    raise ValueError(f"{role} {export_dir} has no classifier (features only, e.g. converted "
                     "with --head=projection or none): it predicts no classes")
  if theirs != list(names):
    raise ValueError(f"{role} {export_dir} predicts {describe_classes(theirs)} but {dataset} "
                     f"has {describe_classes(list(names))}; they must be the same classes in "
                     "the same order")
