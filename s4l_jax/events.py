"""Scalars of TensorBoard event files, read without TensorFlow."""
import struct

from s4l_jax import storage


def read_scalars(logdir: str) -> dict:
  """{tag: [(step, value), ...]} of the `*tfevents*` files directly in `logdir`, a step
  written twice (a resumed run) keeping its last value, sorted by step.

  Parses the TFRecord framing directly (u64 length, u32 crc, payload, u32 crc):
  tensorboard's own readers import TensorFlow when it is installed, which takes ~20 s.
  """
  from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out = {}
  if not storage.exists(logdir):
    return out
  for name in sorted(storage.listdir(logdir)):
    if "tfevents" not in name:
      continue
    data = storage.read_bytes(storage.join(logdir, name))
    pos = 0
    while pos + 12 <= len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 16 + length
      for v in event.summary.value:
        if v.HasField("simple_value"):
          out.setdefault(v.tag, {})[event.step] = v.simple_value
  return {tag: sorted(values.items()) for tag, values in out.items()}
