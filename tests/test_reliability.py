"""Reliability: preemption, interrupted saves, bad input and numerical faults.

Real `main.py` runs are subprocesses on 2 fake CPU devices with a tiny model; one
uninterrupted run (module fixture) is the reference that interrupted runs must match bit for bit.
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4l_jax import budget, checkpointing, export, runner
from s4l_jax.data import pipeline as pipeline_lib
from s4l_jax.data import streams
from testing_utils import ROOT, load_config, tiny, write_image_folder

DEVICES = 2
STEPS = 16
ENV = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}",
           JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3",
           PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")  # SIGABRT dumps every thread
TINY = (f"--config.total_steps={STEPS}", "--config.checkpoint_every_steps=2",
        "--config.log_every_steps=1", "--config.eval_every_steps=0", "--config.model.depth=10",
        "--config.model.width=1", "--config.input.image_size=8",
        "--config.input.labeled.batch_size=16")


def _command(workdir, *overrides, arg="dataset=digits"):
  return [sys.executable, "main.py", f"--config=configs/supervised.py:{arg}",
          f"--workdir={workdir}", *TINY, *overrides]


def _run(workdir, *overrides, arg="dataset=digits", timeout=300):
  """Runs main.py to the end; returns (returncode, stderr, wall seconds)."""
  start = time.time()
  proc = subprocess.run(_command(workdir, *overrides, arg=arg), cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=timeout, check=False)
  return proc.returncode, proc.stderr, time.time() - start


def _run_until(workdir, pattern: str, sig: int, log_path, timeout=180, overrides=()):
  """Starts main.py, sends `sig` once its log matches `pattern`; returns (returncode, log)."""
  with open(log_path, "w") as log:
    proc = subprocess.Popen(_command(workdir, *overrides), cwd=ROOT, env=ENV, stdout=log,
                            stderr=log)
  deadline = time.time() + timeout
  try:
    while proc.poll() is None and time.time() < deadline:
      with open(log_path) as f:
        if re.search(pattern, f.read(), re.MULTILINE):
          proc.send_signal(sig)
          break
      time.sleep(0.02)
    try:
      returncode = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:  # a hang: faulthandler writes each thread's stack
      proc.send_signal(signal.SIGABRT)
      proc.wait(timeout=30)
      with open(log_path) as f:
        raise AssertionError(f"no exit 120 s after {sig!r}; stacks:\n{f.read()[-6000:]}")
  finally:
    if proc.poll() is None:
      proc.kill()
  with open(log_path) as f:
    text = f.read()
  assert re.search(pattern, text, re.MULTILINE), f"never logged {pattern!r}:\n{text[-3000:]}"
  return returncode, text


def _outputs(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  return results, export.load_variables(os.path.join(workdir, "export"))


def _assert_identical(workdir, reference):
  results, variables = _outputs(workdir)
  ref_results, ref_variables = reference
  for key in ("top1", "top5", "steps"):
    assert results[key] == ref_results[key], key
  assert jax.tree.structure(variables) == jax.tree.structure(ref_variables)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(ref_variables)):
    np.testing.assert_array_equal(a, b)
  return results


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference"))
  returncode, stderr, _ = _run(workdir)
  assert returncode == 0, stderr[-3000:]
  return _outputs(workdir)


@pytest.mark.slow
def test_sigkill_and_sigterm_resume_bit_identical(reference, tmp_path):
  """SIGKILL after a step, SIGKILL inside an async save, SIGTERM: the 4th run equals reference."""
  rng = random.Random(0)
  k_step, k_save, k_term = rng.randint(2, 5), rng.choice((8, 10)), rng.randint(11, 12)
  workdir = str(tmp_path / "w")
  ckpt_dir = os.path.join(workdir, "checkpoints")

  returncode, _ = _run_until(workdir, rf"step {k_step}/{STEPS} ", signal.SIGKILL,
                             tmp_path / "1.log")
  assert returncode == -signal.SIGKILL
  returncode, log = _run_until(workdir, rf"Saving checkpoint at step {k_save}$", signal.SIGKILL,
                               tmp_path / "2.log")
  assert returncode == -signal.SIGKILL and "Resumed from step" in log
  returncode, log = _run_until(workdir, rf"step {k_term}/{STEPS} ", signal.SIGTERM,
                               tmp_path / "3.log")
  saved = re.search(r"SIGTERM: saved step (\d+) to .*; re-run the same command", log)
  assert returncode != 0 and saved, log[-3000:]
  saved = int(saved.group(1))
  assert k_term <= saved < STEPS
  assert checkpointing.Checkpointer(ckpt_dir, 2, 2).latest_step() == saved

  returncode, stderr, _ = _run(workdir)
  assert returncode == 0, stderr[-3000:]
  results = _assert_identical(workdir, reference)
  assert results["resumed_from_step"] == saved
  # The SIGTERMed segment's time counts (the SIGKILLed ones' cannot): wall_s is the total.
  assert len(results["wall_segments_s"]) == 2
  assert results["wall_s"] == pytest.approx(sum(results["wall_segments_s"]))


@pytest.mark.slow
def test_sigterm_saves_after_the_step_in_flight_whatever_log_every_steps(tmp_path):
  """Steps of about 0.1-0.3 s, no log or save step before the end: SIGTERM 3 s into training
  saves and exits within a few steps (the loop waits on each previous step, so the host never
  runs ahead), not after the whole queue or at the end of the run."""
  workdir, steps = str(tmp_path / "w"), 1000
  log_path = tmp_path / "1.log"
  overrides = (f"--config.total_steps={steps}", f"--config.log_every_steps={steps}",
               f"--config.checkpoint_every_steps={steps}", "--config.input.image_size=32",
               "--config.input.labeled.batch_size=128")
  with open(log_path, "w") as log:
    proc = subprocess.Popen(_command(workdir, *overrides), cwd=ROOT, env=ENV, stdout=log,
                            stderr=log)
  try:
    deadline = time.time() + 180
    while proc.poll() is None and "first step (compiling)" not in log_path.read_text():
      assert time.time() < deadline, log_path.read_text()[-3000:]
      time.sleep(0.02)
    time.sleep(3.0)
    signalled = time.time()
    proc.send_signal(signal.SIGTERM)
    returncode = proc.wait(timeout=120)
    latency = time.time() - signalled
  finally:
    if proc.poll() is None:
      proc.kill()
  log = log_path.read_text()
  saved = re.search(r"SIGTERM: saved step (\d+) to .*; re-run the same command", log)
  assert returncode != 0 and saved, log[-3000:]
  saved = int(saved.group(1))
  assert checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), 2, 2).latest_step() == saved
  # 3 s of training took `saved` steps; the signal costs at most 2 more steps, the save, exit.
  step_s = 3.0 / max(saved - 2, 1)
  assert saved < steps / 2, (saved, log[-3000:])
  assert latency < 2 * step_s + 15, (latency, step_s, saved)


def _last_line(stderr):
  return stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_ctrl_c_saves_and_a_changed_config_cannot_resume(reference, tmp_path):
  """SIGINT saves like SIGTERM; resuming under another config stops in one line, the same
  config with other logging resumes bit-identically, and a finished re-run changes nothing."""
  workdir = str(tmp_path / "w")
  returncode, log = _run_until(workdir, rf"step 5/{STEPS} ", signal.SIGINT, tmp_path / "1.log")
  saved = re.search(r"SIGINT: saved step (\d+) to .*; re-run the same command", log)
  assert returncode != 0 and saved, log[-3000:]
  with open(os.path.join(workdir, "config.json")) as f:
    started_with = f.read()

  for overrides, pattern in (
      (("--config.optimizer.weight_decay=0.5", "--config.lr.base=0.5"),
       r"started with another config \(optimizer\.weight_decay: 0\.\d+ -> 0\.5\)"),
      (("--config.seed=1", "--config.input.labeled.batch_size=8"),
       r"input\.labeled\.batch_size: 16 -> 8; seed: 0 -> 1"),
      (("--config.allow_config_change=true", "--config.model.width=2"),
       r"was written for a different model \(.*saved .*, now ")):
    returncode, stderr, _ = _run(workdir, *overrides)
    assert returncode != 0 and "Traceback" not in stderr, stderr[-3000:]
    assert re.search(pattern, _last_line(stderr)), stderr[-2000:]
    assert "Exception ignored" not in stderr
  assert checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), 2,
                                    2).latest_step() == int(saved.group(1))
  os.replace(min(os.path.join(workdir, n) for n in os.listdir(workdir)
                 if n.startswith("config.before_")), os.path.join(workdir, "config.json"))
  with open(os.path.join(workdir, "config.json")) as f:
    assert f.read() == started_with  # allow_config_change kept the original

  returncode, stderr, _ = _run(workdir, "--config.log_every_steps=4")
  assert returncode == 0, stderr[-3000:]
  _assert_identical(workdir, reference)
  with open(os.path.join(workdir, "results.json")) as f:
    finished = f.read()
  returncode, stderr, _ = _run(workdir)
  assert returncode == 0 and "Already finished" in stderr, stderr[-3000:]
  with open(os.path.join(workdir, "results.json")) as f:
    assert f.read() == finished  # the original run's wall_s and images_per_s


@pytest.mark.slow
def test_second_process_on_a_workdir_stops_at_once(reference, tmp_path):
  workdir = str(tmp_path / "w")
  log_path = tmp_path / "first.log"
  with open(log_path, "w") as log:
    first = subprocess.Popen(_command(workdir), cwd=ROOT, env=ENV, stdout=log, stderr=log)
  try:
    deadline = time.time() + 180
    while first.poll() is None and time.time() < deadline:
      if re.search(rf"step 1/{STEPS} ", log_path.read_text()):
        break
      time.sleep(0.02)
    returncode, stderr, wall = _run(workdir)
    assert returncode != 0 and "Traceback" not in stderr, stderr[-3000:]
    assert re.search(rf"is in use by pid {first.pid} on .*one workdir takes one run",
                     _last_line(stderr)), stderr[-2000:]
    assert wall < 60
    assert first.wait(timeout=180) == 0, log_path.read_text()[-3000:]
  finally:
    if first.poll() is None:
      first.kill()
  _assert_identical(workdir, reference)


@pytest.mark.slow
def test_workdir_that_is_a_file_fails_in_one_line(tmp_path):
  path = tmp_path / "results"
  path.write_text("not a directory")
  returncode, stderr, _ = _run(str(path))
  assert returncode != 0 and "Traceback" not in stderr
  assert re.search(r"is a file, not a directory", _last_line(stderr))
  assert path.read_text() == "not a directory"


@pytest.mark.slow
def test_damaged_newest_checkpoint_resumes_from_the_previous(reference, tmp_path):
  """2 KB of bits flipped in the largest file of the newest checkpoint, its size unchanged:
  its checksum sets it aside in one warning, the run resumes from the older one."""
  workdir = str(tmp_path / "w")
  returncode, log = _run_until(workdir, rf"step 9/{STEPS} ", signal.SIGTERM, tmp_path / "1.log")
  saved = int(re.search(r"SIGTERM: saved step (\d+)", log).group(1))
  step_dir = os.path.join(workdir, "checkpoints", str(saved))
  assert os.path.exists(os.path.join(step_dir, checkpointing.CHECKSUMS_FILE))
  largest = max((os.path.join(root, n) for root, _, names in os.walk(step_dir) for n in names
                 if n != checkpointing.CHECKSUMS_FILE), key=os.path.getsize)
  size = os.path.getsize(largest)
  with open(largest, "r+b") as f:
    f.seek(size // 2)
    flipped = bytes(b ^ 0xFF for b in f.read(2048))
    f.seek(size // 2)
    f.write(flipped)
  assert os.path.getsize(largest) == size
  returncode, stderr, _ = _run(workdir)
  assert returncode == 0, stderr[-3000:]
  name = os.path.relpath(largest, step_dir)
  assert re.search(rf"Checkpoint at step {saved} does not restore \(ChecksumError: checksum "
                   rf"mismatch in {re.escape(name)}\); moved it to .*checkpoints_damaged/{saved}",
                   stderr), stderr[-3000:]
  assert stderr.count("Traceback") == 0 and "Exception ignored" not in stderr
  results = _assert_identical(workdir, reference)
  assert results["resumed_from_step"] < saved


def test_interrupted_save_keeps_previous_checkpoint(tmp_path):
  """A crash mid-save (half-written Orbax tmp dir of step 4) leaves step 2 the latest, intact."""
  directory = str(tmp_path / "checkpoints")
  state = {"w": jnp.arange(12.0).reshape(3, 4), "step": jnp.asarray(2)}
  ckpt = checkpointing.Checkpointer(directory, 2, 2)
  ckpt.save(2, state)
  ckpt.close()
  partial = os.path.join(directory, "4.orbax-checkpoint-tmp-1700000000")
  os.makedirs(os.path.join(partial, "default"))
  with open(os.path.join(partial, "default", "manifest.ocdbt"), "wb") as f:
    f.write(b"\x00garbage")
  ckpt = checkpointing.Checkpointer(directory, 2, 2)
  assert ckpt.latest_step() == 2
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  restored = ckpt.restore(checkpointing.abstract_like(state, sharding))
  ckpt.close()
  for key, value in state.items():
    np.testing.assert_array_equal(restored[key], value)
  assert not os.path.exists(partial)  # cleaned up, so it cannot be mistaken for a checkpoint


@pytest.fixture(name="bad_folder")
def bad_folder_fixture(tmp_path):
  root = write_image_folder(tmp_path / "imgs")
  train = os.path.join(root, "train")
  with open(os.path.join(train, "ant", "000.jpg"), "rb") as f:
    jpeg = f.read()
  bad = {os.path.join(train, "ant", "zz_truncated.jpg"): jpeg[:len(jpeg) // 2],
         os.path.join(train, "bee", "zz_corrupt.jpg"): b"\xff\xd8 not really a jpeg",
         os.path.join(train, "cat", "zz_notes.txt"): b"not an image"}
  for path, data in bad.items():
    with open(path, "wb") as f:
      f.write(data)
  os.makedirs(os.path.join(train, "dog"))  # empty class folder
  return root, sorted(bad)


@pytest.mark.slow
def test_bad_images_are_reported_and_skipped(bad_folder, tmp_path):
  root, bad = bad_folder
  workdir = str(tmp_path / "w")
  returncode, stderr, _ = _run(workdir, "--config.total_steps=2", "--config.input.labeled."
                               "batch_size=8", "--config.input.eval_batch_size=8",
                               arg=f"dataset=folder:{root},labels=all")
  assert returncode == 0, stderr[-3000:]
  assert re.search(r"skipped 3 unreadable or non-image files, e\.g\. ", stderr)
  assert all(path in stderr for path in bad)
  assert re.search(r"empty or missing class folders: \['dog'\]", stderr)
  results, _ = _outputs(workdir)
  assert results["num_labeled"] == 33 and results["steps"] == 2  # 36 less 10% validation


@pytest.mark.slow
def test_strict_data_stops_on_first_bad_file(bad_folder, tmp_path):
  root, bad = bad_folder
  workdir = str(tmp_path / "w")
  returncode, stderr, _ = _run(workdir, "--config.strict_data=true",
                               arg=f"dataset=folder:{root},labels=all")
  assert returncode != 0 and "Traceback" not in stderr
  last = stderr.strip().splitlines()[-1]
  assert last.startswith("ERROR: Unreadable or non-image file ") and bad[0] in last
  assert not os.path.exists(os.path.join(workdir, "checkpoints"))


BAD_CONFIGS = {
    "unknown_key": (("--config.totl_steps=5",), "dataset=digits",
                    r"unknown config key 'totl_steps'"),
    "wrong_type": (("--config.total_steps=abc",), "dataset=digits",
                   r"total_steps=abc: invalid literal for int"),
    "too_many_labels": ((), "dataset=digits,labels=5000",
                        r"Labels spec '5000' asks for \d+ examples of class '\d' \(label \d\), "
                        "which has only"),
    "indivisible_batch": (("--config.input.labeled.batch_size=15",), "dataset=digits",
                          rf"input.labeled.batch_size=15 is not divisible by the {DEVICES} "
                          "devices"),
    "missing_init_from": (("--config.init_from=/nonexistent/export",), "dataset=digits",
                          r"No export at '/nonexistent/export'"),
    "negative_steps": (("--config.total_steps=-1",), "dataset=digits",
                       r"^ERROR: total_steps=-1 \(the config arg steps=\) must be >= 0"),
    "log_every_zero": (("--config.log_every_steps=0",), "dataset=digits",
                       r"^ERROR: log_every_steps=0 must be >= 1"),
    "eval_batch_zero": (("--config.input.eval_batch_size=0",), "dataset=digits",
                        r"^ERROR: input.eval_batch_size=0 must be >= 1"),
    "misspelt_arg": ((), "datset=digits", r"^FATAL Flags parsing error: Unknown config arg "
                     r"'datset'; valid args: dataset, evals, fidelity, labels, regime, steps$"),
}


def _run_parallel(tmp_path, cases):
  """Starts every case at once; returns {name: (returncode, stderr, wall seconds, workdir)}."""
  procs = {}
  for name, (overrides, arg) in cases.items():
    workdir = str(tmp_path / name)
    procs[name] = (subprocess.Popen(_command(workdir, *overrides, arg=arg), cwd=ROOT, env=ENV,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                   time.time(), workdir)
  out = {}
  for name, (proc, start, workdir) in procs.items():
    _, stderr = proc.communicate(timeout=180)
    out[name] = (proc.returncode, stderr, time.time() - start, workdir)
  return out


@pytest.mark.slow
def test_bad_configs_fail_fast_with_one_line(tmp_path):
  runs = _run_parallel(tmp_path, {k: v[:2] for k, v in BAD_CONFIGS.items()})
  for name, (returncode, stderr, wall, workdir) in runs.items():
    pattern = BAD_CONFIGS[name][2]
    assert returncode != 0, name
    assert "Traceback" not in stderr, f"{name}:\n{stderr[-3000:]}"
    assert any(re.search(pattern, line) for line in stderr.splitlines()[-2:]), (
        f"{name}: {pattern!r} not in the last lines:\n{stderr[-2000:]}")
    assert wall < 60, (name, wall)
    # Refused by the flags, by validation or by the data: nothing left behind, not even an
    # empty workdir.
    assert not os.path.exists(workdir), (name, os.listdir(workdir))


@pytest.mark.slow
def test_unwritable_workdir_fails_in_one_line(tmp_path):
  """sysfs takes no new directories, even from root (chmod would not stop root)."""
  workdir = f"/sys/s4l_jax_test_{os.getpid()}"
  returncode, stderr, _ = _run(workdir)
  assert returncode != 0 and "Traceback" not in stderr, stderr[-3000:]
  assert re.match(rf"ERROR: .*: {workdir}: the workdir must be writable, with free space; ",
                  _last_line(stderr)), stderr[-2000:]


@pytest.mark.slow
def test_unprepared_tfds_fails_fast_with_steps(tmp_path):
  empty = tmp_path / "tfds"
  empty.mkdir()
  runs = _run_parallel(tmp_path, {name: ((f"--config.data_dir={empty}",), f"dataset={name}")
                                  for name in ("cifar10", "imagenet2012")})
  for name, (returncode, stderr, wall, workdir) in runs.items():
    assert returncode != 0 and "Traceback" not in stderr, f"{name}:\n{stderr[-3000:]}"
    assert f"TFDS dataset '{name}' is not prepared" in stderr
    assert "download_and_prepare()" in stderr and str(empty) in stderr
    assert wall < 30, (name, wall)
    assert not os.path.exists(os.path.join(workdir, "checkpoints")), name


@pytest.mark.slow
def test_nonfinite_stops_at_its_step_and_keeps_finite_checkpoints(tmp_path):
  """lr jumps x1e37 after about 5 updates: that step explodes the params (loss still finite
  there)."""
  config = tiny(load_config("supervised", "dataset=digits,labels=10pct"), steps=12)
  config.eval_every_steps = 0
  config.log_every_steps = 3
  config.checkpoint_every_steps = 2
  config.lr.update(schedule="step", warmup_epochs=0.0, decay_factor=1e37)
  spe = budget.steps_per_epoch(144, config.input.labeled.batch_size)
  config.lr.decay_epochs = (5 / spe,)
  with pytest.raises(FloatingPointError) as error:
    runner.run(config, str(tmp_path))
  message = str(error.value)
  stopped = int(re.search(r"is (?:nan|inf|-inf) at step (\d+): stopping", message).group(1))
  # Every step is checked, not only the logged ones (3, 6, ...): it stops at the first
  # exploded one (the boundary 5 / spe epochs lands on update 5 or 6 by rounding).
  assert stopped in (5, 6), message
  assert re.search(r"resumes from the checkpoint at step 4 .*lower --config\.lr\.base.*"
                   r"--config\.resume_step=N .*\(steps \[2, 4\]\)", message), message
  ckpt = checkpointing.Checkpointer(str(tmp_path / "checkpoints"), 2, 2)
  assert ckpt.latest_step() == 4
  for step in ckpt._manager.all_steps():  # pylint: disable=protected-access
    restored = ckpt._manager.restore(step)  # pylint: disable=protected-access
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored)), step
  ckpt.close()
  assert not os.path.exists(tmp_path / "results.json")


@pytest.mark.slow
def test_divergence_stops_before_its_checkpoint_and_a_new_lr_resumes_from_an_earlier_one(
    tmp_path):
  """lr x1e4 at update 7: the loss, still finite, leaves its running median behind and the run
  stops before checkpointing it, naming step 6 and the ways out; the re-run with another lr
  schedule and resume_step=4 is accepted without allow_config_change and finishes from 4."""
  def config(decay_factor, resume_step=0):
    c = tiny(load_config("supervised", "dataset=digits,labels=10pct"), steps=12)
    c.eval_every_steps = 0
    c.lr.update(base=0.05, warmup_epochs=0.0, schedule="step", decay_factor=decay_factor)
    c.lr.decay_epochs = (6 / budget.steps_per_epoch(144, 16),)  # after 6 updates
    c.resume_step = resume_step
    return c
  workdir = str(tmp_path)
  with pytest.raises(FloatingPointError) as error:
    runner.run(config(1e4), workdir)
  message = str(error.value)
  assert re.match(r"loss \S+ at step 7 is over 100x its running median \S+ \(divergence_factor\)"
                  r": stopping before it is checkpointed\. A re-run resumes from the checkpoint at "
                  r"step 6 .*--config\.lr\.base.*--config\.resume_step=N .*\(steps \[4, 6\]\)",
                  message), message
  results = runner.run(config(0.1, resume_step=4), workdir)
  assert results["resumed_from_step"] == 4 and results["steps"] == 12
  assert os.path.isdir(tmp_path / "checkpoints_superseded" / "to_4" / "6")
  assert np.isfinite(results["top1"])


@pytest.mark.parametrize("num_examples", [360, 37])
@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_multi_host_eval_and_train_shards(num_examples, process_count):
  batches = [streams.eval_batches(num_examples, 40, p, process_count)
             for p in range(process_count)]
  assert len({len(b) for b in batches}) == 1  # every host runs the same number of eval steps
  counted = np.concatenate([idx[mask] for host in batches for idx, mask in host])
  np.testing.assert_array_equal(np.sort(counted), np.arange(num_examples))

  hosts = [streams.TrainIndexStream(num_examples, 8, 3, p, process_count)
           for p in range(process_count)]
  single = streams.TrainIndexStream(num_examples, 8, 3)
  for step in range(3 * num_examples // 8):
    local = [h.indices(step) for h in hosts]
    assert {len(x) for x in local} == {8 // process_count}
    np.testing.assert_array_equal(np.concatenate(local), single.indices(step))
  epoch = np.concatenate([np.concatenate([h.indices(s) for h in hosts])
                          for s in range(num_examples // 8)])
  assert len(np.unique(epoch)) == len(epoch)  # disjoint shards, no repeats within an epoch


def test_multi_host_pipelines_agree_on_steps():
  config = tiny(load_config("supervised", "dataset=digits,labels=10pct"), batch=16)
  pipes = [pipeline_lib.InMemoryPipeline(config, p, 4) for p in range(4)]
  assert len({budget.total_steps(config, p.num_labeled, p.num_unlabeled) for p in pipes}) == 1
  for step in (0, 7, 30):
    batches = [p.train_batch(step)["labeled"]["label"] for p in pipes]
    assert {len(b) for b in batches} == {4}
  eval_counts = [sum(int(b["mask"].sum()) for b in p.eval_batches(40)) for p in pipes]
  assert sum(eval_counts) == 360
  assert len({len(list(p.eval_batches(40))) for p in pipes}) == 1
