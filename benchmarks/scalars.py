"""Scalars of TensorBoard event files, read without TensorFlow (benchmarks' reports)."""
import os
import struct


def read_scalars(logdir: str) -> dict:
  """{tag: [(step, value), ...]} from the TensorBoard event files of `logdir`.

  Parses the TFRecord framing directly (u64 length, u32 crc, payload, u32 crc):
  tensorboard's own readers import TensorFlow when it is installed, which takes ~20 s.
  """
  from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out = {}
  for name in sorted(os.listdir(logdir)):
    if "tfevents" not in name:
      continue
    with open(os.path.join(logdir, name), "rb") as f:
      data = f.read()
    pos = 0
    while pos + 12 <= len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 16 + length
      for v in event.summary.value:
        if v.HasField("simple_value"):
          out.setdefault(v.tag, []).append((event.step, v.simple_value))
  return out
