"""Up-front config checks: values that make no sense and class-count mismatches fail in one
line before any work; a bad `:arg`, dataset or config file fails at flag parsing."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from s4l_jax import config_lib, evaluate, export, runner, validation
from s4l_jax.data import pipeline, sources
from s4l_jax.data.ops import registry
from test_configs import REQUIRED_ARGS
from testing_utils import ROOT, load_config, tiny, write_image_folder

CONFIGS = config_lib.config_names()
ENV = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")


def _digits(**overrides):
  """A tiny digits config with `overrides` ({"input.image_size": 4, ...}) applied."""
  config = tiny(load_config("supervised", "dataset=digits"))
  config.update_from_flattened_dict(overrides)
  return config


def _fake_export(path, class_names):
  """An export dir holding only export.json: enough for every check before scoring."""
  os.makedirs(path)
  with open(os.path.join(path, "export.json"), "w") as f:
    json.dump({"class_names": list(class_names), "num_classes": len(class_names),
               "input_size": [8, 8, 3]}, f)
  return str(path)


@pytest.mark.parametrize("overrides, match", [
    ({"total_steps": -1}, r"total_steps=-1 \(the config arg steps=\) must be >= 0"),
    ({"total_steps": 0}, r"^Set total_steps > 0 \(the config arg steps=N\) or exactly one of "
     r"total_epochs, total_unlabeled_epochs, total_examples > 0, the others 0; got all 0$"),
    ({"total_steps": 0, "total_epochs": 2.0, "total_examples": 64},
     r"; got total_epochs=2.0, total_examples=64$"),
    ({"total_examples": -5}, r"^total_examples=-5 must be >= 0$"),
    ({"lr.epochs_of": "train"}, r"lr.epochs_of='train' must be one of labeled, unlabeled"),
    ({"lr.epochs_of": "unlabeled"}, r"lr.epochs_of='unlabeled' needs an unlabeled stream"),
    ({"input.pipeline": "tfdata"}, r"digits cannot use input.pipeline=tfdata: set "
     r"input.pipeline=memory"),
    ({"input.pipeline": "disk"}, r"input.pipeline must be one of memory, tfdata, got 'disk'"),
    ({"lr.base": -0.1}, r"lr.base=-0.1 must be > 0"),
    ({"lr.base": 0.0}, r"lr.base=0.0 must be > 0"),
    ({"keep_checkpoints": 0}, r"keep_checkpoints=0 must be >= 1"),
    ({"checkpoint_every_steps": 0}, r"checkpoint_every_steps=0 must be >= 1"),
    ({"log_every_steps": 0}, r"log_every_steps=0 must be >= 1"),
    ({"eval_every_steps": -1}, r"eval_every_steps=-1 must be >= 0"),
    ({"input.labeled.batch_size": 0}, r"input.labeled.batch_size=0 must be >= 1"),
    ({"input.eval_batch_size": 0}, r"input.eval_batch_size=0 must be >= 1"),
    ({"input.image_size": 0}, r"input.image_size=0 must be >= 8"),
    ({"input.image_size": 7}, r"input.image_size=7 must be >= 8"),
    ({"input.unlabeled.batch_size": -8}, r"input.unlabeled.batch_size=-8 must be >= 0"),
    ({"input.labeled.source": "teacher"},
     r"^input.labeled.source='teacher' must be one of labeled, unlabeled, pseudo$"),
    ({"input.unlabeled.source": "pseudo", "input.unlabeled.batch_size": 16},
     r"^input.unlabeled.source='pseudo' needs pseudo-labels: set teacher=DIR/export"),
    ({"ema_decay": 1.0}, r"ema_decay=1.0 must be in \[0, 1\) \(0 = use ema_halflife_epochs\)"),
    ({"ema_decay": -0.5}, r"ema_decay=-0.5 must be in \[0, 1\)"),
    ({"ema_decay": 0.999, "ema_halflife_epochs": 1.0},
     r"set ema_decay=0.999 or ema_halflife_epochs=1.0, not both \(the other 0\)"),
    ({"pseudo_label_threshold": 1.5}, r"pseudo_label_threshold=1.5 must be in \[0, 1\]"),
    ({"pseudo_label_threshold": -0.1}, r"pseudo_label_threshold=-0.1 must be in \[0, 1\]"),
    ({"pseudo_label_type": "argmax"}, r"^pseudo_label_type='argmax' must be one of hard, soft$"),
    ({"pseudo_label_temperature": 0.0}, r"^pseudo_label_temperature=0.0 must be > 0$"),
    ({"pseudo_label_per_class": -1}, r"^pseudo_label_per_class=-1 must be >= 0 \(0 = no"),
    ({"model.dropout": 1.0}, r"^model.dropout=1.0 must be in \[0, 1\) \(0 = off\)$"),
    ({"model.stochastic_depth": 0.0}, r"^model.stochastic_depth=0.0 must be in \(0, 1\]"),
    ({"model.stochastic_depth": 1.2}, r"^model.stochastic_depth=1.2 must be in \(0, 1\]"),
    ({"input.validation": "all"}, r"input.validation='all' is not a validation size"),
    ({"input.validation": "5%"}, r"input.validation='5%' is not a validation size"),
    ({"evals.test.split": "train"}, r"evals.test.split='train' must be one of validation, test"),
    ({"evals.test.split": "validation"}, r"evals has no evaluator with split='test'"),
    ({"input.validation": "0", "eval_every_steps": 5},
     r"eval_every_steps=5 evaluates on the validation split, but input.validation='0'"),
])
def test_values_that_make_no_sense_are_rejected(overrides, match):
  with pytest.raises(ValueError, match=match):
    validation.validate(_digits(**overrides))


def test_a_pseudo_stream_must_make_one_view_per_image():
  config = _digits()
  config.pseudo_labels = "/x/pl.npz"
  config.input.pseudo = dict(source="pseudo", batch_size=16, view="rotate4")
  with pytest.raises(ValueError, match=r"^objective supervised needs input.pseudo.view making 1 "
                     r"copy per image, got 'rotate4' \(4\)$"):
    validation.validate_config(config)
  config.input.pseudo.view = "train"
  validation.validate_config(config)


def test_unknown_vat_normalization_is_rejected():
  config = tiny(load_config("vat", "dataset=digits"))
  config.loss.vat_normalization = "tf"
  with pytest.raises(ValueError, match=r"^loss.vat_normalization='tf' must be one of "
                     r"exact_eps, released \(objective vat\)$"):
    validation.validate(config)


@pytest.mark.parametrize("key", ["trainable", "init_take"])
def test_unknown_subtree_names_are_rejected(key):
  with pytest.raises(ValueError, match=rf"^{key}='trunk\+rotations': unknown subtree "
                     r"'rotations'; valid: all, heads, trunk, head_classes \(joined with \+\)$"):
    validation.validate(_digits(**{key: "trunk+rotations"}))
  validation.validate(_digits(**{key: "trunk+classes"}))


def test_edge_values_are_valid():
  validation.validate(_digits(**{"model.dropout": 0.0, "model.stochastic_depth": 1.0}))
  validation.validate(_digits(**{"model.dropout": 0.99, "model.stochastic_depth": 0.01,
                                 "pseudo_label_type": "soft", "pseudo_label_per_class": 1}))
  validation.validate(_digits(**{"input.image_size": 8, "pseudo_label_threshold": 1.0,
                                 "eval_every_steps": 0, "keep_checkpoints": 1,
                                 "input.unlabeled.batch_size": 0}))
  validation.validate(_digits(total_steps=0, total_epochs=0.5))
  validation.validate(_digits(total_steps=0, total_examples=100))


def test_steps_arg_below_zero_is_rejected():
  with pytest.raises(ValueError, match=r"total_steps=-1 \(the config arg steps=\)"):
    validation.check_values(load_config("supervised", "dataset=digits,steps=-1"))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_passes(name):
  config = load_config(name, REQUIRED_ARGS.get(name, "") + "dataset=digits")
  for stage in config.stages.values() if "stages" in config else [config]:
    validation.check_values(stage)


def test_moam_stage_error_names_the_stage(tmp_path):
  config = load_config("moam", "dataset=digits")
  config.stages.step2.lr.base = -1.0
  with pytest.raises(ValueError, match=r"^stages.step2: lr.base=-1.0 must be > 0"):
    runner.run_stages(config, str(tmp_path))
  assert not os.listdir(tmp_path)


def test_one_class_dataset_is_rejected(tmp_path):
  root = write_image_folder(tmp_path / "data", classes=("ant",), per_class=(2, 1))
  with pytest.raises(ValueError, match=r"has 1 class \(ant\); classification needs at least 2"):
    validation.validate(_digits(dataset=f"folder:{root}"))


@pytest.mark.parametrize("teacher, dataset, match", [
    ([str(d) for d in range(10)], "folder", r"predicts 10 classes \(0, 1, 2, 3, 4, \.\.\.\) "
                                            r"but folder:\S+ has 3 classes \(ant, bee, cat\)"),
    (["ant", "bee", "cat"], "digits", r"predicts 3 classes \(ant, bee, cat\) but digits has "
                                      r"10 classes"),
    (["a", "b", "c"], "folder", r"predicts 3 classes \(a, b, c\) but folder:\S+ has 3 classes "
                                r"\(ant, bee, cat\)"),
])
def test_teacher_with_other_classes_is_rejected(tmp_path, teacher, dataset, match):
  if dataset == "folder":
    dataset = f"folder:{write_image_folder(tmp_path / 'data', per_class=(1, 1))}"
  config = _digits(dataset=dataset, teacher=_fake_export(tmp_path / "teacher", teacher))
  with pytest.raises(ValueError, match=r"^teacher \S+ " + match):
    validation.validate(config)


def test_teacher_with_the_same_classes_passes(tmp_path):
  teacher = _fake_export(tmp_path / "teacher", [str(d) for d in range(10)])
  validation.validate(_digits(teacher=teacher))


def test_init_from_another_class_count_is_allowed(tmp_path):
  """Fine-tuning from an export of other classes re-initialises the head: legitimate."""
  validation.validate(_digits(init_from=_fake_export(tmp_path / "pre", ["ant", "bee"])))


@pytest.mark.parametrize("labels", [[0, 1, 3], [0, -1, 2]])
def test_pseudo_labels_out_of_range_are_rejected(tmp_path, labels):
  path = str(tmp_path / "pl.npz")
  np.savez(path, labels=np.asarray(labels), confidence=np.ones(3))
  with pytest.raises(ValueError, match=r"hold 1 labels outside \[0, 3\)"):
    pipeline.load_pseudo_labels(path, 3, 3)
  np.savez(path, labels=np.asarray([0, 1, 2]), confidence=np.ones(3))
  np.testing.assert_array_equal(pipeline.load_pseudo_labels(path, 3, 3)[0], [0, 1, 2])


def test_evaluate_export_on_other_classes_fails_before_scoring(tmp_path):
  export_dir = _fake_export(tmp_path / "export", [str(d) for d in range(10)])  # no predict.jax
  root = write_image_folder(tmp_path / "data", per_class=(1, 1))
  with pytest.raises(ValueError, match=r"predicts 10 classes .* has 3 classes \(ant, bee, cat\)"):
    evaluate.evaluate_export(export_dir, f"folder:{root}")
  proc = subprocess.run(
      [sys.executable, "-m", "s4l_jax.evaluate", f"--export_dir={export_dir}",
       f"--dataset=folder:{root}"], cwd=ROOT, env=ENV, capture_output=True, text=True,
      timeout=120, check=False)
  assert proc.returncode != 0
  lines = proc.stderr.strip().splitlines()
  assert len(lines) <= 2 and lines[-1].startswith("ERROR: export "), proc.stderr[-2000:]


def test_export_without_a_classifier_is_no_teacher(tmp_path):
  export_dir = _fake_export(tmp_path / "export", [])  # e.g. converted with --head=none
  with pytest.raises(ValueError, match=r"^frozen teacher .* has no classifier \(features only"):
    export.check_classes(export_dir, {"class_names": []}, "digits", ["0", "1"],
                                    role="frozen teacher")


@pytest.mark.slow
@pytest.mark.parametrize("config, match", [
    ("configs/supervised.py:datset=digits", r"Unknown config arg 'datset'; valid args: "
                                            r"dataset, evals, fidelity, labels, regime, steps"),
    ("configs/supervised.py:dataset=digitz", r"Unknown dataset 'digitz'; valid: "),
    ("configs/supervised.py:dataset=digits,steps=x", r"Config arg steps='x' is not a int"),
    ("configs/supervsed.py:dataset=digits", r"no config file 'configs/supervsed.py'"),
])
def test_bad_config_flag_fails_in_one_line(tmp_path, config, match):
  proc = subprocess.run([sys.executable, "main.py", f"--config={config}",
                         f"--workdir={tmp_path / 'w'}"], cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=60, check=False)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-2000:]
  assert lines[0].startswith("FATAL Flags parsing error: ")
  assert re.search(match, lines[0]), lines[0]
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.parametrize("overrides, match", [
    ({"input.labeled.view": "pad_crop|flipp"},
     r"^input.labeled.view 'pad_crop\|flipp': unknown op 'flipp'; valid: a named view "
     r"\(train, rotate4, exemplar8, jigsaw, relative_position, simclr2, simclr_train, eval, "
     r"simclr_eval\) or "
     r"crop_op\[\(args\)\]\[\*N\]\|op\[\(args\)\]\[@k\]\|... with crop ops \(inception_crop, "
     r"pad_crop, central_crop, simclr_crop, central_crop_875, resize_small_crop\) and ops "
     r"\(hsv_noise, "),
    ({"input.unlabeled.view": "rotate"}, r"^input.unlabeled.view 'rotate': unknown op 'rotate'"),
    ({"input.labeled.view": "flip|pad_crop"},
     r"view 'flip\|pad_crop': exactly one crop op, first \(inception_crop, pad_crop, "),
    ({"input.crop": "random"}, r"input.crop='random' must be one of inception, pad_crop, none"),
])
def test_bad_view_is_rejected_naming_the_op_and_the_valid_ones(overrides, match):
  with pytest.raises(ValueError, match=match):
    validation.validate(_digits(**overrides))


@pytest.mark.parametrize("key, value, named", [
    ("input.labeled.view", "device_only|flip", r"input.labeled.view 'device_only\|flip'"),
    ("input.eval_crop", "device_only", r"input.eval_crop='device_only'")])
def test_tfdata_refuses_a_device_only_crop_before_compiling(monkeypatch, key, value, named):
  monkeypatch.setitem(registry.CROPS, "device_only", lambda: registry.Crop(
      lambda rng, images, size, view: images, random=False))
  config = _digits(**{key: value})
  validation.check_values(config)  # the in-memory pipeline runs its device implementation
  config.input.pipeline = "tfdata"
  with pytest.raises(ValueError, match=rf"^{named}: crop op 'device_only' has no tf.data "
                     r"twin: tf.data supports inception_crop, "):
    validation.check_values(config)


def test_random_eval_crop_is_rejected_before_compiling():
  with pytest.raises(ValueError, match=r"^input.eval_crop='pad_crop' must be one "
                     r"deterministic crop op call \(e.g. resize_small_crop\(1.0\); "):
    validation.check_values(_digits(**{"input.eval_crop": "pad_crop"}))


def test_composed_view_is_valid():
  validation.validate(_digits(**{"input.labeled.view": "inception_crop|flip|hsv_noise"}))


@pytest.mark.slow
def test_bad_view_op_fails_in_one_line_from_main(tmp_path):
  proc = subprocess.run([sys.executable, "main.py", "--config=configs/supervised.py:dataset=digits",
                         "--config.input.labeled.view=pad_crop|flipp",
                         f"--workdir={tmp_path / 'w'}"], cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=120, check=False)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-2000:]
  assert lines[0].startswith("ERROR: input.labeled.view 'pad_crop|flipp': unknown op 'flipp'")
  assert not os.path.exists(tmp_path / "w" / "checkpoints")


def _save(path, width, height):
  Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(path)


def test_non_square_folder_images_are_squashed_with_one_warning(tmp_path, caplog):
  root = write_image_folder(tmp_path / "data", per_class=(2, 1), size=12)
  _save(os.path.join(root, "train", "ant", "wide.png"), 12, 8)
  _save(os.path.join(root, "train", "bee", "tall.png"), 8, 12)
  caplog.set_level("WARNING")
  data = sources.load_split(f"folder:{root}", "train", image_size=8)
  assert data.images.shape == (8, 8, 8, 3)
  warnings = [r.getMessage() for r in caplog.records if "not square" in r.getMessage()]
  assert len(warnings) == 1 and "2 of 8 images are not square; squashed to 8x8 (no crop)" in (
      warnings[0]), warnings
  caplog.clear()
  sources.load_split(f"folder:{root}", "test", image_size=8)  # all square: no warning
  assert not [r for r in caplog.records if "not square" in r.getMessage()]


@pytest.mark.parametrize("override,message", [
    ({"evals.knn": {"kind": "knm"}}, r"^evals.knn.kind='knm' must be one of top1, knn, "),
    ({"evals.fgsm": {"kind": "fgsm", "eps": (1.0, 0.0)}},
     r"^evals.fgsm.eps=\(1.0, 0.0\) must all be > 0 \(pixel levels\)$"),
    ({"median_of_last": 0}, r"^median_of_last=0 must be >= 1$"),
])
def test_bad_evaluator_fails_in_one_line(override, message):
  config = load_config("supervised", "dataset=digits")
  for key, value in override.items():
    if isinstance(value, dict):
      config.evals[key.split(".")[1]] = value
    else:
      config[key] = value
  with pytest.raises(ValueError, match=message):
    validation.check_values(config)
    validation.check_evals(config)


def test_batches_larger_than_their_data_are_warned_in_one_line_each():
  config = load_config("fixmatch", "dataset=digits")
  config.input.labeled.batch_size, config.input.eval_batch_size = 512, 100000
  warnings = validation.batch_warnings(config, num_labeled=10, num_eval=360)
  assert warnings == [
      "input.labeled.batch_size=512 exceeds the 10 labeled images: each step repeats every one "
      "about 51 times",
      "input.eval_batch_size=100000 exceeds the 360 images of the largest evaluated split: one "
      "padded batch (memory for nothing)"]
  config.input.labeled.batch_size, config.input.eval_batch_size = 10, 360
  assert not validation.batch_warnings(config, num_labeled=10, num_eval=360)
