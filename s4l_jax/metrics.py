"""Metric writer: TensorBoard event files + absl log lines, without TensorFlow.

clu's `create_default_writer` imports TensorFlow, which in-memory training must not need
(GPU machines often have none); this writer produces the same `events.out.tfevents.*`
files with the `tensorboard` package alone. Only process 0 writes files.
"""
import sys
import time
import types

import numpy as np
from absl import logging

from s4l_jax import storage


class MetricWriter:
  """`write_scalars(step, {name: value})` to TensorBoard (`logdir`) and the log."""

  def __init__(self, logdir: str, write_files: bool = True):
    self._writer = None
    if write_files:
      logdir = storage.native(logdir)
      if not storage.is_remote(logdir) and "tensorflow" not in sys.modules:
        # tensorboard's file layer would import TensorFlow when installed; for local paths
        # its stub suffices (`tensorboard.compat.notf` is the documented switch).
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("notf"))
      from tensorboard.summary.writer.event_file_writer import EventFileWriter  # pylint: disable=g-import-not-at-top
      self._writer = EventFileWriter(logdir)

  def write_scalars(self, step: int, scalars: dict):
    scalars = {k: float(np.asarray(v)) for k, v in scalars.items()}
    # Every scalar, at --verbosity=1: at the default, the trainer's progress and eval lines
    # (`step N/M loss ...`, `eval at step ...`) say the same in one line each.
    logging.debug("[%d] %s", step, ", ".join(f"{k}={v:.6g}" for k, v in sorted(scalars.items())))
    if self._writer is None:
      return
    from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=v)
                                         for k, v in scalars.items()])
    self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                           summary=summary))

  def write_eval(self, name: str, step: int, num_steps: int, accs: dict):
    """Accuracies of evaluator `name`: scalars `<name>/<key>`, and one readable log line."""
    from s4l_jax import logs  # pylint: disable=g-import-not-at-top
    self.write_scalars(step, {f"{name}/{k}": v for k, v in accs.items()})
    logging.info("%s", logs.eval_line(name, step, num_steps, accs))

  def write_text(self, step: int, tag: str, text: str):
    if self._writer is None:
      return
    from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.plugins.text import metadata  # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import tensor_pb2, types_pb2  # pylint: disable=g-import-not-at-top
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[text.encode()])
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor,
                                      metadata=metadata.create_summary_metadata(tag, ""))
    self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                           summary=summary_pb2.Summary(value=[value])))

  def flush(self):
    if self._writer is not None:
      self._writer.flush()

  def close(self):
    if self._writer is not None:
      self._writer.close()
