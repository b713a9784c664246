"""The first screen of `python main.py`: our lines at the default verbosity, all at --verbosity=1.

Real main.py runs (2 fake CPU devices, tiny model, as tests/test_reliability.py) plus unit tests
of s4l_jax.logs' filter.
"""
import io
import json
import logging
import os
import re
import subprocess
import sys

import pytest

from s4l_jax import logs
from testing_utils import ROOT

ENV = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
           JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3",
           PYTHONUNBUFFERED="1")


def _main(workdir, steps, *overrides):
  cmd = [sys.executable, "main.py", "--config=configs/supervised.py:dataset=digits",
         f"--workdir={workdir}", f"--config.total_steps={steps}", "--config.model.depth=10",
         "--config.model.width=1", "--config.input.image_size=8",
         "--config.input.labeled.batch_size=16", *overrides]
  proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.mark.slow
def test_default_verbosity_is_a_short_readable_screen(tmp_path):
  steps = 16
  proc = _main(tmp_path, steps, "--config.log_every_steps=4", "--config.checkpoint_every_steps=4",
               "--config.eval_every_steps=8")
  lines = proc.stderr.strip().splitlines()
  text = proc.stderr
  # Summary (one line), the first step's compile, a progress line per interval, evals, saves.
  assert re.search(r"\] supervised on digits; labels 10pct \(130 labeled, 10 classes\); "
                   r"wrn-10-1 8px; 16 steps, batch 16 labeled", text), text
  assert re.search(r"first step \(compiling\) took \d+\.\ds; progress every 4 steps", text)
  for step in (4, 8, 12, 16):
    assert re.search(rf"\] step {step}/{steps} loss \d+\.\d{{4}}  \d+\.\d img/s  ETA \d+m\d\ds$",
                     text, re.MULTILINE), text
    assert re.search(rf"Saving checkpoint at step {step}$", text, re.MULTILINE), text
  for name, step in (("validation", 8), ("validation", 16), ("test", 16)):
    assert re.search(rf"\] eval {name} at step {step}/{steps}: top-1 \d+\.\d\d%  "
                     r"top-5 \d+\.\d\d%$", text, re.MULTILINE), text
  assert "eval test at step 8/" not in text  # periodic evals never look at the test split
  # No third-party INFO, no config dump, no per-scalar dumps, nothing long.
  assert "CheckpointManager" not in text and "orbax" not in text.lower(), text[:3000]
  assert "Config:" not in text and not re.search(r"\] \[\d+\] ", text), text
  assert len(lines) <= 14, text  # 1 summary + 1 compile + 4 steps + 4 saves + 3 evals
  assert max(len(line) for line in lines) < 300, max(lines, key=len)
  assert "top-1" in proc.stdout
  # images/s in results.json excludes the first step's compilation: much faster than the
  # wall-clock rate, which is mostly compilation for a run this short.
  with open(os.path.join(tmp_path, "results.json")) as f:
    results = json.load(f)
  wall_rate = steps * 16 / results["wall_s"]
  assert results["images_per_s"] > 2 * wall_rate, (results["images_per_s"], wall_rate)


@pytest.mark.slow
def test_first_progress_line_has_no_eta_and_verbosity_1_shows_everything(tmp_path):
  proc = _main(tmp_path, 3, "--config.log_every_steps=1", "--config.eval_every_steps=0",
               "--verbosity=1")
  text = proc.stderr
  # Step 1 is mostly compilation: no speed, no ETA from it.
  assert re.search(r"\] step 1/3 loss \d+\.\d{4}  first step \d+\.\ds \(compiling\)  ETA \?$",
                   text, re.MULTILINE), text[-3000:]
  assert re.search(r"\] step 3/3 loss \d+\.\d{4}  \d+\.\d img/s  ETA 0m00s$", text, re.MULTILINE)
  assert "CheckpointManager created" in text  # Orbax's INFO
  assert "Config:\n" in text and "allow_config_change" in text  # the full config dump
  assert re.search(r"\] \[3\] .*batch_stats_norm=", text)  # every scalar
  assert re.search(r"\] \[3\] test/top1=", text)


def _record(level, pathname, msg="hello", **extra):
  record = logging.LogRecord("x", level, pathname, 1, msg, (), None)
  record.__dict__.update(extra)
  return record


def test_quiet_filter_keeps_own_info_and_everyones_warnings():
  own = os.path.join(os.path.dirname(logs.__file__), "train.py")
  other = os.path.join(sys.prefix, "lib", "site-packages", "orbax", "checkpoint_manager.py")
  f = logs.QuietFilter(stream=io.StringIO(), in_place=False)
  assert f.filter(_record(logging.INFO, own))
  assert not f.filter(_record(logging.INFO, other))
  assert not f.filter(_record(logging.DEBUG, own))
  assert f.filter(_record(logging.WARNING, other))
  assert f.filter(_record(logging.ERROR, other))
  assert not f.filter(_record(logging.INFO, os.path.dirname(logs.__file__) + "_other/x.py"))
  # Not a terminal: progress lines go out as ordinary log lines.
  assert f.filter(_record(logging.INFO, own, "step 1/2", **{logs.PROGRESS: True}))


def test_quiet_filter_drops_orbax_tracebacks_of_failed_background_saves():
  """A full disk: each of Orbax's save threads logs the error with a traceback; the main
  thread gets the same error and main.py reports it in one line."""
  orbax = os.path.join(sys.prefix, "lib", "site-packages", "orbax", "checkpoint", "future.py")
  f = logs.QuietFilter(stream=io.StringIO(), in_place=False)
  try:
    raise ValueError("RESOURCE_EXHAUSTED: No space left on device")
  except ValueError:
    traceback = sys.exc_info()
  failed = _record(logging.ERROR, orbax)
  failed.exc_info = traceback
  assert not f.filter(failed)
  assert f.filter(_record(logging.ERROR, orbax))  # without a traceback: kept
  abandoned = _record(logging.ERROR, os.path.join(os.path.dirname(logging.__file__),
                                                  "..", "asyncio", "base_events.py"),
                      "Task exception was never retrieved\nfuture: <Task coro=<f() defined "
                      f"at {orbax}>>")
  abandoned.name, abandoned.exc_info = "asyncio", traceback
  assert not f.filter(abandoned)
  own = _record(logging.ERROR, os.path.join(os.path.dirname(logs.__file__), "train.py"))
  own.exc_info = traceback
  assert f.filter(own)


def test_quiet_filter_rewrites_progress_in_place_on_a_terminal():
  own = os.path.join(os.path.dirname(logs.__file__), "train.py")
  stream = io.StringIO()
  f = logs.QuietFilter(stream=stream, in_place=True)
  assert not f.filter(_record(logging.INFO, own, "step 1/4", **{logs.PROGRESS: True}))
  assert stream.getvalue() == "\rstep 1/4\x1b[K"
  assert not f.filter(_record(logging.INFO, own, "step 2/4", **{logs.PROGRESS: True}))
  assert f.filter(_record(logging.INFO, own, "eval"))  # ends the progress line first
  assert stream.getvalue().endswith("\rstep 2/4\x1b[K\n")
  f.end_progress()  # nothing pending: no extra newline
  assert stream.getvalue().count("\n") == 1
  assert not f.filter(_record(logging.INFO, own, "step 3/4", **{logs.PROGRESS: True}))
  f.end_progress()
  assert stream.getvalue().endswith("\rstep 3/4\x1b[K\n")


def test_eval_line_lists_ema_and_rotation_averaged_accuracies():
  accs = dict(top1=0.1056, top5=0.4583, ema_top1=0.5, ema_top5=0.99, rot_avg_top1=0.25,
              rot_avg_top5=0.75)
  assert logs.eval_line("validation", 6, 10, accs) == (
      "eval validation at step 6/10: top-1 10.56%  top-5 45.83%  "
      "(ema 50.00% / 99.00%, rot-avg 25.00% / 75.00%)")
  assert logs.eval_line("test", 10, 10, dict(top1=1.0, top5=1.0)) == (
      "eval test at step 10/10: top-1 100.00%  top-5 100.00%")
