"""Representation evaluators named in `config.evals` by `kind` (the top-1 ones have none).

    evals.knn = dict(kind="knn", endpoint="pre_logits", k=20, temperature=0.07)
    evals.linear_probe = dict(kind="linear_probe", l2=1e-3, steps=200)  # every layer
    evals.corruptions = dict(kind="corruptions")  # ImageNet-C's 5 corruptions x 5 severities
    evals.fgsm = dict(kind="fgsm", eps=(1.0, 2.0, 4.0, 8.0))  # pixel levels of 255
    evals.per_class = dict(kind="per_class")  # + WORKDIR/evals/per_class_<split>.png

(`evals=full`, a config arg of every config, adds them all: `FULL`.) They score the weights
the run exports (EMA when on) on the validation split at every periodic evaluation and on
every eval split (validation, test) at the end; kNN and the probes fit on the labeled set
(central views, the labels the run trains on). Each result is a flat dict of numbers (and
per_class's lists) under `evals.<name>.<split>` in results.json, scalars under
`<name>/<split>/<key>` in TensorBoard.
"""
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from s4l_jax import distributed, endpoints, export, storage
from s4l_jax.evaluators import corruptions, fgsm as fgsm_lib, knn, linear_probe, per_class

TOP1 = "top1"  # the kind of evaluators without one: top-1 / top-5 (train._make_evaluators)
FULL = {
    "knn": dict(kind="knn", endpoint=endpoints.TRUNK, k=20, temperature=0.07),
    "linear_probe": dict(kind="linear_probe", l2=1e-3, steps=200),
    "corruptions": dict(kind="corruptions"),
    "fgsm": dict(kind="fgsm", eps=(1.0, 2.0, 4.0, 8.0)),
    "per_class": dict(kind="per_class"),
}
KINDS = (TOP1, *FULL)
EVALS_ARGS = ("default", "full")  # the config arg `evals=`


def kind_of(spec) -> str:
  return spec.get("kind", TOP1)


def add_evals(evals, which: str):
  """The config arg `evals=`: "default" leaves `evals` (a ConfigDict) as it is, "full" adds
  every kind of `FULL`; ValueError for anything else."""
  if which not in EVALS_ARGS:
    raise ValueError(f"evals={which!r} must be one of {', '.join(EVALS_ARGS)}")
  if which == "full":
    for name, spec in FULL.items():
      evals[name] = dict(spec)


def check(name: str, spec):
  """ValueError (one line) for an unknown kind or bad setting of evaluator `name`."""
  kind = kind_of(spec)
  if kind not in KINDS:
    raise ValueError(f"evals.{name}.kind={kind!r} must be one of {', '.join(KINDS)}")
  if kind == "knn" and (spec.k < 1 or spec.temperature <= 0):
    raise ValueError(f"evals.{name}: k={spec.k} must be >= 1 and temperature="
                     f"{spec.temperature} > 0")
  if kind == "linear_probe" and (spec.l2 <= 0 or spec.steps < 1):
    raise ValueError(f"evals.{name}: l2={spec.l2} must be > 0 and steps={spec.steps} >= 1")
  if kind == "fgsm" and not all(e > 0 for e in spec.eps):
    raise ValueError(f"evals.{name}.eps={tuple(spec.eps)} must all be > 0 (pixel levels)")


def scalars(result: dict) -> dict:
  """The numbers of a result (per_class's lists as `class_<i>`), for TensorBoard."""
  out = {k: v for k, v in result.items() if isinstance(v, (int, float))}
  for i, v in enumerate(result.get("per_class_accuracy", [])):
    if v is not None:
      out[f"class_{i}"] = v
  return out


class Evaluators:
  """The `kind` evaluators of `config.evals`, sharing one feature pass per split."""

  def __init__(self, model, config, data, mesh, workdir: str):
    """ValueError (one line) for a kNN endpoint the model does not have."""
    self.specs = {n: s for n, s in config.evals.items() if kind_of(s) != TOP1}
    self.data, self.mesh, self.workdir = data, mesh, workdir
    knn_specs = {n: s for n, s in self.specs.items() if kind_of(s) == "knn"}
    if knn_specs:
      shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False),
                              jax.ShapeDtypeStruct((1, *data.image_shape), jnp.float32))
      names = list(endpoints.endpoint_dims(model, shapes, data.image_shape))
      for name, spec in knn_specs.items():
        endpoints.check_endpoint(spec.endpoint, names, f"evals.{name}.endpoint: the model")
    self.batch_size, self.image_size = config.input.eval_batch_size, config.input.image_size
    self.seed = config.seed
    repl = distributed.replicated(mesh)

    def features(variables, batch):
      out = endpoints.apply_endpoints(model, variables,
                                      export.to_model_input(batch["image"]))
      return dict(out, label=batch["label"], mask=batch["mask"])

    def logits(variables, pixels):  # float pixels in [0, 255]
      return model.apply(variables, export.to_model_input(pixels), train=False)["classes"]

    def hits(variables, pixels, batch):
      correct = jnp.argmax(logits(variables, pixels), -1) == batch["label"]
      return jnp.sum(correct & batch["mask"]), jnp.sum(batch["mask"])

    def corrupted_hits(variables, batch, index, param, key):
      images = corruptions.corrupt(index, batch["image"], param, key)
      return hits(variables, images.astype(jnp.float32), batch)

    def fgsm_hits(variables, batch, eps):
      adversarial = fgsm_lib.fgsm(lambda x: logits(variables, x), batch["image"],
                                  batch["label"], eps)
      return hits(variables, adversarial, batch)

    self._features = jax.jit(features, out_shardings=repl)
    self._corrupted = jax.jit(corrupted_hits, out_shardings=repl)
    self._fgsm = jax.jit(fgsm_hits, out_shardings=repl)

  def __bool__(self):
    return bool(self.specs)

  def splits(self) -> list:
    """The splits of the final evaluation: validation (when held out) and test."""
    return (["validation"] if self.data.validation_indices.size else []) + ["test"]

  def _batches(self, split):
    return (distributed.to_global(b, self.mesh)
            for b in self.data.eval_batches(self.batch_size, split))

  def _extract(self, variables, split) -> dict:
    """{endpoint: (N, D), "label": (N,)} of `split`'s examples, padding dropped."""
    parts = [jax.device_get(self._features(variables, b)) for b in self._batches(split)]
    mask = np.concatenate([p.pop("mask") for p in parts]).astype(bool)
    return {k: np.concatenate([p[k] for p in parts])[mask] for k in parts[0]}

  def _accuracy(self, fn, split: str) -> float:
    """Accuracy over `split` from `fn(batch, index) -> (hits, count)`."""
    correct = total = 0
    for index, batch in enumerate(self._batches(split)):
      c, n = jax.device_get(fn(batch, index))
      correct, total = correct + int(c), total + int(n)
    return correct / max(total, 1)

  def evaluate(self, variables, splits) -> dict:
    """{name: {split: flat result}} of every evaluator on each of `splits`; kNN and the
    probes fit on the labeled set once for all of them."""
    labeled = self._extract(variables, "labeled")
    held_out = {split: self._extract(variables, split) for split in splits}
    labels = {split: held_out[split]["label"] for split in splits}
    accuracy = lambda split, predicted: float(np.mean(predicted == labels[split]))
    num_classes = self.data.num_classes
    out = {}
    for name, spec in self.specs.items():
      kind = kind_of(spec)
      out[name] = {split: {} for split in splits}
      if kind == "knn":
        for split in splits:
          predicted = knn.knn_predict(labeled[spec.endpoint], labeled["label"],
                                      held_out[split][spec.endpoint], k=spec.k,
                                      temperature=spec.temperature, num_classes=num_classes)
          out[name][split]["top1"] = accuracy(split, predicted)
      elif kind == "linear_probe":
        for layer in endpoints.layer_endpoints(labeled):
          train_x, *others = linear_probe.standardize(
              labeled[layer], *(held_out[split][layer] for split in splits))
          params = linear_probe.fit(train_x, jnp.asarray(labeled["label"]),
                                    num_classes=num_classes, l2=spec.l2, steps=spec.steps)
          for split, x in zip(splits, others):
            predicted = np.argmax(linear_probe.predict_logits(params, x), -1)
            out[name][split][layer] = accuracy(split, predicted)
      elif kind == "per_class":
        for split in splits:
          matrix = per_class.confusion_matrix(
              labels[split], np.argmax(held_out[split]["classes"], -1), num_classes)
          out[name][split] = dict(per_class.summarize(matrix), confusion_matrix=matrix.tolist())
          if distributed.is_writer():
            storage.makedirs(storage.join(self.workdir, "evals"))
            storage.write_bytes(storage.join(self.workdir, "evals", f"{name}_{split}.png"),
                                per_class.to_png(matrix))
      elif kind == "corruptions":
        out[name] = {split: self._corruptions(variables, split) for split in splits}
      elif kind == "fgsm":
        out[name] = {split: {f"eps{eps:g}": self._accuracy(
            lambda b, _, eps=eps: self._fgsm(variables, b, eps), split)
                             for eps in (0.0, *spec.eps)} for split in splits}
    return out

  def _corruptions(self, variables, split: str) -> dict:
    """{"<corruption>_s<severity>": accuracy, "<corruption>": its mean, "mean"}; the noises
    are the same at every evaluation (keys from the seed, corruption, severity, batch)."""
    out, key = {}, jax.random.PRNGKey(self.seed)
    for c, name in enumerate(corruptions.SEVERITIES):
      accs = []
      for severity in range(1, 6):
        param = corruptions.parameter(name, severity, self.image_size)
        keys = jax.random.fold_in(key, 10 * c + severity)
        accs.append(self._accuracy(lambda b, i, param=param, keys=keys: self._corrupted(
            variables, b, c, param, jax.random.fold_in(keys, i)), split))
      out.update({f"{name}_s{s}": a for s, a in enumerate(accs, 1)})
      out[name] = float(np.mean(accs))
    out["mean"] = float(np.mean([out[name] for name in corruptions.SEVERITIES]))
    return out

  def run(self, variables, splits, writer, step: int, num_steps: int) -> dict:
    """`evaluate`, then TensorBoard scalars `<name>/<split>/<key>` and one log line per
    evaluator and split."""
    results = self.evaluate(variables, splits)
    for name, by_split in results.items():
      for split, result in by_split.items():
        numbers = scalars(result)
        writer.write_scalars(step, {f"{name}/{split}/{k}": v for k, v in numbers.items()})
        shown = [f"{k} {100 * v:.2f}%" for k, v in numbers.items() if k != "eps0"]
        logging.info("eval %s on %s at step %d/%d: %s%s", name, split, step, num_steps,
                     ", ".join(shown[:6]), ", ..." if len(shown) > 6 else "")
    return results
