"""How often the released VAT normalisation shortens the adversarial perturbation.

    PYTHONPATH=. python main.py --config=configs/vat.py:dataset=digits --workdir=/tmp/vat_digits
    PYTHONPATH=. python benchmarks/vat_normalization.py --export=/tmp/vat_digits/export

The released S4L code normalises the power-iteration gradient g with
`tf.math.l2_normalize(g, epsilon=1e-12)` (`loss.vat_normalization=released`), so
|r_adv| = eps * min(1, |g| / 1e-6): any example whose |g| is below 1e-6 gets a shorter
perturbation than eps (`exact_eps`, the default here, always gives eps). |g| is a mean over
the batch, so it scales as 1 / (images in the VAT pass): the rows use the trained run's pass
(`--batch_sizes` first entry: its 32 unlabeled + 32 labeled images) and smaller per-core
passes (16 = a v3-32 core's 8 + 8 images in the ImageNet VAT row).
For every train image of the dataset, in batches of each size: the train view of the run's
config (`input.unlabeled.view`, its crop), train-mode BN (as VAT's perturbed passes), xi and
KL direction of the run's config, float32; factor = |r_adv| / eps of the released form.
Writes benchmarks/results/vat_normalization.json and .md.
"""
import json
import os

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

import render_docs
from s4l_jax import export, objective_lib, vat
from s4l_jax.data import sources, views

_EXPORT = flags.DEFINE_string("export", None, "Export dir of a trained VAT run.", required=True)
_BATCHES = flags.DEFINE_list("batch_sizes", ["64", "16"], "Images per VAT pass.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the views and the power-iteration starts.")
_OUT = flags.DEFINE_string("result_prefix", "benchmarks/results/vat_normalization", "Output prefix.")


def shortening_factors(model, variables, images, rng, *, batch: int, xi: float,
                       kl_direction: str) -> np.ndarray:
  """|r_adv| / eps (N,) of the released normalisation over `images` (N, H, W, C) in [-1, 1],
  in consecutive batches of `batch` (a last partial batch is dropped)."""
  apply_fn = objective_lib.perturbed_apply_fn(model, variables["params"],
                                              variables["batch_stats"])

  @jax.jit
  def factors(x, key):
    r = vat.vat_perturbation(apply_fn, x, apply_fn(x), key, eps=1.0, xi=xi,
                             kl_direction=kl_direction, normalization="released")
    return jnp.sqrt(jnp.sum(jnp.square(r), axis=(1, 2, 3)))

  n = images.shape[0] // batch * batch
  keys = jax.random.split(rng, n // batch)
  return np.concatenate([np.asarray(factors(images[i:i + batch], keys[i // batch]))
                         for i in range(0, n, batch)])


def main(argv):
  del argv
  model, variables, description = export.load_model(_EXPORT.value)
  config = json.load(open(os.path.join(os.path.dirname(_EXPORT.value.rstrip("/")),
                                       "config.json")))
  loss = config["loss"]
  size = description["input_size"][0]
  train = sources.load_split(config["dataset"], "train", image_size=size)
  view_fn = views.make_view_fn(config["input"]["unlabeled"]["view"], image_size=size,
                               crop=config["input"]["crop"])
  view_rng, power_rng = jax.random.split(jax.random.PRNGKey(_SEED.value))
  images = view_fn(view_rng, {"image": jnp.asarray(train.images)})["image"]
  rows = []
  for batch in map(int, _BATCHES.value):
    f = shortening_factors(model, variables, images, power_rng, batch=batch,
                           xi=loss["vat_xi"], kl_direction=loss["vat_kl_direction"])
    rows.append(dict(batch=batch, images=int(f.size),
                     shortened=float(np.mean(f < 1 - 1e-6)),
                     below_half=float(np.mean(f < 0.5)),
                     median_factor=float(np.median(f)),
                     p10_factor=float(np.percentile(f, 10)),
                     min_factor=float(f.min())))
  result = dict(export=_EXPORT.value, dataset=config["dataset"], method=description["method"],
                step=description["step"], top1=description["top1"], xi=loss["vat_xi"],
                eps=loss["vat_eps"], kl_direction=loss["vat_kl_direction"],
                backend=jax.default_backend(), rows=rows)
  with open(_OUT.value + ".json", "w") as out:
    json.dump(result, out, indent=1)
  lines = [f"{result['dataset']} {result['method']} export at step {result['step']} (top-1 "
           f"{100 * result['top1']:.1f} %), xi {result['xi']}, float32, {result['backend']}:",
           "", "| images per VAT pass | images | shortened | factor < 0.5 | median factor | "
           "10th pct | min |", "| --- | --- | --- | --- | --- | --- | --- |"]
  lines += [f"| {r['batch']} | {r['images']} | {100 * r['shortened']:.1f} % | "
            f"{100 * r['below_half']:.1f} % | {r['median_factor']:.3g} | {r['p10_factor']:.3g} | "
            f"{r['min_factor']:.3g} |" for r in rows]
  with open(_OUT.value + ".md", "w") as out:
    out.write("\n".join(lines) + "\n")
  render_docs.after_write(_OUT.value + ".md")
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
