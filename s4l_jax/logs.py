"""What `python main.py` prints: our own lines at the default verbosity, everyone's at -v 1.

Every library here logs through absl's handler (Orbax with absl.logging, JAX and others with
Python `logging`, which reaches the root logger's absl handler), so one filter on that handler
decides. At the default `--verbosity=0`:

* INFO from this package and the `__main__` script is shown (config summary, one progress line
  per log interval, eval lines, checkpoints, the result); WARNING and above from anyone.
* Third-party INFO (Orbax writes ~100 lines per run, some thousands of characters long: every
  `CheckpointManager created ...`) is dropped.
* Orbax's tracebacks of a failed background save (one per thread and abandoned write, 200
  lines and more on a full disk) are dropped: the save's error is raised again in the main thread, where `main.py`
  reports it in one line.
* On a terminal the progress line (`step N/M loss ...`) is rewritten in place (`\\r`); the next
  other line, or `end_progress()`, ends it with a newline.

`--verbosity=1` (or higher) turns the filter off and also shows our DEBUG lines (the full
config, every scalar as `[step] k=v`); `--verbosity=-1` shows warnings only.
"""
import logging as std_logging
import os
import sys
import threading

from absl import logging

from s4l_jax import budget
from s4l_jax.data import streams

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
PROGRESS = "s4l_progress"  # `extra={PROGRESS: True}` marks the rewritable progress line


def is_orbax_traceback(record) -> bool:
  """True for a traceback logged by Orbax (the `orbax` package), or by asyncio for an Orbax
  task whose error nobody retrieved (its writes abandoned after the first one failed)."""
  if not record.exc_info:
    return False
  if f"{os.sep}orbax{os.sep}" in os.path.abspath(record.pathname or ""):
    return True
  return record.name == "asyncio" and f"{os.sep}orbax{os.sep}" in record.getMessage()


def is_own(pathname: str) -> bool:
  """True for records logged by s4l_jax or by the `__main__` script (main.py)."""
  path = os.path.abspath(pathname or "")
  if path.startswith(_PACKAGE_DIR + os.sep):
    return True
  main_file = getattr(sys.modules.get("__main__"), "__file__", None)
  return bool(main_file) and path == os.path.abspath(main_file)


class QuietFilter(std_logging.Filter):
  """Passes WARNING+ from anyone (Orbax's tracebacks aside) and INFO from our code; on a tty
  rewrites progress in place."""

  def __init__(self, stream=None, in_place: bool | None = None):
    super().__init__()
    self._stream = stream
    self._in_place = in_place
    self._pending = False  # a progress line without its newline is on the terminal
    self._lock = threading.Lock()

  @property
  def stream(self):
    return self._stream or sys.stderr

  def _rewrite(self) -> bool:
    if self._in_place is not None:
      return self._in_place
    isatty = getattr(self.stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"

  def filter(self, record) -> bool:
    keep = record.levelno >= std_logging.WARNING or (
        record.levelno >= std_logging.INFO and is_own(record.pathname))
    if is_orbax_traceback(record):
      keep = False  # re-raised in the main thread and reported there
    if not keep:
      return False
    with self._lock:
      if getattr(record, PROGRESS, False) and self._rewrite():
        self.stream.write("\r" + record.getMessage() + "\x1b[K")
        self.stream.flush()
        self._pending = True
        return False
      self._end_locked()
    return True

  def end_progress(self):
    with self._lock:
      self._end_locked()

  def _end_locked(self):
    if self._pending:
      self.stream.write("\n")
      self.stream.flush()
      self._pending = False


_installed: QuietFilter | None = None


def configure(verbosity: int | None = None) -> None:
  """Installs the filter on absl's handler unless `verbosity` (default: --verbosity) is >= 1.

  Idempotent; call after flag parsing (main.py's `main`).
  """
  global _installed
  if verbosity is None:
    verbosity = logging.get_verbosity()
  handler = logging.get_absl_handler()
  if _installed is not None:
    handler.removeFilter(_installed)
    _installed = None
  if verbosity >= 1:
    return
  _installed = QuietFilter()
  handler.addFilter(_installed)


def log_to_file(path: str) -> None:
  """Also writes the log to the local file `path` (appended), filtered as the screen is (the
  progress lines one per interval, never rewritten in place)."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  handler = std_logging.FileHandler(path)
  handler.setFormatter(logging.PythonFormatter())
  if _installed is not None:
    handler.addFilter(QuietFilter(in_place=False))
  std_logging.getLogger().addHandler(handler)


def end_progress() -> None:
  """Ends an in-place progress line (before printing anything that bypasses the logger)."""
  if _installed is not None:
    _installed.end_progress()


def summary(config, *, num_labeled: int, num_classes: int, num_steps: int, images_per_step: int,
            devices: int, workdir: str) -> str:
  """One line: what this run trains, on what, for how long, where."""
  m, inp = config.model, config.input
  model = f"{m.name}-{m.depth}-{m.width}" if "depth" in m and "width" in m else m.name
  if m.get("dtype", "float32") != "float32":
    model += f" {m.dtype}"
  batches = "batch " + " + ".join(f"{spec.batch_size} {name}" for name, (_, spec)
                                   in streams.active(inp).items())
  labels = f"labels {config.labels}"
  if config.get("pseudo_labels") or config.get("teacher"):
    labels += " + pseudo-labels"
  lr = budget.base_learning_rate(config)
  parts = [
      f"{config.objective} on {config.dataset}",
      f"{labels} ({num_labeled} labeled, {num_classes} classes)",
      f"{model} {inp.image_size}px",
      f"{num_steps} steps, {batches} ({images_per_step} images/step)",
      f"lr {lr:g} {config.lr.schedule}, {config.optimizer.name}",
      f"seed {config.seed}, {devices} device{'s' if devices != 1 else ''}",
      f"-> {workdir}",
  ]
  if config.get("init_from"):
    parts.insert(-1, f"init from {config.init_from}")
  if config.get("teacher"):
    parts.insert(-1, f"teacher {config.teacher}")
  return "; ".join(parts)


def eval_line(name: str, step: int, num_steps: int, accs: dict) -> str:
  """`eval validation at step 8/16: top-1 11.39%  top-5 45.00%` from evaluator `name`'s
  accuracies, then `(ema 12.00% / 46.10%, rot-avg ...)` (top-1 / top-5) for the EMA and
  rotation-averaged ones."""
  def pct(key):
    return f"{100 * float(accs[key]):.2f}%"
  line = f"eval {name} at step {step}/{num_steps}: top-1 {pct('top1')}  top-5 {pct('top5')}"
  more = [f"{name} {pct(prefix + 'top1')} / {pct(prefix + 'top5')}"
          for prefix, name in (("ema_", "ema"), ("rot_avg_", "rot-avg"),
                               ("ema_rot_avg_", "ema rot-avg")) if prefix + "top1" in accs]
  return line + (f"  ({', '.join(more)})" if more else "")
