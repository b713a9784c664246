"""`ArrayDataset`: a dataset split held in memory, the type every in-memory loader returns."""
import dataclasses

import numpy as np


@dataclasses.dataclass
class ArrayDataset:
  """A split held in memory."""
  images: np.ndarray  # uint8 (N, H, W, C)
  labels: np.ndarray  # int32 (N,)
  class_names: list[str]
  filenames: list[str] | None  # Per example, relative to the dataset root; None if unknown.
  skipped: list[str]  # Paths of files that could not be read as images.
