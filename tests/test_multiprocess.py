"""Multi-process jobs on one machine: `main.py --jax_distributed` over loopback (CPU, gloo).

Each job is 2 processes x 4 fake CPU devices on one workdir; the reference is 1 process x 8
devices with the same seed. The tiny supervised digits run of test_reliability.py.
"""
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from s4l_jax import train_main as main
from s4l_jax import export
from testing_utils import ROOT

DEVICES = 8
STEPS = 8
TINY = (f"--config.total_steps={STEPS}", "--config.checkpoint_every_steps=2",
        "--config.log_every_steps=2", "--config.eval_every_steps=0", "--config.model.depth=10",
        "--config.model.width=1", "--config.input.image_size=8",
        "--config.input.labeled.batch_size=16", "--config.input.eval_batch_size=64")
TIMEOUT_S = 240


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_job(workdir, log_prefix, processes: int = 2, *flags,
              config="supervised.py:dataset=digits", tiny=TINY):
  """Starts `processes` main.py processes (DEVICES / processes fake CPU devices each) of one
  job on `workdir`; returns [(Popen, log path)], logs at `<log_prefix>.<process_id>.log`."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1",
             TF_CPP_MIN_LOG_LEVEL="3",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES // processes}")
  command = [sys.executable, "main.py", f"--config=configs/{config}", f"--workdir={workdir}",
             *tiny, *flags]
  cluster = ["--jax_distributed", f"--coordinator_address=127.0.0.1:{_free_port()}",
             f"--num_processes={processes}"]
  job = []
  for i in range(processes):
    path = f"{log_prefix}.{i}.log"
    with open(path, "w") as log:
      args = command + (cluster + [f"--process_id={i}"] if processes > 1 else [])
      job.append((subprocess.Popen(args, cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT), path))
  return job


def _logs(job) -> list[str]:
  out = []
  for _, path in job:
    with open(path) as f:
      out.append(f.read())
  return out


def wait_job(job, timeout: float = TIMEOUT_S) -> list[tuple[int, str]]:
  """[(returncode, log)] once every process ended; kills all and fails (logs shown) on timeout."""
  deadline = time.time() + timeout
  for proc, _ in job:
    try:
      proc.wait(timeout=max(deadline - time.time(), 1))
    except subprocess.TimeoutExpired:
      for p, _ in job:
        p.kill()
      shown = "\n".join(f"--- process {i} ---\n{log[-3000:]}" for i, log in enumerate(_logs(job)))
      pytest.fail(f"job still running after {timeout}s:\n{shown}")
  return list(zip([p.returncode for p, _ in job], _logs(job)))


def wait_for(job, pattern: str, process: int, timeout: float = TIMEOUT_S):
  """Waits until process `process`'s log matches `pattern`."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if re.search(pattern, _logs(job)[process], re.MULTILINE):
      return
    if any(p.poll() is not None for p, _ in job):
      break
    time.sleep(0.05)
  wait_job(job, timeout=1)
  pytest.fail(f"{pattern!r} never appeared in process {process}'s log:\n{_logs(job)[process]}")


def check_success(results):
  for i, (returncode, log) in enumerate(results):
    assert returncode == 0, f"process {i} failed ({returncode}):\n{log[-4000:]}"


def final(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  return results, export.load_variables(os.path.join(workdir, "export"))


def assert_same_variables(a, b, atol: float = 0.0):
  """Equal names and values (bit for bit unless `atol`)."""
  flat_a, flat_b = (dict(_flatten(v)) for v in (a, b))
  assert flat_a.keys() == flat_b.keys()
  different = [k for k in flat_a if not np.allclose(flat_a[k], flat_b[k], rtol=0, atol=atol)
               or (not atol and not np.array_equal(flat_a[k], flat_b[k]))]
  assert not different, f"{len(different)} of {len(flat_a)} arrays differ, e.g. {different[:3]}"


def _flatten(tree, prefix=""):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flatten(value, f"{prefix}{key}/")
    else:
      yield prefix + key, value


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Uninterrupted runs: 2 processes x 4 devices, and 1 process x 8 devices (run at once)."""
  root = tmp_path_factory.mktemp("multiprocess")
  jobs = {n: start_job(root / f"p{n}", root / f"p{n}", processes=n) for n in (2, 1)}
  for job in jobs.values():
    check_success(wait_job(job))
  return {n: root / f"p{n}" for n in jobs}


@pytest.mark.parametrize("flags, error", [
    ((True, "h:1", 2, None), "--jax_distributed with --coordinator_address, --num_processes "
                             "also needs --process_id"),
    ((False, None, 2, 0), "--num_processes, --process_id need --jax_distributed"),
    ((True, "h:1", 2, 2), "--process_id=2 is not in 0..1"),
])
def test_distributed_args_incomplete(flags, error):
  with pytest.raises(ValueError, match=re.escape(error)):
    main.distributed_args(*flags)


def test_distributed_args():
  assert main.distributed_args(True, None, None, None) == {}  # auto-detection (pods, SLURM)
  assert main.distributed_args(False, None, None, None) == {}
  assert main.distributed_args(True, "10.0.0.1:1234", 2, 1) == dict(
      coordinator_address="10.0.0.1:1234", num_processes=2, process_id=1)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_equal_one(runs):
  """Same results.json accuracies as one process, and the same exported weights up to float32
  rounding: the gradient all-reduce adds the 8 devices' shares in another order across
  processes (gloo) than within one (in device order), so most arrays differ in their last
  bits (max 1.2e-7 after these 8 steps; atol leaves 8x room)."""
  (results2, variables2), (results1, variables1) = final(runs[2]), final(runs[1])
  for key in ("steps", "top1", "top5", "validation_top1", "num_labeled"):
    assert results2[key] == results1[key], key
  assert_same_variables(variables2, variables1, atol=1e-6)
  assert not os.path.exists(os.path.join(runs[2], "export.tmp"))
  for i in range(2):  # each process's log in the workdir, ending with its last step's line
    with open(os.path.join(runs[2], "logs", f"process_{i}.log")) as f:
      assert f"step {STEPS}/{STEPS} loss" in f.read()
  assert not os.path.exists(os.path.join(runs[1], "logs"))  # one process: stderr only


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_equal_one_for_s4l_rotation(tmp_path):
  """S4L-Rotation (two streams, 4 rotations, global BN over both): as for supervised, the same
  accuracies and the same weights up to the cross-process summation order."""
  tiny = TINY + ("--config.input.unlabeled.batch_size=16",)
  jobs = {n: start_job(tmp_path / f"p{n}", tmp_path / f"p{n}", n,
                       config="s4l_rotation.py:dataset=digits", tiny=tiny) for n in (2, 1)}
  for job in jobs.values():
    check_success(wait_job(job))
  (results2, variables2), (results1, variables1) = final(tmp_path / "p2"), final(tmp_path / "p1")
  for key in ("steps", "top1", "top5", "validation_top1"):
    assert results2[key] == results1[key], key
  assert_same_variables(variables2, variables1, atol=1e-6)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_second_job_refused(tmp_path):
  """The workdir's lock lets the processes of one job in and refuses every process of a
  second job (here the lock is held by this test, as another job's process 0 would)."""
  workdir = tmp_path / "w"
  workdir.mkdir()
  with open(workdir / ".lock", "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.write("pid 1 on elsewhere")
    f.flush()
    results = wait_job(start_job(workdir, tmp_path / "refused"))
  for i, (returncode, log) in enumerate(results):
    assert returncode != 0 and "is in use by pid 1 on elsewhere" in log, f"{i}:\n{log[-2000:]}"


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigterm_to_one_process(runs, tmp_path):
  """SIGTERM to process 1 only: both save the same step and exit; re-running resumes and ends
  with the uninterrupted weights."""
  workdir = tmp_path / "w"
  job = start_job(workdir, tmp_path / "first")
  wait_for(job, rf"step 2/{STEPS} ", process=1)
  job[1][0].send_signal(signal.SIGTERM)
  results = wait_job(job)
  saved = []
  for i, (returncode, log) in enumerate(results):
    match = re.search(r"SIGTERM: saved step (\d+) to .*; re-run the same command", log)
    assert returncode != 0 and match, f"process {i}:\n{log[-3000:]}"
    saved.append(int(match.group(1)))
  assert saved[0] == saved[1] < STEPS
  check_success(wait_job(start_job(workdir, tmp_path / "second")))
  (results, variables), (expected, expected_variables) = final(workdir), final(runs[2])
  assert results["resumed_from_step"] == saved[0]
  assert results["top1"] == expected["top1"]
  assert_same_variables(variables, expected_variables)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigkill_of_one_process(runs, tmp_path):
  """SIGKILL of process 1: process 0 fails once the heartbeat times out instead of hanging;
  re-running both resumes from the last complete checkpoint and ends with the uninterrupted
  weights."""
  workdir = tmp_path / "w"
  job = start_job(workdir, tmp_path / "killed", 2, "--heartbeat_timeout_s=5")
  wait_for(job, rf"step 4/{STEPS} ", process=1)
  job[1][0].kill()
  start = time.time()
  (returncode, log), _ = wait_job(job, timeout=60)
  assert returncode != 0, log[-3000:]
  assert time.time() - start < 30  # 5 s of heartbeat timeout, the rest for a loaded machine
  check_success(wait_job(start_job(workdir, tmp_path / "second")))
  (results, variables), (expected, expected_variables) = final(workdir), final(runs[2])
  assert 2 <= results["resumed_from_step"] < STEPS
  assert results["top1"] == expected["top1"]
  assert_same_variables(variables, expected_variables)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_moam_stages(tmp_path):
  """MOAM's three stages across 2 processes: each stage is trained once by each process,
  the pseudo-labels written once, the combined results.json covers all three."""
  stage_keys = [k.replace("--config.", "") for k in TINY if "total_steps" not in k]
  tiny = [f"--config.stages.step{i}.{k}" for i in (1, 2, 3) for k in stage_keys] + [
      "--config.stages.step1.input.unlabeled.batch_size=16"]
  job = start_job(tmp_path / "w", tmp_path / "moam", 2, config="moam.py:dataset=digits,steps=2",
                  tiny=tiny)
  check_success(wait_job(job, timeout=2 * TIMEOUT_S))
  with open(tmp_path / "w" / "results.json") as f:
    assert sorted(json.load(f)["stages"]) == ["step1", "step2", "step3"]
  for log in _logs(job):
    trained = re.findall(r"train.py:\d+\] (\S+) on digits;", log)  # one summary per training
    assert trained == ["moam_step1", "supervised", "supervised"], trained
  assert (tmp_path / "w" / "step2" / "pseudo_labels.json").exists()
