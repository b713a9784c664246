"""Per-class results: the confusion matrix, each class's accuracy (recall), their mean
(balanced accuracy), and the matrix as a PNG that needs no plotting library."""
import struct
import zlib

import numpy as np


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
  """int64 (K, K): row = true class, column = predicted class."""
  out = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(out, (np.asarray(labels), np.asarray(predictions)), 1)
  return out


def summarize(matrix: np.ndarray) -> dict:
  """{"per_class_accuracy": [K] (None for classes absent from the split), "balanced_accuracy"
  (mean over present classes), "accuracy"}."""
  totals = matrix.sum(axis=1)
  present = totals > 0
  recall = np.diag(matrix) / np.maximum(totals, 1)
  return dict(per_class_accuracy=[float(r) if p else None for r, p in zip(recall, present)],
              balanced_accuracy=float(recall[present].mean()),
              accuracy=float(np.trace(matrix) / max(matrix.sum(), 1)))


def to_png(matrix: np.ndarray, cell: int = 16) -> bytes:
  """Greyscale PNG of the row-normalised matrix (black = 0, white = all of the row),
  `cell` x `cell` pixels per entry."""
  rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
  pixels = np.kron(np.round(255 * rows).astype(np.uint8), np.ones((cell, cell), np.uint8))
  height, width = pixels.shape
  raw = b"".join(b"\x00" + row.tobytes() for row in pixels)

  def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
  header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
          + chunk(b"IEND", b""))
