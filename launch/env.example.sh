#!/usr/bin/env bash
# Settings for the launch/ scripts. Copy to launch/env.sh (git-ignored) and edit:
#   cp launch/env.example.sh launch/env.sh
# Another file can be used with S4L_ENV=/path/to/env.sh. No secrets belong here:
# gcloud uses your own `gcloud auth login` credentials.

export PROJECT="my-gcp-project"
export ZONE="europe-west4-a"              # a zone with the accelerator (v3: europe-west4-a, us-central1-a)
export TPU_NAME="s4l-v3-32"
export ACCELERATOR="v3-32"                # v3-8 (1 host) ... v3-32 (4 hosts), v4-32, v5litepod-16, ...
export BUCKET="gs://my-s4l-bucket"        # same region as ZONE
export TFDS_DATA_DIR="${BUCKET}/tensorflow_datasets"
export WORKDIR_ROOT="${BUCKET}/s4l"       # each run writes to $WORKDIR_ROOT/<run_name>

# Optional (defaults shown):
# export RUNTIME_VERSION=...                  # default: the one for ACCELERATOR (RUNTIME_VERSIONS, common.sh)
# export QUEUED_RESOURCE_ID="${TPU_NAME}-qr"   # name of the queued resource (create_tpu.sh --queued/--spot)
# export REMOTE_DIR="s4l_jax"                  # code location on each worker, relative to ~
# export REMOTE_VENV="s4l_venv"                # venv on each worker, relative to ~ (kept across re-copies)
# export REMOTE_PYTHON="python3.11"            # interpreter for the venv (setup.py needs >= 3.11)
# export JAX_TPU_SPEC="jax[tpu]"               # e.g. "jax[tpu]==0.10.2" to pin
# export RUNS_DIR="s4l_runs"                   # per-run log + PID files on each worker, relative to ~
