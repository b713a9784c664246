"""Training objectives: one module per method, each defining `REQUIRES`, `LOSS_KEYS` and `loss_fn`.

Contract (every module `s4l_jax/objectives/<name>.py`; `config.objective` names it):

    REQUIRES = objectives.Requirements(streams=..., heads=..., aux=...)
             # or a function `loss_config -> Requirements` when the needs depend on `loss` keys
    LOSS_KEYS = {"threshold": objectives.LossKey(0.95, objectives.Range(0, 1)), ...}
             # every `loss` key the loss reads; {} when it reads none

    def loss_fn(params, batch_stats, batch, rng, *, model, loss_config, aux) -> LossOutput

    def init_state(config, rng) -> state                    # only with "state" in REQUIRES.aux
    def check(config)                                       # optional: cross-key checks

* `REQUIRES` declares what the loss reads (`requirements(module, loss_config)` resolves it);
  `check_config` (called by `validation.validate`) rejects a config that does not provide it,
  in one line, before anything is compiled:
  - `streams`: stream name -> copies per image its view must make (`None`: any view), e.g.
    `{"labeled": 1, "unlabeled": 4}`; each listed stream must be declared in `config.input`
    (`data/streams.py`: a section `input.<name>` with a `source`) with `batch_size > 0`.
    Streams not listed may still be present (and are then in `batch`); the loss decides
    whether it uses them.
  - `heads`: model outputs the loss reads (each must be in `config.model.heads`).
  - `aux`: what the train step must put in `aux` (see below).
  - `model_noise`: the loss passes `rng` to its train-mode forward
    (`objective_lib.apply_train(..., rng)`), so the model may have dropout / stochastic
    depth (`model.dropout > 0`, `model.stochastic_depth < 1`); others reject them.
* `LOSS_KEYS` is the one place a `loss` key's default lives: `LossKey(default, allowed)`, the
  default (`REQUIRED`: the config must set it, e.g. a size that depends on the dataset;
  `OPTIONAL`: may stay absent) and the allowed values (a `Range` of numbers, a tuple of
  choices, or None). `config_lib.base_config(objective=...)` fills the defaults into
  `config.loss` (so a resolved config shows every value and `--config.loss.KEY=...` can
  override it; configs set only what differs); `check_config` rejects a missing required
  key, a value outside its allowed set (naming key and range: FixMatch
  `loss.threshold=1.5`, SimCLR `loss.temperature=0`) and a key the objective does not
  declare, then calls the module's `check(config)` for checks across keys (e.g. a head's
  width against a `loss` key). `get` refuses a module without `LOSS_KEYS`, so a new method
  cannot skip its checks.
* `batch` holds the views the config asked for, already augmented, as float32 in [-1, 1], one
  entry per stream with `batch_size > 0`, by name:
  `batch["labeled"] = {"image": (B, [V,] H, W, C), "label": (B,) int32, ["rotation": (B, 4)]}`
  and, when the config has an unlabeled stream, `batch["unlabeled"] = {"image": ..., ...}`
  (its "label" is the true label, for logging only: never in a loss). A stream of source
  `pseudo` carries the teacher's labels (and `soft_label` (B, K) with soft pseudo-labels).
* `loss_config` is `config.loss` over the declared defaults (`loss_config(module, loss)`):
  every declared key but an absent `OPTIONAL` one is there, read as `loss_config.KEY`.
* `aux` holds what `REQUIRES.aux` asked for, filled by the train step:
  - "step": int32 scalar, the number of updates applied so far;
  - "progress": float32 scalar, step / the run's total steps, in [0, 1) (ramp-ups);
  - "ema_params": the Polyak-averaged parameters (needs `ema_halflife_epochs` or `ema_decay`
    > 0);
  - "teacher": `x (N, H, W, C) in [-1, 1] -> outputs dict`, a frozen network rebuilt from the
    export `config.frozen_teacher` (inference-mode BN, no gradient; its variables are
    replicated, never donated, trained or checkpointed);
  - "state": the objective's own state across steps (a pytree of arrays, e.g. SimCLR's memory
    queue), which the loss returns updated as `new_state` (same structure, shapes, dtypes; no
    gradient flows through it). The module's `init_state(config, rng)` gives its value at step
    0. It lives in `TrainState.objective_state` ({} for objectives without state): replicated
    over the mesh like the parameters, checkpointed with them (resume is bit-identical),
    never exported.
* `model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
  mutable=["batch_stats"])` returns `(outputs, {"batch_stats": new})` where `outputs` maps
  "pre_logits", each head name (e.g. "classes", "rotations") and, for an MLP head `h`, its
  endpoints `h_0` (input) .. `h_L` to float32 arrays (N, dim) (`s4l_jax/models/heads.py`).
* `loss_fn` returns `LossOutput(loss, batch_stats, metrics, state)`: the scalar loss, the
  model's updated `batch_stats`, `metrics` (a flat dict of scalar float32 arrays, means over
  the global batch) and, with "state" in `REQUIRES.aux`, the new state (else None).
* The L2 / weight decay is applied by the optimizer, not here.

Shared helpers live in `s4l_jax/objective_lib.py`; no objective imports another.
A new method is one new module here plus one config file (README "Adding a method").
"""
import dataclasses
import importlib
from typing import Any, Mapping, NamedTuple

import ml_collections

from s4l_jax.data import streams, views

AUX = ("step", "progress", "ema_params", "teacher", "state")


@dataclasses.dataclass(frozen=True)
class Requirements:
  """What an objective's loss reads; see the module docstring."""
  streams: Mapping[str, int | None] = dataclasses.field(default_factory=lambda: {"labeled": None})
  heads: tuple[str, ...] = ("classes",)
  aux: tuple[str, ...] = ()
  model_noise: bool = False

  def __post_init__(self):
    unknown = set(self.aux) - set(AUX)
    if unknown:
      raise ValueError(f"Requirements.aux has unknown entries {sorted(unknown)}; valid: {AUX}")


@dataclasses.dataclass(frozen=True)
class Range:
  """The allowed values of a numeric `loss` key: from `low` to `high` (None: unbounded), each
  end included unless open."""
  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False

  def __contains__(self, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      return False
    low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
    high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
    return low_ok and high_ok

  def __str__(self) -> str:
    low = "-inf" if self.low is None else f"{self.low:g}"
    high = "inf" if self.high is None else f"{self.high:g}"
    return (f"{'(' if self.low_open or self.low is None else '['}{low}, "
            f"{high}{')' if self.high_open or self.high is None else ']'}")


NON_NEGATIVE = Range(0)           # weights
POSITIVE = Range(0, low_open=True)  # temperatures, radii
AT_LEAST_ONE = Range(1)           # counts
BOOL = (False, True)              # switches


class _Marker:
  """A `LossKey.default` that is no value."""

  def __init__(self, name: str):
    self.name = name

  def __repr__(self) -> str:
    return self.name


REQUIRED = _Marker("REQUIRED")  # the config must set the key
OPTIONAL = _Marker("OPTIONAL")  # the key may stay absent (the loss reads it only when set)


@dataclasses.dataclass(frozen=True)
class LossKey:
  """A `loss` key an objective reads: its `default` (or `REQUIRED` / `OPTIONAL`) and its
  `allowed` values (a `Range`, a tuple of choices, or None: any)."""
  default: Any
  allowed: Range | tuple | None = None

  def check(self, key: str, value, objective: str):
    """ValueError (one line) unless `value` is allowed."""
    if self.allowed is None:
      return
    if isinstance(self.allowed, Range):
      ok, described = value in self.allowed, f"in {self.allowed}"
    else:
      ok = any(value == a and type(value) is type(a) for a in self.allowed)
      described = "one of " + ", ".join(map(str, self.allowed))
    if not ok:
      raise ValueError(f"loss.{key}={value!r} must be {described} (objective {objective})")


class LossOutput(NamedTuple):
  """What `loss_fn` returns (a pytree): the scalar `loss`, the model's updated `batch_stats`,
  `metrics` (flat dict of scalar float32 arrays) and the objective's new `state` (None
  without "state" in `REQUIRES.aux`)."""
  loss: Any
  batch_stats: Any
  metrics: dict
  state: Any = None


def get(name: str):
  """Returns the objective module `s4l_jax.objectives.<name>`."""
  try:
    module = importlib.import_module(f"s4l_jax.objectives.{name}")
  except ModuleNotFoundError as e:
    if e.name == f"s4l_jax.objectives.{name}":
      raise ValueError(f"Unknown objective {name!r}: no module s4l_jax/objectives/{name}.py") from None
    raise
  for attr in ("REQUIRES", "LOSS_KEYS", "loss_fn"):
    if not hasattr(module, attr):
      raise ValueError(f"Objective module s4l_jax/objectives/{name}.py defines no {attr}")
  return module


def loss_defaults(name: str) -> dict:
  """The declared defaults of objective `name`'s `loss` keys (not `REQUIRED` / `OPTIONAL`)."""
  return {key: spec.default for key, spec in get(name).LOSS_KEYS.items()
          if not isinstance(spec.default, _Marker)}


def loss_config(module, loss) -> ml_collections.ConfigDict:
  """`loss` (a config's `loss` section) over the declared defaults of objective `module`."""
  defaults = {key: spec.default for key, spec in module.LOSS_KEYS.items()
              if not isinstance(spec.default, _Marker)}
  return ml_collections.ConfigDict(dict(defaults, **dict(loss.items())))


def requirements(module, loss) -> Requirements:
  """The objective `module`'s `REQUIRES`, called with its `loss_config` when it is a function."""
  needs = module.REQUIRES
  return needs(loss_config(module, loss)) if callable(needs) else needs


def init_state(module, config, rng):
  """The objective's state at step 0: `module.init_state(config, rng)` when its requirements
  have "state", else {}."""
  return (module.init_state(config, rng)
          if "state" in requirements(module, config.loss).aux else {})


def check_config(config):
  """Raises ValueError (one line) unless `config` provides what its objective requires."""
  module = get(config.objective)
  name, needs = config.objective, requirements(module, config.loss)
  unknown = sorted(set(config.loss) - set(module.LOSS_KEYS))
  if unknown:
    raise ValueError(f"loss.{unknown[0]} is not a key of objective {name} (its keys: "
                     f"{', '.join(sorted(module.LOSS_KEYS)) or 'none'})")
  for key, spec in module.LOSS_KEYS.items():
    if key in config.loss:
      spec.check(key, config.loss[key], name)
    elif spec.default is REQUIRED:
      raise ValueError(f"objective {name} needs loss.{key}: set it in the config")
  declared = streams.declared(config.input)
  for stream, copies in needs.streams.items():
    if stream not in declared:
      raise ValueError(f"objective {name} reads a stream {stream!r}, which input does not "
                       f"declare (streams: {', '.join(declared)})")
    if not declared[stream].batch_size:
      raise ValueError(f"objective {name} needs the {stream} stream: set "
                       f"input.{stream}.batch_size > 0")
    view = config.input[stream].view
    if copies is not None and views.copies(view) != copies:
      raise ValueError(f"objective {name} needs input.{stream}.view making {copies} "
                       f"cop{'ies' if copies > 1 else 'y'} per image, got {view!r} "
                       f"({views.copies(view)})")
  missing = [h for h in needs.heads if h not in config.model.heads]
  if missing:
    raise ValueError(f"objective {name} reads model heads {missing}, missing from "
                     f"model.heads ({sorted(config.model.heads)})")
  noisy = config.model.get("dropout", 0.0) > 0 or config.model.get("stochastic_depth", 1.0) < 1
  if noisy and not needs.model_noise:
    raise ValueError(f"objective {name} gives the model no rng for its noise: set "
                     "model.dropout=0 and model.stochastic_depth=1, or use supervised")
  if "ema_params" in needs.aux and config.ema_halflife_epochs <= 0 and config.ema_decay <= 0:
    raise ValueError(f"objective {name} needs the EMA weights: set ema_halflife_epochs > 0 "
                     "or ema_decay > 0")
  if "state" in needs.aux and not hasattr(module, "init_state"):
    raise ValueError(f"objective {name} reads aux['state'] but defines no init_state")
  if "teacher" in needs.aux and not config.frozen_teacher:
    raise ValueError(f"objective {name} needs a frozen teacher: set frozen_teacher=DIR/export")
  if hasattr(module, "check"):
    module.check(config)
