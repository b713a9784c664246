"""`make_pipeline`: the input pipeline a config asks for (`input.pipeline`)."""
from s4l_jax.data import datasets, pipeline


def make_pipeline(config, process_index: int = 0, process_count: int = 1):
  """The in-memory pipeline, or the tf.data one for datasets that do not fit in memory.

  Every pipeline has: `num_labeled`, `num_unlabeled`, `num_classes`, `class_names`,
  `image_shape`, `images_per_step`, `views_on_device`, `train_batch(step)` and
  `eval_batches(batch)`. Only the tf.data pipeline imports TensorFlow.
  """
  datasets.check_pipeline(config.dataset, config.input.pipeline)
  if config.input.pipeline == "memory":
    return pipeline.InMemoryPipeline(config, process_index, process_count)
  from s4l_jax.data import tfds_pipeline  # pylint: disable=g-import-not-at-top
  return tfds_pipeline.TfdsPipeline(config, process_index, process_count)
