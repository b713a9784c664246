r"""Input-pipeline throughput: the tf.data host crops and the JAX views.

Builds a 224 px JPEG folder (CIFAR-10 train images upscaled, or synthetic
JPEGs when the archive is absent) in a temp dir, then measures source
images/s per CPU core for:
  decode_only: fused JPEG decode+crop (inception box) + bilinear resize, the
               physical floor of every recipe;
  *_u8:        `tf_views.make_tf_crop_fn`, what `TfdsPipeline` runs on the
               host, all uint8 (train/rotate4: the 224 px crop; exemplar8: the
               decoded image on a 512 canvas + 8 boxes; resizes of the canvas,
               flips, rotations, HSV noise and scaling run in the train step);
  jax_finish_*: `views.make_view_fn(..., host_cropped=True)` (that device
               half) under jit on the CPU backend, on a fixed uint8 batch;
  jax_*:       `views.make_view_fn` under jit on in-memory uint8 batches.
Prints JSON, writes benchmarks/results/input_pipeline.{json,md} and splices the .md
into benchmarks/README.md's "Input pipeline" section (render_docs).

  PYTHONPATH=. python benchmarks/input_pipeline.py [--num_images 2000] [--seconds 8]
"""
import argparse
import json
import os
import pathlib
import platform
import tarfile
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # pylint: disable=g-import-not-at-top
import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_datasets as tfds

from s4l_jax.data import tf_views
from s4l_jax.data import views
import render_docs  # benchmarks/, the script's own folder

HERE = pathlib.Path(__file__).resolve().parent
ARCHIVE = HERE.parent.parent / "shared" / "data" / "cifar10_jpeg.tar.gz"
COMMAND = "PYTHONPATH=. python benchmarks/input_pipeline.py"
SIZE = 224
BATCH = 32


def make_jpeg_folder(root, num_images):
  """Writes root/train/<class>/*.jpg at 224 px; returns the source name."""
  if ARCHIVE.exists():
    per_class = num_images // 10
    counts = {}
    with tarfile.open(ARCHIVE) as tar:
      for member in tar:
        parts = member.name.split("/")
        if (member.isfile() and parts[0] == "train"
            and counts.get(parts[1], 0) < per_class):
          counts[parts[1]] = counts.get(parts[1], 0) + 1
          img = Image.open(tar.extractfile(member)).convert("RGB")
          out = root / "train" / parts[1]
          out.mkdir(parents=True, exist_ok=True)
          img.resize((SIZE, SIZE), Image.BICUBIC).save(out / parts[2],
                                                      quality=90)
        if len(counts) == 10 and min(counts.values()) == per_class:
          break
    return "cifar10_jpeg train, bicubic x7 upscale, q90"
  rs = np.random.RandomState(0)
  for i in range(num_images):
    out = root / "train" / f"class{i % 10}"
    out.mkdir(parents=True, exist_ok=True)
    low = rs.randint(0, 256, (28, 28, 3)).astype(np.uint8)
    Image.fromarray(low).resize((SIZE, SIZE), Image.BICUBIC).save(
        out / f"{i:05d}.jpg", quality=90)
  return "synthetic (smooth noise), q90"


def _rate(it, seconds, images_per_batch, warmup=3):
  """Source images/s of an iterator, after `warmup` batches."""
  for _ in range(warmup):
    jax.block_until_ready(next(it))
  n, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    jax.block_until_ready(next(it))
    n += images_per_batch
  return n / (time.perf_counter() - start)


def _folder_stream(folder, fn):
  """JPEG bytes of the folder's train split, repeated, mapped by `fn(features with seed)`."""
  ds = tfds.folder_dataset.ImageFolder(folder).as_dataset(
      split="train", decoders={"image": tfds.decode.SkipDecoding()})
  ds = ds.repeat().enumerate().map(lambda i, ex: {
      "image": ex["image"], "label": ex["label"], "seed": tf.stack([i, i])})
  ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return iter(tfds.as_numpy(ds.batch(BATCH).prefetch(tf.data.AUTOTUNE)))


def decode_only_stream(folder):
  """Map = decode+crop+resize only."""
  return _folder_stream(folder, lambda ex: tf_views.decode_and_inception_crop(
      ex["image"], ex["seed"], image_size=SIZE, decode=True))


def host_crop_stream(folder, view):
  """The host half of `view` as `TfdsPipeline` maps it."""
  return _folder_stream(folder, tf_views.make_tf_crop_fn(
      view, image_size=SIZE, crop="inception", decode=True))


def op_breakdown(folder, reps=30):
  """Single-thread ms per source image of the main ops (eager tf.function)."""
  jpeg = tf.io.read_file(str(next(pathlib.Path(folder).glob("train/*/*.jpg"))))
  image = tf.io.decode_jpeg(jpeg, channels=3)
  seed = tf.constant([1, 2], tf.int64)
  ops = {
      "decode_full": lambda: tf.io.decode_jpeg(jpeg, channels=3),
      "decode_crop_resize": lambda: tf_views.decode_and_inception_crop(
          jpeg, seed, image_size=SIZE, decode=True),
      "crop_and_resize_x8": lambda: tf_views._multi_crop(  # pylint: disable=protected-access
          image, tf_views._split(seed, 8), SIZE, tf_views.S4L_AREA,  # pylint: disable=protected-access
          tf_views.S4L_ASPECT),
      "canvas_x8": lambda: tf_views._canvas(  # pylint: disable=protected-access
          image, tf_views._split(seed, 8), tf_views.S4L_AREA, tf_views.S4L_ASPECT),  # pylint: disable=protected-access
  }
  out = {}
  for name, op in ops.items():
    fn = tf.function(op)
    fn()
    start = time.perf_counter()
    for _ in range(reps):
      fn()
    out[name] = (time.perf_counter() - start) / reps * 1e3
  return out


def jax_stream(view, batch, host_cropped=False):
  """Repeated jitted `views.make_view_fn(view)` on a fixed device-resident uint8 batch."""
  fn = jax.jit(views.make_view_fn(view, image_size=SIZE, crop="inception",
                                  host_cropped=host_cropped))
  batch = jax.device_put(batch)
  rng = jax.random.key(0)
  while True:
    rng, key = jax.random.split(rng)
    yield fn(key, batch)


def write_markdown(results, breakdown, cores, load, command):
  """Writes results/input_pipeline.md (the tables and their reading) and refreshes the docs."""
  path = HERE / "results" / "input_pipeline.md"
  floor = results["tf_decode_only"]
  rows = [f"| {k} | {v:.1f} | {v / floor:.2f}x |" for k, v in
          results.items()]
  b = breakdown
  section = "\n".join([
      f"Command (from the repo root): `{command}`. Source images/s **per CPU "
      f"core** ({cores} cores, {platform.processor() or platform.machine()}), "
      f"{SIZE} px JPEGs, batch {BATCH}; ratio = vs `tf_decode_only` (fused "
      "JPEG decode+crop+bilinear resize). `tf_*_u8` = tf.data with "
      "`tf_views.make_tf_crop_fn`; `jax_*` = `views.make_view_fn` jitted "
      "on in-memory uint8 batches (CPU backend here). Goals: rotate4 >= "
      "0.9x, exemplar8 >= 0.5x of decode_only.",
      "",
      "| pipeline | images/s/core | vs decode_only |",
      "| --- | --- | --- |",
      *rows,
      "",
      "**Host pipeline** (`*_u8` rows, what `TfdsPipeline` runs on the host "
      "and what bounds a TPU/GPU input pipeline): rotate4 "
      f"{results['tf_rotate4_u8'] / floor:.2f}x (goal 0.9x: "
      f"{_met(results['tf_rotate4_u8'] / floor, 0.9)}), exemplar8 "
      f"{results['tf_exemplar8_u8'] / floor:.2f}x (goal 0.5x: "
      f"{_met(results['tf_exemplar8_u8'] / floor, 0.5)}). The host only "
      "decodes and crops: rotate4 emits the same uint8 crop as train "
      "(flip and rotations on device); exemplar8 decodes once and emits the "
      "image on a 512 px uint8 canvas plus 8 boxes (the 8 resizes, flips "
      "and HSV noise run on device, `views.make_view_fn(..., "
      "host_cropped=True)`). Images larger than the canvas are downscaled "
      "to fit before the crops are taken (ImageNet: those with a side over "
      "512 px). Rows are single timed runs on a shared, loaded machine: "
      "`tf_train_u8` and `tf_rotate4_u8` run the identical host graph, so "
      "their gap is the run-to-run noise. The `jax_finish_*` rows are the "
      "device half on this machine's CPU backend, source images/s per core, "
      "for scale only: on an accelerator it is a few elementwise/gather ops "
      "on data already in device memory. The `jax_*` rows run the "
      "matmul-based resize on the CPU backend and are only a functional "
      "baseline here.",
      "",
      "Single-thread ms per source image (explains the ratios; 1-min load "
      f"average {load:.1f} on this shared machine at the end of the run): "
      "exemplar8's host work is one full decode plus the canvas "
      f"({b['decode_full'] + b['canvas_x8']:.2f} ms) instead of 8 host "
      f"resizes ({b['decode_full'] + b['crop_and_resize_x8']:.2f} ms).",
      "",
      "| op | ms |",
      "| --- | --- |",
      *[f"| {k} | {v:.2f} |" for k, v in breakdown.items()],
      ""])
  path.write_text(section)
  render_docs.after_write(str(path))


def _met(ratio, goal):
  return "met" if ratio >= goal else "NOT met"


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--num_images", type=int, default=2000)
  parser.add_argument("--seconds", type=float, default=8.0)
  args = parser.parse_args()
  cores = os.cpu_count()
  command = f"{COMMAND} --num_images {args.num_images} --seconds {args.seconds:g}"
  with tempfile.TemporaryDirectory() as tmp:
    source = make_jpeg_folder(pathlib.Path(tmp), args.num_images)
    results = {"tf_decode_only": _rate(decode_only_stream(tmp), args.seconds,
                                       BATCH)}
    crops = {}
    for view in ("train", "rotate4", "exemplar8"):
      it = host_crop_stream(tmp, view)
      results[f"tf_{view}_u8"] = _rate(it, args.seconds, BATCH)
      crops[view] = {k: v for k, v in next(it).items() if k != "label"}
    for view in ("train", "rotate4", "exemplar8"):
      results[f"jax_finish_{view}"] = _rate(
          jax_stream(view, crops[view], host_cropped=True), args.seconds, BATCH)
    files = sorted(pathlib.Path(tmp).glob("train/*/*.jpg"))[:BATCH]
    images = np.stack([np.asarray(Image.open(f)) for f in files])
    for view in ("train", "rotate4", "exemplar8"):
      results[f"jax_{view}"] = _rate(
          jax_stream(view, {"image": images}), args.seconds, BATCH)
    breakdown = op_breakdown(tmp)
  results = {k: v / cores for k, v in results.items()}
  report = {"images_per_s_per_core": results,
            "single_thread_ms_per_image": breakdown, "cores": cores,
            "load_average_1min_at_end": os.getloadavg()[0],
            "image_size": SIZE, "batch": BATCH, "source": source,
            "num_images": args.num_images, "jax_backend": jax.default_backend(),
            "command": command}
  print(json.dumps(report, indent=2))
  (HERE / "results").mkdir(exist_ok=True)
  (HERE / "results" / "input_pipeline.json").write_text(
      json.dumps(report, indent=2) + "\n")
  write_markdown(results, breakdown, cores, os.getloadavg()[0], command)


if __name__ == "__main__":
  main()
