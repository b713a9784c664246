"""Training objectives: one module per method, each defining `loss_fn`.

Contract (every module `s4l_jax/objectives/<name>.py`):

    def loss_fn(params, batch_stats, batch, rng, *, model, config)
        -> (loss, (new_batch_stats, metrics))

* `batch` holds the views the config asked for, already augmented, as float32 in [-1, 1]:
  `batch["labeled"] = {"image": (B, [V,] H, W, C), "label": (B,) int32, ["rotation": (B, 4)]}`
  and, when the config has an unlabeled stream, `batch["unlabeled"] = {"image": ..., ...}`.
* `model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
  mutable=["batch_stats"])` returns `(outputs, {"batch_stats": new})` where `outputs` maps
  "pre_logits" and each head name (e.g. "classes", "rotations") to float32 arrays (N, dim).
* `metrics` is a flat dict of scalar float32 arrays (means over the global batch).
* The L2 / weight decay is applied by the optimizer, not here.

A new method is one new module here plus one config file; `config.objective` names it.
"""
import importlib


def get(name: str):
  """Returns the objective module `s4l_jax.objectives.<name>`."""
  try:
    return importlib.import_module(f"s4l_jax.objectives.{name}")
  except ModuleNotFoundError as e:
    if e.name == f"s4l_jax.objectives.{name}":
      raise ValueError(f"Unknown objective {name!r}: no module s4l_jax/objectives/{name}.py") from None
    raise
