#!/usr/bin/env bash
# Runs main.py on this machine with 8 simulated CPU devices: a smoke test of the multi-device
# path before spending TPU time. No gcloud; launch/env.sh is optional here (sourced if present,
# e.g. for TFDS_DATA_DIR).
#
#   launch/local_cpu.sh CONFIG[:ARGS] WORKDIR [--config.key=value ...]
#   launch/local_cpu.sh configs/s4l_rotation.py:dataset=digits,steps=20 workdirs/rot_smoke
#
# PYTHON: interpreter (default: the repo's .venv if present, else python3).
# NUM_DEVICES: simulated devices (default 8); global batch sizes must divide by it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  echo "usage: $0 CONFIG[:ARGS] WORKDIR [--config.key=value ...]" >&2
  echo "  e.g. $0 configs/s4l_rotation.py:dataset=digits,steps=20 workdirs/rot_smoke" >&2
  exit 2
}
[[ $# -ge 2 ]] || usage
config="$1" workdir="$2"
shift 2
config="$(resolve_config "${config}")"
env_file="${S4L_ENV:-${LAUNCH_DIR}/env.sh}"
# shellcheck disable=SC1090
if [[ -r "${env_file}" ]]; then source "${env_file}"; fi

python="${PYTHON:-}"
if [[ -z "${python}" ]]; then
  if [[ -x "${REPO_ROOT}/.venv/bin/python" ]]; then python="${REPO_ROOT}/.venv/bin/python"; else python=python3; fi
fi
n="${NUM_DEVICES:-8}"
export XLA_FLAGS="--xla_force_host_platform_device_count=${n}${XLA_FLAGS:+ ${XLA_FLAGS}}"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
cd "${REPO_ROOT}"
echo "${python} main.py --config=${config} --workdir=${workdir} $*   (${n} CPU devices)" >&2
exec "${python}" main.py "--config=${config}" "--workdir=${workdir}" "$@"
