"""Trains one row of the S4L tables.

    python main.py --config=configs/supervised.py:dataset=digits --workdir=/tmp/sup

`--config` takes `file.py[:k=v,...]` plus `--config.key=value` overrides (a misspelt key
fails before any work). Re-running the same command resumes from the latest checkpoint.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:args].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumes if it has "
                               "checkpoints).", required=True)
_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() "
                                 "(multi-host TPU pods; launch/ sets it).")
flags.mark_flags_as_required(["config"])


def _parse_flags(argv):
  """absl's flag parsing; a `--config.KEY` override of a key the config lacks fails in one line."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as e:  # ml_collections raises these for unknown keys
    while e.args and isinstance(e.args[0], BaseException):
      e = e.args[0]
    detail = str(e.args[0] if e.args else e).replace("\n", " ")
    sys.exit(f"FATAL Flags parsing error: unknown config key {detail} (misspelt --config.* "
             "override?)")


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  from s4l_jax import runner  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  logging.info("Config:\n%s", config)
  try:
    results = runner.run(config, _WORKDIR.value)
  except (ValueError, FileNotFoundError, FloatingPointError) as e:
    # Bad config, missing or unreadable data, a diverged loss: one line, no traceback.
    logging.debug("Stopped by:", exc_info=True)
    sys.exit(f"ERROR: {e}")
  if jax.process_index() == 0:
    print(json.dumps({k: results[k] for k in ("method", "dataset", "labels", "steps", "top1",
                                              "top5", "wall_s")}))
    print(f"top-1 {100 * results['top1']:.2f}%  top-5 {100 * results['top5']:.2f}%  "
          f"({_WORKDIR.value}/results.json)")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
