"""The dataset registry: one entry per dataset family, read by everything that needs a fact.

A dataset name is a family name (`imagenet2012`, `cifar10`, `digits`) or `folder:PATH`.
Importing this module imports neither TensorFlow nor the loaders.
"""
import dataclasses
import importlib.util


@dataclasses.dataclass(frozen=True)
class DatasetFamily:
  """What the code needs to know about a family of datasets.

  Attributes:
    name: the family name (`folder` for every `folder:PATH`).
    source: how it is read: `sklearn` (scikit-learn's digits), `folder` (an image tree
      PATH/<split>/<class>/*), `tfds` (a prepared TFDS dataset; needs TensorFlow).
    pipelines: input pipelines that can serve it: `memory` (decoded once into uint8 arrays) or
      `tfdata` (streamed); the first is the default.
    num_classes: fixed number of classes, or None when read from the data (folders).
    test_split: the split reported as "test" (ImageNet's labeled `validation`).
    image_size, crop, model, eval_batch_size: the input and model preset (pixels, crop name,
      `config_lib.MODEL_PRESETS` key, global eval batch).
    validation: the default held-out set carved from train (`input.validation`;
      `subsets.split_train`), e.g. the S4L paper's 1,000 ImageNet images (one per class).
    label_protocol: labels specs this family reads as another (`subsets.resolve_labels_spec`),
      e.g. ImageNet's `10pct` / `1pct` = S4L's lists of exactly 128 / 13 images per class
      (google-research/s4l `label_map_count_128000_index_0` / `..._13000_...`).
  """
  name: str
  source: str
  pipelines: tuple[str, ...]
  num_classes: int | None
  test_split: str
  image_size: int
  crop: str
  model: str
  eval_batch_size: int
  validation: str
  label_protocol: tuple[tuple[str, str], ...] = ()

  def needs_tensorflow(self, pipeline: str) -> bool:
    """Whether reading it through input pipeline `pipeline` imports TensorFlow."""
    return self.source == "tfds" or pipeline == "tfdata"


PIPELINES = ("memory", "tfdata")
FAMILIES = {f.name: f for f in (
    # The paper's setting.
    DatasetFamily("imagenet2012", source="tfds", pipelines=("tfdata",), num_classes=1000,
                  test_split="validation", image_size=224, crop="inception",
                  model="resnet50v2", eval_batch_size=400, validation="1000",
                  label_protocol=(("10pct", "128perclass"), ("1pct", "13perclass"))),
    DatasetFamily("cifar10", source="tfds", pipelines=("memory",), num_classes=10,
                  test_split="test", image_size=32, crop="pad_crop", model="wrn",
                  eval_batch_size=500, validation="1000"),
    DatasetFamily("digits", source="sklearn", pipelines=("memory",), num_classes=10,
                  test_split="test", image_size=16, crop="pad_crop", model="wrn_tiny",
                  eval_batch_size=360, validation="10pct"),
    DatasetFamily("folder", source="folder", pipelines=("memory", "tfdata"), num_classes=None,
                  test_split="test", image_size=32, crop="pad_crop", model="wrn",
                  eval_batch_size=500, validation="10pct"),
)}


def get(dataset: str) -> DatasetFamily:
  """The family of dataset name `dataset` (`folder:PATH` -> `folder`); ValueError if unknown."""
  family, sep, path = dataset.partition(":")
  if family not in FAMILIES or (FAMILIES[family].source == "folder") != bool(sep and path):
    valid = ", ".join(f"{n}:PATH" if FAMILIES[n].source == "folder" else n for n in FAMILIES)
    raise ValueError(f"Unknown dataset {dataset!r}; valid: {valid}")
  return FAMILIES[family]


def check_pipeline(dataset: str, pipeline: str):
  """ValueError unless input pipeline `pipeline` (`memory` | `tfdata`) can serve `dataset`."""
  if pipeline not in PIPELINES:
    raise ValueError(f"input.pipeline must be one of {', '.join(PIPELINES)}, got {pipeline!r}")
  family = get(dataset)
  if pipeline not in family.pipelines:
    raise ValueError(f"{dataset} cannot use input.pipeline={pipeline}: set input.pipeline="
                     f"{' or '.join(family.pipelines)}")


def check_tensorflow(dataset: str, pipeline: str):
  """ValueError if `dataset` through `pipeline` needs TensorFlow and it is not installed."""
  if get(dataset).needs_tensorflow(pipeline) and not all(
      importlib.util.find_spec(m) for m in ("tensorflow", "tensorflow_datasets")):
    raise ValueError(f"{dataset} with input.pipeline={pipeline} needs TensorFlow and "
                     "tensorflow_datasets: pip install -e '.[tf]'")


def folder_root(dataset: str) -> str:
  """PATH of `folder:PATH`."""
  return dataset.removeprefix("folder:")
