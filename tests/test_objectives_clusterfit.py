"""ClusterFit: the loss against NumPy, the config's stages, one-line errors, and a digits run
whose clusters are k-means of the export's features and which resumes bit-identically."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import embed, export, kmeans, runner
from s4l_jax.models import build_model
from s4l_jax.objectives import clusterfit
from testing_utils import load_config, run_full_and_interrupted, tiny


@pytest.mark.slow
def test_loss_is_the_xent_of_each_images_cluster():
  model = build_model(dict(name="wrn", depth=10, width=1, heads=dict(classes=-1, clusters=7)), 3)
  x = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
  variables = jax.device_get(jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(0), x))
  assignments = np.array([6, 0, 3, 5, 2, 1], np.int32)
  index = np.array([5, 0, 2, 2], np.int32)
  batch = {"unlabeled": {"image": x, "index": index, "label": np.zeros(4, np.int32)}}
  loss, _, metrics, state = clusterfit.loss_fn(
      variables["params"], variables["batch_stats"], batch, jax.random.PRNGKey(1), model=model,
      loss_config=None, aux={"state": {"assignments": jnp.asarray(assignments)}})
  outputs, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  logits = np.asarray(outputs["clusters"], np.float64)
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  targets = assignments[index]
  np.testing.assert_allclose(loss, -logp[np.arange(4), targets].mean(), rtol=1e-5)
  assert metrics["cluster_accuracy"] == np.mean(logits.argmax(1) == targets)
  np.testing.assert_array_equal(state["assignments"], assignments)


def test_config_trains_its_own_features_unless_given_an_export():
  c = load_config("clusterfit", "dataset=digits")
  assert sorted(c.stages) == ["clusterfit", "features", "linear"]
  assert c.stages.features.objective == "rotation"
  assert (c.stages.clusterfit.frozen_teacher, c.stages.linear.init_from) == ("@features",
                                                                              "@clusterfit")
  assert c.stages.clusterfit.model.heads.clusters == c.stages.clusterfit.loss.num_clusters == 50
  c = load_config("clusterfit", "dataset=cifar10,pretrained=/x/export,clusters=9")
  assert sorted(c.stages) == ["clusterfit", "linear"]
  assert c.stages.clusterfit.frozen_teacher == "/x/export"
  assert c.stages.clusterfit.loss.num_clusters == 9


@pytest.mark.parametrize("key,value,match", [
    ("frozen_teacher", "", r"^objective clusterfit clusters the features of frozen_teacher"),
    ("model.heads.clusters", 3, r"^model.heads.clusters=3 must be loss.num_clusters=50$"),
    ("loss.num_clusters", 1, r"^loss.num_clusters=1 must be in \[2, inf\) \(objective "),
])
def test_bad_configs_fail_in_one_line(key, value, match):
  from s4l_jax import validation  # pylint: disable=g-import-not-at-top
  c = load_config("clusterfit", "dataset=digits").stages.clusterfit
  c.frozen_teacher = "@features"
  section, _, leaf = key.rpartition(".")
  (functools.reduce(lambda d, k: d[k], section.split("."), c) if section else c)[leaf] = value
  if key == "loss.num_clusters":
    c.model.heads.clusters = 1
  with pytest.raises(ValueError, match=match):
    validation.validate(c)


@pytest.mark.slow
def test_digits_clusters_are_kmeans_of_the_export_and_resume_bit_identically(tmp_path):
  features = tiny(load_config("rotation", "dataset=digits"), steps=2, batch=8, image_size=16)
  runner.run(features, str(tmp_path / "features"))
  teacher = str(tmp_path / "features" / "export")

  def config():
    c = load_config("clusterfit", "dataset=digits,clusters=6").stages.clusterfit
    c.frozen_teacher = teacher
    return tiny(c, steps=4, batch=8, image_size=16)
  a, b = run_full_and_interrupted(config, tmp_path)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  feats = embed.embed_export(teacher, "digits", "train")["features"]
  np.testing.assert_array_equal(a["objective_state"]["assignments"],
                                kmeans.kmeans(feats, 6, seed=0)[1])
  assert export.load_description(str(tmp_path / "full" / "export"))["method"] == "clusterfit"
