"""Smoke tests of the benchmark scripts' command, table and JSON logic (no training)."""
import json
import os
import struct
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import activation_memory  # pylint: disable=g-import-not-at-top,wrong-import-position
import digits_seeds  # pylint: disable=g-import-not-at-top,wrong-import-position
import label_efficiency as le  # pylint: disable=g-import-not-at-top,wrong-import-position
import simclr_memory  # pylint: disable=g-import-not-at-top,wrong-import-position
import step_cost  # pylint: disable=g-import-not-at-top,wrong-import-position
import vat_normalization  # pylint: disable=g-import-not-at-top,wrong-import-position

SETTINGS = dict(dataset="folder:/data/c10", labels="4000", steps=60, batch=16,
                model="depth=10,width=2", evals=6, warmup_frac=0.05, ema_frac=0.02,
                num_train=50000)


def write_events(logdir, scalars):
  """An events file of `[(step, {tag: value})]`: TFRecord framing, CRCs left zero (the reader
  ignores them; tensorboard's writer would import TensorFlow, ~20 s)."""
  from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
  with open(os.path.join(logdir, "events.out.tfevents.0.fake"), "wb") as f:
    for step, values in scalars:
      summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=v)
                                           for k, v in values.items()])
      data = event_pb2.Event(step=step, summary=summary).SerializeToString()
      f.write(struct.pack("<QI", len(data), 0) + data + struct.pack("<I", 0))


def fake_run(workdir, top1s, wall=10.0, stages=None, test_top1=None):
  """A finished run directory: results.json (test top-1 `test_top1`, default the last
  validation one) and TensorBoard `validation/top1` evals every 10 steps (`test/top1` at the
  end, which selection must ignore)."""
  test_top1 = top1s[-1] if test_top1 is None else test_top1
  eval_dir = os.path.join(workdir, stages[-1]) if stages else workdir
  os.makedirs(eval_dir, exist_ok=True)
  write_events(eval_dir, [(10 * (i + 1), {"validation/top1": v, "loss": 1.0})
                          for i, v in enumerate(top1s)]
               + [(10 * len(top1s), {"test/top1": test_top1})])
  res = dict(steps=10 * len(top1s), top1=test_top1, top5=0.9, validation_top1=top1s[-1],
             validation_top5=0.9, wall_s=wall, images_per_s=100.0,
             evals={"validation": {"top1": top1s[-1]}, "test": {"top1": test_top1}})
  if stages:  # earlier stages score 0.1 less per stage back
    res = dict(res, stages={s: dict(res, top1=test_top1 - 0.1 * (len(stages) - 1 - i),
                                     validation_top1=top1s[-1] - 0.1 * (len(stages) - 1 - i))
                            for i, s in enumerate(stages)})
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(res, f)


def test_parse_methods():
  assert le.parse_methods(["supervised:0+1", "vat"], ["3"]) == [("supervised", [0, 1]),
                                                               ("vat", [3])]
  with pytest.raises(ValueError, match="Unknown method"):
    le.parse_methods(["flexmatch"], ["0"])


def test_commands_chain_prerequisites():
  cmds = le.commands("pseudo_label", 1, "/r", SETTINGS)
  assert [w for w, _ in cmds] == ["/r/supervised_s1", "/r/pseudo_label_s1"]
  student = " ".join(cmds[1][1])
  assert "teacher=/r/supervised_s1/export" in student and "--config.seed=1" in student
  assert "--config.lr.warmup_epochs=0.00096" in student  # 3 of 50000 // 16 steps/epoch
  rot, ft = le.commands("rotation_finetune", 0, "/r", SETTINGS)
  assert "pretrained=/r/rotation_s0/export" in " ".join(ft[1])
  assert "--config.input.unlabeled.batch_size=16" in rot[1]
  assert "--config.input.unlabeled.batch_size=16" not in ft[1]
  (moam_dir, moam), = le.commands("moam", 0, "/r", SETTINGS)
  assert moam_dir == "/r/moam_s0" and "--config.stages.step3.model.width=2" in moam
  assert "--config.stages.step1.ema_halflife_epochs=0.0048" in moam
  assert not any(a.startswith("--config.stages.step3.lr.warmup") for a in moam)
  (_, fixmatch), = le.commands("fixmatch", 0, "/r", SETTINGS)
  assert "--config.input.unlabeled.batch_size=112" in fixmatch  # mu = 7
  assert "--config.ema_decay=0.561231" in fixmatch  # half-life 0.02 * 60 = 1.2 steps
  assert "--config.checkpoint_every_steps=10" in fixmatch  # at each of the 6 evaluations
  (ns_dir, ns), = le.commands("noisy_student", 0, "/r", SETTINGS)
  assert ns_dir == "/r/noisy_student_s0" and "iterations=2" in ns[2]
  assert "--config.stages.student2.lr.warmup_epochs=0.00096" in ns  # students: all images
  assert "--config.stages.student2.model.width=2" in ns
  assert "--config.stages.teacher.input.labeled.batch_size=16" in ns
  (sc_dir, sc), = le.commands("simclrv2", 0, "/r", SETTINGS)
  assert sc_dir == "/r/simclrv2_s0" and sc[2] == "--config=configs/simclrv2.py:" \
      "dataset=folder:/data/c10,labels=4000,steps=60,regime=small"
  for stage, unlabeled in (("pretrain", True), ("finetune", False), ("distill", True)):
    assert f"--config.stages.{stage}.model.width=2" in sc
    assert (f"--config.stages.{stage}.input.unlabeled.batch_size=16" in sc) == unlabeled
  assert not any(a.startswith("--config.stages.finetune.lr.warmup") for a in sc)
  assert not any(a.startswith("--config.run_stages") for a in sc)  # default: all three
  (_, sc2), = le.commands("simclrv2", 0, "/r", dict(SETTINGS, simclrv2_stages="pretrain+finetune"))
  assert sc2 == sc + ["--config.run_stages=pretrain+finetune"]


def test_report_from_fake_runs(tmp_path):
  runs = str(tmp_path / "runs")
  fake_run(os.path.join(runs, "supervised_s0"), [0.1, 0.2, 0.3, 0.4, 0.5, 0.45],
           test_top1=0.9)
  fake_run(os.path.join(runs, "supervised_s1"), [0.1, 0.2, 0.3, 0.4, 0.5, 0.55],
           test_top1=0.7)
  fake_run(os.path.join(runs, "rotation_s0"), [0.1], wall=5.0)
  fake_run(os.path.join(runs, "rotation_finetune_s0"), [0.2, 0.3], wall=7.0)
  fake_run(os.path.join(runs, "moam_s0"), [0.3, 0.6], stages=["step1", "step2", "step3"])
  methods = le.parse_methods(["supervised:0+1", "rotation_finetune", "moam", "vat"], ["0"])
  summary = le.write_report(methods, runs, SETTINGS, "t", str(tmp_path / "out"))
  sup = summary["supervised"]
  assert sup["test_top1"] == pytest.approx(0.8) and sup["test_top1_std"] > 0  # test, once
  assert sup["val_top1"] == pytest.approx(0.5)  # the final validation evals 0.45, 0.55
  assert sup["best_val_top1"] == pytest.approx(0.525)  # on validation only, never test's 0.9
  assert sup["median5_val_top1"] == pytest.approx(0.4)  # median of 0.2 .. 0.5 / 0.55
  assert summary["rotation_finetune"]["wall_s"] == pytest.approx(12.0)
  assert summary["moam"]["test_top1"] == pytest.approx(0.6) and "vat" not in summary
  with open(tmp_path / "out" / "t.json") as f:
    saved = json.load(f)
  assert saved["runs"]["moam"][0]["curve"] == [[10, pytest.approx(0.3)], [20, pytest.approx(0.6)]]
  table = (tmp_path / "out" / "t.md").read_text()
  assert "| supervised | 0,1 | 80.00 ± 14.14 | 50.00 ± 7.07 | 52.50 ± 3.54 |" in table
  assert "- moam: step1 40.00 / 40.00, step2 50.00 / 50.00, step3 60.00 / 60.00" in table
  assert "stages" not in summary["supervised"] and "- supervised" not in table
  assert (tmp_path / "out" / "t.png").stat().st_size > 0


def test_step_cost_markdown():
  row = dict(method="supervised", step_s=0.1, images_per_step=32, ms_per_image=3.125, ratio=1.0,
             tfdata_step_s=0.05, tfdata_ratio=1.0)
  mem = dict(model="resnet50v2", dtype="float32", remat=False, image_size=224, batch="8+8",
             params=375e6, backend="cpu", state_bytes=2**32, grad_bytes=2**30,
             saved_bytes=2**33, estimate_gib=13.0, compile_s=100.0,
             argument_size_in_bytes=2**31, temp_size_in_bytes=2**32, peak_gib=6.0)
  traced_only = {k: v for k, v in mem.items() if k not in (
      "compile_s", "argument_size_in_bytes", "temp_size_in_bytes", "peak_gib")}
  md = step_cost.to_markdown(dict(model="wrn-10-2", batch=32, backend="cpu", methods=[row],
                                  memory=[mem, dict(traced_only, remat=True)]))
  assert "| supervised | 32 | 0.100 | 3.125 | 1.00x | 0.050 | 1.00x |" in md
  assert "| float32 | False | 4.00 | 1.00 | 8.00 | 13.00 | 4.00 | 6.00 |" in md
  assert "| float32 | True | 4.00 | 1.00 | 8.00 | 13.00 | - | - |" in md


@pytest.mark.slow
def test_step_cost_per_step_wait_is_timed_against_free_queuing():
  c = step_cost.method_config("supervised", "folder:/unused", 2,
                              dict(name="wrn", depth=10, width=1))
  c.input.image_size = 8
  q = step_cost.time_queue(c, (8, 8, 3), steps=3, repeats=2)
  assert set(q["runs"]) == {"queued", "waited"} and all(len(v) == 2 for v in q["runs"].values())
  assert q["min"]["queued_s_per_step"] == min(q["runs"]["queued"])
  assert q["median"]["waited_s_per_step"] == pytest.approx(np.median(q["runs"]["waited"]))
  assert q["min"]["overhead"] == pytest.approx(
      min(q["runs"]["waited"]) / min(q["runs"]["queued"]) - 1)
  timing = dict(queued_s_per_step=0.1, waited_s_per_step=0.101, overhead=0.01)
  md = step_cost.to_markdown(dict(methods=[], queue=dict(q, median=timing, min=timing)))
  assert ("Per-step wait (supervised, 3 steps x 2, min): 100.00 ms/step queued freely, "
          "101.00 ms/step waiting on each previous step (+1.0%)") in md


def test_saved_activation_bytes_closed_form():
  w = jax.ShapeDtypeStruct((64, 32), jnp.float32)
  sin_sum = lambda w: jnp.sum(jnp.sin(w))
  saved = activation_memory.saved_activation_bytes
  assert saved(sin_sum, w) == 64 * 32 * 4  # cos(w) for the VJP
  w16 = jax.ShapeDtypeStruct((64, 32), jnp.bfloat16)
  assert saved(sin_sum, w16) == 64 * 32 * 2
  # Rematerialised: the backward pass recomputes cos(w) from w, an argument (not counted).
  assert saved(jax.checkpoint(sin_sum), w) == 0
  assert activation_memory.tree_bytes({"a": w, "b": [w16]}) == 64 * 32 * 6


def test_claim_is_exclusive_while_the_holder_lives(tmp_path):
  assert le._claim(str(tmp_path))  # pylint: disable=protected-access
  assert not le._claim(str(tmp_path))  # pylint: disable=protected-access
  (tmp_path / ".running").write_text("999999999")  # a dead holder
  assert le._claim(str(tmp_path))  # pylint: disable=protected-access


def test_step_cost_image_accounting():
  count = lambda name: step_cost.images_per_step(step_cost.method_config(
      name, "folder:/x", 32, dict(depth=10, width=1)))
  assert [count(m) for m in ("supervised", "vat", "s4l_rotation", "s4l_exemplar",
                             "moam_step1")] == [32, 192, 256, 512, 512]


def test_step_cost_host_crops_per_view():
  """The tf.data step is fed K host crops per image for a view of K crops."""
  c = step_cost.load_config("simclrv2_pretrain", "dataset=imagenet2012,labels=10pct")
  c.input.labeled.batch_size, c.input.unlabeled.batch_size = 2, 3
  raw = step_cost.raw_batch(c, (8, 8, 3), abstract=True, views_on_device=False)
  assert raw["labeled"]["image"].shape == (2, 2, 8, 8, 3)
  assert raw["unlabeled"]["image"].shape == (3, 2, 8, 8, 3)
  assert step_cost.raw_batch(c, (8, 8, 3), abstract=True)["labeled"]["image"].shape == (2, 8, 8, 3)


@pytest.mark.slow
def test_simclr_memory_accounting():
  """Parameters, LARS momentum (+ its step count) and gradients are 4 bytes per parameter;
  bfloat16 keeps less than float32 and remat less again; the table shows every row."""
  rows = [simclr_memory.memory_row("r26_1x", row, 1)
          for row in ("float32", "bfloat16", "bfloat16+remat")]
  r = rows[0]
  assert r["trunk_params"] == 13_946_176 and r["views"] == 2
  assert r["param_bytes"] == r["grad_bytes"] == 4 * r["params"]
  assert r["opt_bytes"] == 4 * r["params"] + 4
  assert rows[0]["saved_bytes"] > rows[1]["saved_bytes"] > rows[2]["saved_bytes"] > 0
  assert simclr_memory.estimate_bytes(r) == (3 * 4 * r["params"] + 4 + r["stats_bytes"]
                                             + r["saved_bytes"])
  assert simclr_memory.estimate_bytes(r, 4) == (6 * r["params"] + 1 + r["stats_bytes"]
                                                + r["saved_bytes"])
  for row in rows:
    row.update(device="d", memory_gib=16, estimate_bytes=1, fits=True,
               sharded_estimate_bytes=1, sharded_fits=False)
  md = simclr_memory.to_markdown(dict(preset="r26_1x", backend="cpu", rows=rows,
                                      gpus_for_4096={"float32": 2}))
  assert md.count("| d | 16 | 1 (2) |") == 3 and "needs this many GPUs: float32: 2." in md


@pytest.mark.slow
def test_vat_shortening_factor_is_gradient_norm_over_1e_6(x64):
  """factor = min(1, |g| / 1e-6), g = grad_r mean KL(p(x + r) || p(x)) at r = xi d0 / |d0|,
  on a linear softmax model in float64 (in float32 at xi = 1e-6, x + r mostly rounds to x and
  g is rounding noise); a last partial batch is dropped."""
  del x64
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  class Linear(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      del train
      return {"classes": nn.Dense(4, param_dtype=jnp.float64)(x.reshape(x.shape[0], -1))}

  model = Linear()
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (7, 3, 3, 2)), jnp.float64)
  variables = {"batch_stats": {}, **model.init(jax.random.PRNGKey(1), x, train=False)}
  rng = jax.random.PRNGKey(2)
  for xi, scale in ((1e-6, 0.05), (1e-2, 20.0)):
    variables["params"] = jax.tree.map(lambda p: p * scale, variables["params"])  # pylint: disable=cell-var-from-loop
    got = vat_normalization.shortening_factors(model, variables, x, rng, batch=3, xi=xi,
                                               kl_direction="perturbed_clean")
    assert got.shape == (6,)
    want = []
    for i, key in zip((0, 3), jax.random.split(rng, 2)):
      xb = x[i:i + 3]
      logits = lambda v: model.apply(variables, v, train=False)["classes"]  # pylint: disable=cell-var-from-loop
      d0 = jax.random.normal(key, xb.shape, xb.dtype)
      r = xi * d0 / jnp.linalg.norm(d0.reshape(3, -1), axis=1)[:, None, None, None]
      kl = lambda r: jnp.mean(jnp.sum(jax.nn.softmax(logits(xb + r)) * (  # pylint: disable=cell-var-from-loop
          jax.nn.log_softmax(logits(xb + r)) - jax.nn.log_softmax(logits(xb))), -1))  # pylint: disable=cell-var-from-loop
      g = jax.grad(kl)(r)
      want.append(np.minimum(1.0, np.linalg.norm(np.asarray(g).reshape(3, -1), axis=1) / 1e-6))
    np.testing.assert_allclose(got, np.concatenate(want), rtol=1e-6)
    assert (got < 1).all() if xi == 1e-6 else (got == pytest.approx(1.0))


@pytest.mark.slow
def test_cpu_peer_times_the_jax_arms_and_their_losses_agree(tmp_path):
  """benchmarks/cpu_peer.py end to end without PyTorch (an optional extra): both jax arms
  (main.py's CPU flags on and off) start from the same weights and batch, so their first
  losses agree to float32 rounding; every phase is timed and tabled."""
  out = tmp_path / "peer"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "cpu_peer.py"),
                  "--arms=s4l_jax,s4l_jax_no_flags", "--batches=4", "--rounds=1", "--steps=1",
                  "--warmup=1", "--depth=10", "--width=1", "--phases=step,forward,grad",
                  f"--out={out}"], check=True, env=env, capture_output=True, text=True)
  result = json.loads((tmp_path / "peer.json").read_text())
  arms = result["batches"]["4"]
  assert set(arms) == {"s4l_jax", "s4l_jax_no_flags"}
  assert "ynn_fusion_type" in arms["s4l_jax"]["xla_flags"]
  assert "ynn_fusion_type" not in arms["s4l_jax_no_flags"]["xla_flags"]
  assert arms["s4l_jax_no_flags"]["first_loss_diff_vs_s4l_jax"] < 1e-5
  for r in arms.values():
    assert set(r["phases"]) == {"step", "forward", "grad"}
    assert r["wall_s"] > 0 and r["cpu_s"] > 0
    assert len(r["losses"]) == 2  # one warm-up step and one timed step
  md = (tmp_path / "peer.md").read_text()
  assert "| 4 | s4l_jax_no_flags |" in md and "backward / forward" in md


def test_control_runs_the_recipe_with_its_unlabeled_loss_off():
  assert le.parse_methods(["fixmatch_control"], ["0"]) == [("fixmatch_control", [0])]
  with pytest.raises(ValueError, match="_control"):
    le.parse_methods(["supervised_control"], ["0"])
  (_, recipe), = le.commands("fixmatch", 0, "/r", SETTINGS)
  (workdir, control), = le.commands("fixmatch_control", 0, "/r", SETTINGS)
  assert workdir == "/r/fixmatch_control_s0"
  assert control == recipe[:3] + ["--workdir=/r/fixmatch_control_s0"] + recipe[4:] + [
      "--config.loss.unlabeled_weight=0.0"]


def test_pseudo_label_signal(tmp_path):
  write_events(str(tmp_path), [(s, {"mask_rate": m, "mask_correct_rate": c})
                               for s, m, c in ((10, 0.0, 0.0), (20, 0.5, 0.25), (30, 0.4, 0.3))])
  stats = le.pseudo_label_stats(le.events.read_scalars(str(tmp_path)))
  assert stats["pseudo_label_curve"] == [(10, 0.0, None), (20, 0.5, 0.5),
                                         (30, pytest.approx(0.4), pytest.approx(0.75))]
  assert stats["mask_rate"] == pytest.approx(0.4)  # the last 10 % of 3 logs: the last one
  assert stats["masked_pseudo_label_accuracy"] == pytest.approx(0.75)


def test_learning_rate_sweep_rows():
  assert le.parse_methods(["fixmatch_control@0.1:2"], ["0"]) == [("fixmatch_control@0.1", [2])]
  for bad in ("moam@0.1", "fixmatch@fast"):
    with pytest.raises(ValueError, match="@lr"):
      le.parse_methods([bad], ["0"])
  (_, recipe), = le.commands("fixmatch_control", 0, "/r", SETTINGS)
  (workdir, swept), = le.commands("fixmatch_control@0.1", 0, "/r", SETTINGS)
  assert workdir == "/r/fixmatch_control@0.1_s0"
  assert swept == recipe[:3] + [f"--workdir={workdir}"] + recipe[4:] + ["--config.lr.base=0.1"]


@pytest.mark.slow
def test_digits_seeds_table_at_tiny_size(tmp_path):
  """2 seeds of supervised at 2 steps: each seed's own workdir and results, the row's mean and
  sample std of their top-1, the markdown line; the seeds differ in the config only."""
  overrides = digits_seeds.parse_overrides(
      ["total_steps=2", "model.depth=10", "model.width=1", "input.image_size=8",
       "input.labeled.batch_size=16"])
  assert overrides["total_steps"] == 2 and overrides["model.depth"] == 10
  result = digits_seeds.run_table(["supervised"], 2, str(tmp_path), overrides)
  top1 = []
  for seed in range(2):
    with open(tmp_path / "supervised" / f"seed{seed}" / "config.json") as f:
      assert json.load(f)["seed"] == seed
    with open(tmp_path / "supervised" / f"seed{seed}" / "results.json") as f:
      top1.append(100 * json.load(f)["top1"])
  row = result["rows"][0]
  assert row["top1"] == top1 and row["seeds"] == 2
  assert row["mean"] == pytest.approx(np.mean(top1))
  assert row["std"] == pytest.approx(np.std(top1, ddof=1))
  md = digits_seeds.to_markdown(result)
  assert (f"| supervised | `configs/supervised.py:dataset=digits` | {row['mean']:.2f} ± "
          f"{row['std']:.2f} | {min(top1):.2f}-{max(top1):.2f} |") in md
  moam = digits_seeds.run_config("moam", 3, overrides)
  assert {stage.seed for stage in moam.stages.values()} == {3}


def test_digits_seeds_keeps_the_rows_of_methods_a_run_leaves_out():
  row = lambda m, mean: dict(method=m, mean=mean)
  previous = dict(seeds=5, overrides={}, rows=[row("supervised", 88.0), row("moam", 90.0)])
  result = dict(seeds=5, overrides={}, rows=[row("moam", 92.0), row("fixmatch", 91.0)])
  merged = digits_seeds.merge_rows(previous, result)
  assert merged["rows"] == [row("supervised", 88.0), row("fixmatch", 91.0), row("moam", 92.0)]
  # Another protocol's table (seeds or overrides) contributes nothing.
  for other in (dict(previous, seeds=3), dict(previous, overrides={"total_steps": 2})):
    assert digits_seeds.merge_rows(other, result)["rows"] == [row("fixmatch", 91.0),
                                                              row("moam", 92.0)]
  assert digits_seeds.merge_rows(None, result)["rows"] == merged["rows"][1:]


def test_digits_seeds_markdown_reads_each_method_against_supervised():
  """The comparison lines: difference of means and twice the larger std, verdict by that rule."""
  row = lambda method, mean, std: dict(method=method, command=f"configs/{method}.py", mean=mean,
                                       std=std, min=mean - std, max=mean + std)
  md = digits_seeds.to_markdown(dict(seeds=5, rows=[
      row("supervised", 88.0, 1.0), row("vat", 89.5, 0.5), row("moam", 91.0, 0.5),
      row("pseudo_label", 85.0, 1.25)]))
  assert "- vat: +1.50 points (twice the larger std: 2.00), within it: neither beats" in md
  assert "- moam: +3.00 points (twice the larger std: 2.00), beyond it: moam beats supervised" in md
  assert ("- pseudo_label: -3.00 points (twice the larger std: 2.50), beyond it: supervised beats "
          "pseudo_label") in md
  assert "Against supervised" not in digits_seeds.to_markdown(
      dict(seeds=5, rows=[row("supervised", 88.0, 1.0)]))
