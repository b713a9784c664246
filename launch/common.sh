#!/usr/bin/env bash
# Shared helpers for launch/*.sh. Sourced, not executed.
set -euo pipefail
# shellcheck disable=SC2034

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${LAUNCH_DIR}/.." && pwd)"
GCLOUD="${GCLOUD:-gcloud}"
DRY_RUN=0
# fd 3 is this script's stdout: dry-run lines reach it even from inside $(...) or >/dev/null.
# gcloud does not inherit it (gcloud_tpu closes it).
exec 3>&1

die() { echo "error: $*" >&2; exit 1; }

# CONFIG[:ARGS] with a bare file name looked up in configs/; fails if the file is missing.
resolve_config() {
  local config="$1"
  [[ "${config}" == */* ]] || config="configs/${config}"
  [[ -f "${REPO_ROOT}/${config%%:*}" ]] || die "config file '${config%%:*}' not found in ${REPO_ROOT}."
  echo "${config}"
}

# load_env VAR... : sources $S4L_ENV (default launch/env.sh) and checks that VARs are set.
load_env() {
  local env_file="${S4L_ENV:-${LAUNCH_DIR}/env.sh}"
  if [[ ! -r "${env_file}" ]]; then
    die "settings file '${env_file}' not found. Copy the template and edit it:
  cp ${LAUNCH_DIR}/env.example.sh ${LAUNCH_DIR}/env.sh
(or point S4L_ENV at another file)."
  fi
  # shellcheck disable=SC1090
  source "${env_file}"
  local v
  for v in "$@"; do
    [[ -n "${!v:-}" ]] || die "${v} is not set in ${env_file} (see launch/env.example.sh)."
  done
  QUEUED_RESOURCE_ID="${QUEUED_RESOURCE_ID:-${TPU_NAME:-}-qr}"
  REMOTE_DIR="${REMOTE_DIR:-s4l_jax}"
  REMOTE_VENV="${REMOTE_VENV:-s4l_venv}"
  REMOTE_PYTHON="${REMOTE_PYTHON:-python3.11}"
  JAX_TPU_SPEC="${JAX_TPU_SPEC:-jax[tpu]}"
  RUNS_DIR="${RUNS_DIR:-s4l_runs}"
}

# take_dry_run ARGS... : sets DRY_RUN=1 if ARGS hold --dry_run; the other ARGS go to ARGS_LEFT.
take_dry_run() {
  ARGS_LEFT=()
  local a
  for a in "$@"; do
    if [[ "${a}" == --dry_run ]]; then DRY_RUN=1; else ARGS_LEFT+=("${a}"); fi
  done
}

# gcloud_tpu ARGS... : `gcloud compute tpus ARGS --zone --project`; with DRY_RUN=1 only prints
# the command line (shell-quoted, to fd 3) and succeeds with no output.
gcloud_tpu() {
  local cmd=("${GCLOUD}" compute tpus "$@" --zone="${ZONE}" --project="${PROJECT}")
  if (( DRY_RUN )); then
    printf '%s\n' "$(quote "${cmd[@]}")" >&3
    return 0
  fi
  "${cmd[@]}" 3>&-
}

# Default TPU VM runtime (software version) per accelerator generation, the part of
# ACCELERATOR before "-<size>" (v4-32 -> v4). RUNTIME_VERSION in env.sh overrides it.
RUNTIME_VERSIONS="v2=tpu-ubuntu2204-base v3=tpu-ubuntu2204-base v4=tpu-ubuntu2204-base \
v5litepod=v2-alpha-tpuv5-lite v5e=v2-alpha-tpuv5-lite v5p=v2-alpha-tpuv5 v6e=v2-alpha-tpuv6e"

# resolve_runtime_version : sets RUNTIME_VERSION from ACCELERATOR via RUNTIME_VERSIONS unless set.
resolve_runtime_version() {
  [[ -z "${RUNTIME_VERSION:-}" ]] || return 0
  local generation="${ACCELERATOR%-*}" entry known=""
  for entry in ${RUNTIME_VERSIONS}; do
    if [[ "${entry%%=*}" == "${generation}" ]]; then RUNTIME_VERSION="${entry#*=}"; return 0; fi
    known+="${known:+, }${entry%%=*}"
  done
  die "no default runtime for ACCELERATOR='${ACCELERATOR}' (generation '${generation}'; known: ${known}); set RUNTIME_VERSION in env.sh."
}

# tpu_ssh WORKER COMMAND : runs COMMAND (a bash string) on WORKER ("all", 0, 1, ...).
tpu_ssh() {
  local worker="$1" cmd="$2"
  gcloud_tpu tpu-vm ssh "${TPU_NAME}" --worker="${worker}" --command="${cmd}"
}

# quote ARGS... : prints ARGS shell-quoted, space separated (safe to embed in a remote command).
quote() {
  local out="" a
  for a in "$@"; do out+="$(printf '%q' "${a}") "; done
  printf '%s' "${out% }"
}

# check_config_locally CONFIG WORKDIR [--config.key=value ...] : main.py --check_only, here;
# dies with its one-line error. Skipped (with a note) when $LOCAL_PYTHON (default python3)
# cannot import s4l_jax.
check_config_locally() {
  local python="${LOCAL_PYTHON:-python3}" config="$1" workdir="$2" out
  shift 2
  if out="$(cd "${REPO_ROOT}" && "${python}" main.py --check_only "--config=${config}" \
            "--workdir=${workdir}" "$@" 2>&1)"; then
    printf '%s\n' "${out}" | tail -n 1
  elif [[ "${out}" == *ModuleNotFoundError* || -z "$(command -v "${python}")" ]]; then
    echo "note: config not checked locally (${python} cannot run main.py: pip install -e . or set LOCAL_PYTHON)" >&2
  else
    die "config refused: $(printf '%s\n' "${out}" | tail -n 1)"
  fi
}

# check_run_name NAME : run names become GCS paths and file names.
check_run_name() {
  [[ "$1" =~ ^[A-Za-z0-9._-]+$ ]] || die "run name '$1' may only hold letters, digits, '.', '_' and '-'."
}

# Remote snippet setting W to this host's worker number (TPU VM metadata, else hostname).
REMOTE_WORKER_ID='W=${S4L_WORKER_ID:-$(curl -s -f --max-time 2 -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number 2>/dev/null || hostname)}'
