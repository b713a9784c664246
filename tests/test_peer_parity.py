"""benchmarks/peer_parity.py without PyTorch: subset files, this project's commands (they
resolve and validate), the parity verdict and the report from finished runs."""
import json
import os
import sys

import numpy as np
from PIL import Image
import pytest

from s4l_jax import config_lib, validation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import peer_parity as pp  # pylint: disable=g-import-not-at-top,wrong-import-position
from test_benchmarks import write_events  # pylint: disable=g-import-not-at-top,wrong-import-position

CLASSES = ("ant", "bee", "cat")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """root/{train,test}/<class>/NNN.png: 20 train and 2 test 8x8 images per class, the same
  file names in every class (as the CIFAR-10 JPEG tree has)."""
  root = tmp_path_factory.mktemp("folder")
  rng = np.random.default_rng(0)
  for split, n in (("train", 20), ("test", 2)):
    for cls in CLASSES:
      os.makedirs(root / split / cls)
      for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(
            root / split / cls / f"{i:03d}.png")
  return str(root)


def settings(data, **kw):
  return dict(dict(data=data, labels="6", steps=40, seeds=[0], methods=list(pp.OURS),
                   impls=["s4l_jax", "usb"], batch=8, depth=10, width=1, evals=4), **kw)


def test_parity_verdict():
  assert pp.parity([0.40, 0.41], [0.42, 0.43])  # 2.0 points apart, stds 0.7
  assert not pp.parity([0.40, 0.41], [0.4251, 0.4251])  # 2.01 points
  assert pp.parity([0.30, 0.40], [0.42, 0.46])  # 9 points apart, 2 x std 14.1
  assert pp.parity([0.40], [0.40]) is None  # one seed: no spread to judge by
  assert pp.parity([0.40, 0.41], []) is None


def test_write_subsets(folder, tmp_path):
  lab, val = pp.write_subsets(folder, "6", 0, str(tmp_path))
  read = lambda p: open(p).read().split()
  labeled, held_out = read(lab), read(val)
  assert len(labeled) == 6 and not set(labeled) & set(held_out)
  assert sorted(p.split("/")[1] for p in labeled) == sorted(CLASSES * 2)  # 2 per class
  assert len(held_out) == 6  # the folder family's 10pct of 60
  assert all(os.path.isfile(os.path.join(folder, p)) for p in labeled + held_out)
  assert all(p.startswith("train/") for p in labeled + held_out)
  assert pp.write_subsets(folder, "6", 0, str(tmp_path)) == (lab, val)  # written once
  assert read(pp.write_subsets(folder, "6", 1, str(tmp_path))[0]) != labeled  # per seed


def apply_overrides(config, flags):
  """`--config.a.b=v` applied as main.py's flags do (a missing key fails)."""
  for flag in flags:
    key, value = flag.removeprefix("--config.").split("=", 1)
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    old = node[leaf]
    node[leaf] = (value.lower() == "true") if isinstance(old, bool) else type(old)(value)


@pytest.mark.parametrize("method", list(pp.OURS))
def test_ours_commands_resolve_and_validate(method, folder):
  a = settings(folder)
  argv = pp.ours_command(method, 1, "/w", "/r", a)
  assert argv[1] == "main.py" and argv[3] == "--workdir=/w"
  config_path, arg = argv[2].removeprefix("--config=").split(":", 1)
  config = config_lib.load_config(os.path.join(ROOT, config_path), arg)
  apply_overrides(config, argv[4:])
  assert (config.model.depth, config.model.width, config.seed) == (10, 1, 1)
  assert config.lr.base == pp.LR and config.optimizer.nesterov
  assert config.ema_decay == pytest.approx(pp.EMA_DECAY, abs=1e-6)
  assert config.input.labeled.batch_size == 8
  if method == "pseudo_label":
    assert config.teacher == "/r/s4l_jax/supervised_s1/export"
  else:
    config.input.eval_batch_size = 512  # the folder preset's 500 over the suite's 8 devices
    validation.validate(config)
  unlabeled = config.input.unlabeled.batch_size
  assert unlabeled == {"supervised": 0, "fixmatch": 56, "pseudo_label": 0}.get(method, 8)
  spec = pp.usb_spec(method, 1, "l.txt", "v.txt", "o.json", a)
  assert spec["uratio"] * spec["batch"] == (unlabeled or 8)
  assert (spec["lr"], spec["ema_m"], spec["bn_momentum"]) == (
      config.lr.base, pytest.approx(config.ema_decay, abs=1e-6), config.model.bn_momentum)


def test_report_from_finished_runs(tmp_path):
  runs = str(tmp_path / "runs")
  a = settings("/data", methods=["supervised", "fixmatch"], seeds=[0, 1])
  for seed, (ours, usb) in enumerate(((0.40, 0.41), (0.42, 0.43))):
    for method, shift in (("supervised", 0.0), ("fixmatch", 0.1)):
      d = pp.run_dir(runs, "s4l_jax", method, seed)
      os.makedirs(d)
      write_events(d, [(10, {"validation/ema_top1": ours + shift - 0.05,
                             "steps_per_s": 4.0}),
                       (20, {"validation/ema_top1": ours + shift, "steps_per_s": 5.0})])
      with open(os.path.join(d, "results.json"), "w") as f:
        json.dump(dict(steps=20, wall_s=9.0, evals={"test": {"top1": 0.0,
                                                             "ema_top1": ours + shift}}), f)
      d = pp.run_dir(runs, "usb", method, seed)
      os.makedirs(d)
      with open(os.path.join(d, "usb.json"), "w") as f:
        json.dump(dict(curve=[[20, usb]], test_top1=usb, s_per_step=0.5), f)
  methods = pp.write_report(a, runs, "pp", str(tmp_path / "out"))
  sup, fix = methods["supervised"], methods["fixmatch"]
  assert sup["s4l_jax"] == [0.40, 0.42] and sup["peer_top1"] == [0.41, 0.43]
  assert sup["parity"] and not fix["parity"]  # fixmatch: 10 points apart
  assert sup["s4l_jax_s_per_step"] == pytest.approx(0.2)  # 1 / 5 steps/s (first log dropped)
  assert sup["peer_s_per_step"] == 0.5
  assert sup["curves"]["s4l_jax"][0] == [[10, pytest.approx(0.35)], [20, pytest.approx(0.40)]]
  saved = json.load(open(tmp_path / "out" / "pp.json"))
  assert set(saved) == {"settings", "methods"} and saved["methods"]["fixmatch"]["parity"] is False
  table = open(tmp_path / "out" / "pp.md").read()
  assert "| fixmatch | 51.00 ± 1.41 (n=2) | 42.00 ± 1.41 (n=2) | **no** |" in table
  assert os.path.getsize(tmp_path / "out" / "pp.png") > 1000


def test_summary_lists_the_simclr_comparison_when_its_report_is_beside_it(tmp_path):
  assert pp.pretraining_methods(str(tmp_path)) == {}
  entry = {"peer": "lightly", "s4l_jax": [0.29, 0.30], "peer_top1": [0.28, 0.29], "parity": True}
  with open(tmp_path / pp.SIMCLR_REPORT, "w") as f:
    json.dump({"settings": {}, "methods": {"simclr": entry}}, f)
  assert pp.pretraining_methods(str(tmp_path)) == {
      "simclr": dict(entry, report="peer_parity_simclr.json")}
