"""The dataset registry: one entry per dataset family, read by everything that needs a fact.

A dataset name is a family name (`imagenet2012`, `cifar10`, `digits`) or `folder:PATH`.
Importing this module imports neither TensorFlow nor the loaders.
"""
import dataclasses
import importlib.util


@dataclasses.dataclass(frozen=True)
class SmallRegime:
  """The `regime=small` recipe's sizes on a family (`configs/common.small_data_preset`): a
  CPU/GPU-sized run with a fixed step budget.

  Attributes:
    batch: labeled images a step (the pretext rows' unlabeled ones too; half of it where
      each image gives 4 or 8 views: S4L-Rotation, exemplar).
    steps: training steps.
    lr: peak learning rate (not batch-scaled).
    log_every_steps, checkpoint_every_steps: cadences.
    student_noise: Noisy Student's (dropout, last unit's survival probability).
    negatives: PIRL's negatives drawn from its memory bank per step.
  """
  batch: int = 64
  steps: int = 4000
  lr: float = 0.1
  log_every_steps: int = 100
  checkpoint_every_steps: int = 500
  student_noise: tuple[float, float] = (0.5, 0.8)
  negatives: int = 4096


REGIMES = ("paper", "small")  # the config arg regime=: the paper's recipe or a small budget


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
      `models.presets.MODEL_PRESETS` key, global eval batch).
    eval_crop: the eval crop (`input.eval_crop`, `views.eval_crop_view`), one definition for
      both pipelines: S4L's `resize_small_crop` (short side to S x 256 / 224, area, central
      S x S) on ImageNet; elsewhere `resize_small_crop(1.0)`, the whole short side: the
      identity on the in-memory pipeline's S x S images.
    validation: the default held-out set carved from train (`input.validation`;
      `subsets.split_train`), e.g. the S4L paper's 1,000 ImageNet images (one per class).
    label_protocol: labels specs this family reads as another (`subsets.resolve_labels_spec`),
      e.g. ImageNet's `10pct` / `1pct` = S4L's lists of exactly 128 / 13 images per class
      (google-research/s4l `label_map_count_128000_index_0` / `..._13000_...`).
    small: the `regime=small` sizes.
    train_images: images of the train split (PIRL's memory bank rows); 0: read from the data.
    benchmark_labels: the labels spec of the semi-supervised benchmarks' headline row on it
      (FixMatch's default; CIFAR-10: 250 labels).
    pseudo_labels_per_class: Noisy Student's class balancing K, about the unlabeled train
      images per class at 10 % labels; 0: off.
    clusters: ClusterFit's default k-means K (the paper's 1,000 - 16,000 on ImageNet).
    simclr_jitter_strength: SimCLR's colour-jitter strength (`simclr_augment(s)`): 1 as on
      ImageNet, 0.5 in its CIFAR-10 recipe.
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
  small: SmallRegime = SmallRegime()
  train_images: int = 0
  benchmark_labels: str = "10pct"
  pseudo_labels_per_class: int = 0
  clusters: int = 500
  simclr_jitter_strength: float = 1.0
  eval_crop: str = "resize_small_crop(1.0)"

  def needs_tensorflow(self, pipeline: str) -> bool:
    """Whether reading it through input pipeline `pipeline` imports TensorFlow."""
    return self.source == "tfds" or pipeline == "tfdata"


PIPELINES = ("memory", "tfdata")
FAMILIES = {f.name: f for f in (
    # The paper's setting.
    DatasetFamily("imagenet2012", source="tfds", pipelines=("tfdata",), num_classes=1000,
                  test_split="validation", image_size=224, crop="inception",
                  model="resnet50v2", eval_batch_size=400, validation="1000",
                  label_protocol=(("10pct", "128perclass"), ("1pct", "13perclass")),
                  train_images=1281167, pseudo_labels_per_class=1150,
                  clusters=16000, eval_crop="resize_small_crop"),
    DatasetFamily("cifar10", source="tfds", pipelines=("memory",), num_classes=10,
                  test_split="test", image_size=32, crop="pad_crop", model="wrn",
                  eval_batch_size=500, validation="1000", train_images=50000,
                  benchmark_labels="250", pseudo_labels_per_class=4500,
                  simclr_jitter_strength=0.5),
    DatasetFamily("digits", source="sklearn", pipelines=("memory",), num_classes=10,
                  test_split="test", image_size=16, crop="pad_crop", model="wrn_tiny",
                  eval_batch_size=360, validation="10pct",
                  small=SmallRegime(batch=32, steps=400, lr=0.05, log_every_steps=50,
                                    checkpoint_every_steps=100, student_noise=(0.2, 0.9),
                                    negatives=512),
                  train_images=1437, pseudo_labels_per_class=116, clusters=50),
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
