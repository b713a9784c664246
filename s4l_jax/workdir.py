"""One workdir, one run: an exclusive lock, and the config the workdir's run was started with.

`lock(workdir)` stops a second job on the same workdir at once (the first keeps running;
the processes of one multi-process job share the lock);
`check_config(config, workdir)` stops a resume whose config differs from the one that wrote
the workdir's checkpoints or results, except in the keys of `MAY_CHANGE`, unless
`allow_config_change` is set.
"""
import contextlib
import datetime
import fcntl
import json
import os
import socket

from absl import logging

from s4l_jax import budget, config_lib, distributed, storage

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
# The keys that may change when a run resumes (dotted, flattened; a top-level name covers its
# whole section): logging, evaluation and checkpoint cadence, which leave the model and its
# data unchanged, and the recovery from a divergence (README "Resuming"): the learning rate
# and its schedule, the run's length, the checkpoint to resume from.
MAY_CHANGE = frozenset((
    "log_every_steps", "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints",
    "input.eval_batch_size", "input.eval_crop", "evals", "median_of_last", "strict_data",
    "data_dir",
    "allow_config_change", "lr", *budget.DURATION_KEYS, "resume_step", "divergence_factor"))
_PATH_KEYS = ("teacher", "init_from", "pseudo_labels")
_PATH_PREFIXES = {"dataset": "folder:", "labels": "file:"}


@contextlib.contextmanager
def lock(workdir: str):
  """Holds an exclusive lock on WORKDIR/.lock while running (local paths; none for URLs).

  Process 0 of a job takes it for the whole job, so the processes of one job share it; when
  another job holds it, every process raises a one-line ValueError naming the holder's host
  and pid. The lock goes with the process (flock), so a killed run leaves nothing stale.
  """
  if storage.exists(workdir) and not storage.isdir(workdir):
    raise ValueError(f"--workdir={workdir} is a file, not a directory: pass a directory path")
  if storage.is_remote(workdir):
    yield
    return
  with contextlib.ExitStack() as held:
    holder = _hold(workdir, held) if distributed.is_writer() else None
    if distributed.agree(holder is not None):
      holder = holder or _read_holder(workdir)
      raise ValueError(f"--workdir={workdir} is in use by {holder}: one workdir takes one run "
                       "at a time; wait for it, stop it, or use another --workdir")
    yield


def _hold(workdir: str, held: contextlib.ExitStack) -> str | None:
  """Locks WORKDIR/.lock until `held` closes and records this process in it; or returns
  the current holder ('pid 12 on host (since ...)') if another process has it."""
  os.makedirs(workdir, exist_ok=True)
  f = held.enter_context(open(os.path.join(workdir, LOCK_FILE), "a+"))
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    return _read_holder(workdir)
  held.callback(fcntl.flock, f, fcntl.LOCK_UN)
  f.seek(0)
  f.truncate()
  started = datetime.datetime.now().isoformat(timespec="seconds")
  f.write(f"pid {os.getpid()} on {socket.gethostname()} (since {started})")
  f.flush()
  return None


def _read_holder(workdir: str) -> str:
  try:
    with open(os.path.join(workdir, LOCK_FILE)) as f:
      return f.read().strip() or "another process"
  except OSError:
    return "another process"


def flat_config(config, stage_root: str | None = None) -> dict:
  """{'lr.base': 0.1, ...}: the config's JSON leaves, paths made absolute and real; in a
  pipeline (`stage_root`: its workdir) an export path STAGE_ROOT/<stage>/export, as older
  versions recorded it, is the `@<stage>` reference it was resolved from."""
  flat = {}

  def visit(prefix, value):
    if isinstance(value, dict):
      for key, child in value.items():
        visit(f"{prefix}{key}.", child)
    else:
      flat[prefix[:-1]] = value
  visit("", config if isinstance(config, dict) else json.loads(config.to_json_best_effort()))
  for key in _PATH_KEYS:
    if flat.get(key) and not flat[key].startswith("@"):
      flat[key] = _real(flat[key])
  for key in config_lib.EXPORT_PATH_KEYS:
    if stage_root is not None and flat.get(key) and not flat[key].startswith("@"):
      flat[key] = _as_stage_ref(flat[key], stage_root)
  for key, prefix in _PATH_PREFIXES.items():
    if isinstance(flat.get(key), str) and flat[key].startswith(prefix):
      flat[key] = prefix + _real(flat[key][len(prefix):])
  if flat.get("teacher"):  # the pseudo-label file is then written from the teacher
    flat.pop("pseudo_labels", None)
  for name in ("labeled", "unlabeled"):  # recorded before streams declared their source
    if f"input.{name}.batch_size" in flat:
      flat.setdefault(f"input.{name}.source", name)
  return flat


def _as_stage_ref(path: str, stage_root: str) -> str:
  """'@<stage>' for the export path STAGE_ROOT/<stage>/export, else the real path."""
  parent, leaf = os.path.split(_real(path))
  if leaf == "export" and os.path.dirname(parent) == _real(stage_root):
    return "@" + os.path.basename(parent)
  return _real(path)


def _real(path: str) -> str:
  """`os.path.realpath` for local paths; URLs unchanged."""
  return path if storage.is_remote(path) else os.path.realpath(path)


def config_differences(old: dict, new: dict) -> list[str]:
  """Sorted 'key: old -> new' for every key outside MAY_CHANGE that differs."""
  keys = sorted(k for k in old.keys() | new.keys()
                if k not in MAY_CHANGE and k.split(".", 1)[0] not in MAY_CHANGE)
  missing = "(absent)"
  return [f"{k}: {old.get(k, missing)!r} -> {new.get(k, missing)!r}" for k in keys
          if old.get(k, missing) != new.get(k, missing)]


def has_run_state(workdir: str) -> bool:
  """True once the workdir holds training progress: a checkpoint, results or pseudo-labels."""
  steps = any(n.isdigit() for n in storage.listdir(storage.join(workdir, "checkpoints")))
  return steps or any(storage.exists(storage.join(workdir, name))
                      for name in ("results.json", "pseudo_labels.npz"))


def check_config(config, workdir: str, stage_root: str | None = None):
  """Raises ValueError (one line) if `config` differs from the one WORKDIR's run started with
  (`stage_root`: the pipeline's workdir, for a stage; see `flat_config`).

  With `config.allow_config_change` it warns instead and keeps the old config as
  `config.before_<time>.json` beside the new one.
  """
  path = storage.join(workdir, CONFIG_FILE)
  if not storage.exists(path) or not has_run_state(workdir):
    return
  old = json.loads(storage.read_text(path))
  diffs = config_differences(flat_config(old, stage_root), flat_config(config, stage_root))
  if not diffs:
    return
  shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
  if not config.get("allow_config_change", False):
    raise ValueError(
        f"{workdir} was started with another config ({shown}): re-run with the config that "
        "started it, use a new --workdir, or pass --config.allow_config_change=true to "
        "continue under the new one")
  if distributed.is_writer():
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    kept = storage.join(workdir, f"config.before_{stamp}.json")
    storage.rename(path, kept)
    logging.warning("allow_config_change: continuing %s under a changed config (%s); the old "
                    "one is kept as %s", workdir, shown, kept)
