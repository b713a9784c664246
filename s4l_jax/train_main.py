"""Trains one row of the papers' tables: `s4l-train`, `python -m s4l_jax.train_main`, main.py.

    s4l-train --config=supervised:dataset=digits --workdir=/tmp/sup
    python main.py --config=configs/supervised.py:dataset=digits --workdir=/tmp/sup

`--config` takes a packaged config's name or a config file, `[:k=v,...]`, plus
`--config.key=value` overrides (a misspelt key fails before any work). Re-running the same
command resumes from the latest checkpoint.
"""
import errno
import json
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from s4l_jax import cpu_flags  # pylint: disable=g-import-not-at-top,wrong-import-position
cpu_flags.apply()  # before jax starts: XLA reads XLA_FLAGS once

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

from s4l_jax import cli, config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:args].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumes if it has "
                               "checkpoints).", required=True)
_DISTRIBUTED = flags.DEFINE_bool(
    "jax_distributed", False, "Call jax.distributed.initialize(): with no other flag, jax "
    "detects the cluster (TPU pods, SLURM, Open MPI, Kubernetes; launch/ sets it); elsewhere "
    "also pass --coordinator_address, --num_processes and --process_id.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0's "
                                   "coordinator (with --jax_distributed).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes of the job "
                                      "(with --jax_distributed).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 to "
                                   "num_processes - 1 (with --jax_distributed).")
_HEARTBEAT = flags.DEFINE_integer("heartbeat_timeout_s", 100, "With --jax_distributed: seconds "
                                  "without news from a process before the others fail.")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache_dir", "", "Persistent XLA compilation cache: '' = "
    "$JAX_COMPILATION_CACHE_DIR or ~/.cache/s4l_jax/xla, 'off' = none, else a directory "
    "(re-runs and later stages reuse compiled steps).")
_CHECK_ONLY = flags.DEFINE_bool(
    "check_only", False, "Only check the config as a run does before creating anything (keys, "
    "values and ranges, loss keys, stage references; not the data, nor --workdir) and exit: "
    "one line, exit status 0 if it would start (launch/run.sh runs this locally).")
flags.mark_flags_as_required(["config"])


def _root_cause(error: BaseException) -> BaseException:
  """The first error of a chain of re-raises (absl and ml_collections wrap config errors)."""
  while True:
    cause = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    if cause is None:
      return error
    error = cause


def _parse_flags(argv):
  """absl's flag parsing; a bad `--config` file, `:arg` or `--config.KEY` fails in one line."""
  try:
    argv = cli.parse_flags(argv, flags.FLAGS)  # --help exits 0
  except (AttributeError, KeyError) as e:  # ml_collections raises these for unknown keys
    while e.args and isinstance(e.args[0], BaseException):
      e = e.args[0]
    detail = str(e.args[0] if e.args else e).replace("\n", " ")
    sys.exit(f"FATAL Flags parsing error: unknown config key {detail} (misspelt --config.* "
             "override?)")
  except (flags.Error, OSError) as e:
    # An error in get_config (an unknown `:arg` or dataset) arrives as a traceback: take its cause.
    message = str(e) if "\n" not in str(e) else " ".join(str(_root_cause(e)).split())
    sys.exit(f"FATAL Flags parsing error: {message}")
  path = config_flags.get_config_filename(flags.FLAGS["config"]).split(":", 1)[0]
  if not os.path.isfile(path):
    sys.exit(f"FATAL Flags parsing error: no config file {path!r} (--config=NAME[:args] with "
             f"NAME one of {', '.join(config_lib.config_names())}, or FILE.py[:args])")
  return argv


def resolve_config_names(argv: list[str]) -> list[str]:
  """`--config=NAME[:args]` of a packaged config -> `--config=<its path>[:args]`; other
  arguments (and config files given by path) unchanged."""
  def resolve(arg):
    if not arg.startswith("--config="):
      return arg
    name, sep, args = arg[len("--config="):].partition(":")
    return f"--config={config_lib.config_path(name)}{sep}{args}" if name else arg
  return [resolve(arg) for arg in argv]


def distributed_args(enabled: bool, coordinator_address, num_processes, process_id) -> dict:
  """Keyword arguments of jax.distributed.initialize: {} (auto-detection) or all three.

  Raises ValueError (one line) when only some of the three are given, or any without
  `--jax_distributed`.
  """
  given = dict(coordinator_address=coordinator_address, num_processes=num_processes,
               process_id=process_id)
  named = [f"--{k}" for k, v in given.items() if v is not None]
  if named and not enabled:
    raise ValueError(f"{', '.join(named)} need --jax_distributed")
  if named and len(named) < len(given):
    missing = [f"--{k}" for k, v in given.items() if v is None]
    raise ValueError(f"--jax_distributed with {', '.join(named)} also needs "
                     f"{', '.join(missing)} (give all three, or none for auto-detection)")
  if named and not 0 <= process_id < num_processes:
    raise ValueError(f"--process_id={process_id} is not in 0..{num_processes - 1} "
                     f"(--num_processes={num_processes})")
  return given if named else {}


# The errors that mean the workdir cannot be written: read-only, full, over quota, denied.
_STORAGE_ERRNOS = (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM)
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")  # in TensorStore's errors (via Orbax)
_QUOTED_PATH = re.compile(r'"((?:/|[a-z]+://)[^"]+)"')  # a local path or a URL, quoted


def storage_failure(error: BaseException, workdir: str) -> str | None:
  """'<reason>: <path>' when `error` is a failure to write the workdir (an OSError other than
  a missing file, or Orbax's ValueError carrying TensorStore's `os_error_code` of a full or
  read-only disk); else None."""
  if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):
    return f"{error.strerror or error}: {error.filename or workdir}"
  code = _OS_ERROR_CODE.search(str(error))
  if not isinstance(error, ValueError) or not code or int(code[1]) not in _STORAGE_ERRNOS:
    return None
  paths = _QUOTED_PATH.findall(str(error))  # the first: the checkpoint being written
  path = paths[0].split(".orbax-checkpoint-tmp")[0] if paths else workdir
  return f"{os.strerror(int(code[1]))}: {path}"


def check_only(config) -> str:
  """`--check_only`: 'config OK: ...' or, for a config that cannot train, 'ERROR: ...'."""
  from s4l_jax import runner  # pylint: disable=g-import-not-at-top
  try:
    runner.check(config)
  except ValueError as e:
    sys.exit(f"ERROR: {e}")
  if "stages" in config:
    stages = runner.selected_stages(config)
    return (f"config OK: {config.get('method', 'pipeline')} on "
            f"{config.stages[stages[0]].dataset}, stages {', '.join(stages)}")
  return f"config OK: {config.objective} on {config.dataset}"


def main(argv):
  del argv
  from s4l_jax import logs  # pylint: disable=g-import-not-at-top
  logs.configure()  # third-party INFO (Orbax, JAX, TF) only with --verbosity=1
  if _CHECK_ONLY.value:
    print(check_only(_CONFIG.value))
    return
  import jax  # pylint: disable=g-import-not-at-top
  from s4l_jax import compilation_cache  # pylint: disable=g-import-not-at-top
  compilation_cache.configure(_COMPILATION_CACHE.value)
  try:
    cluster = distributed_args(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value)
  except ValueError as e:
    sys.exit(f"FATAL Flags parsing error: {e}")
  if _DISTRIBUTED.value:
    jax.distributed.initialize(**cluster, heartbeat_timeout_seconds=_HEARTBEAT.value)
  from s4l_jax import runner, storage  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1 and not storage.is_remote(_WORKDIR.value):
    # Each process's own log, side by side in the shared workdir (stderr keeps it too).
    logs.log_to_file(os.path.join(_WORKDIR.value, "logs", f"process_{jax.process_index()}.log"))
  config = _CONFIG.value
  logging.debug("Config:\n%s", config)  # each run logs a one-line summary; all of it at -v 1
  if "stages" in config:
    logging.info("%s: stages %s in %s", config.get("method", "pipeline"),
                 ", ".join(runner.stage_order(config.stages)) if config.run_stages == "all"
                 else config.run_stages, _WORKDIR.value)
  try:
    results = runner.run(config, _WORKDIR.value)
  except (ValueError, FloatingPointError, OSError) as e:
    # Bad config, missing or unreadable data, a diverged loss, a read-only or full workdir:
    # one line, no traceback.
    logging.debug("Stopped by:", exc_info=True)
    failure = storage_failure(e, _WORKDIR.value)
    if failure:  # which path, and what to do
      sys.exit(f"ERROR: {failure}: the workdir must be writable, with free space; fix that "
               "(or pass another --workdir) and re-run the same command to resume "
               "(--verbosity=1 shows the traceback)")
    sys.exit(f"ERROR: {e}")
  finally:
    logs.end_progress()  # a progress line rewritten in place gets its newline first
  if jax.process_index() == 0:
    print(json.dumps({k: results[k] for k in ("method", "dataset", "labels", "steps", "top1",
                                              "top5", "wall_s")}))
    print(f"top-1 {100 * results['top1']:.2f}%  top-5 {100 * results['top5']:.2f}%  "
          f"({_WORKDIR.value}/results.json)")


def run():
  """The command: `s4l-train` (console script), `python -m s4l_jax.train_main`, main.py."""
  app.run(main, argv=resolve_config_names(sys.argv), flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
