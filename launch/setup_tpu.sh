#!/usr/bin/env bash
# Copies this checkout to every worker of the TPU slice and installs it into a venv.
# Idempotent: re-run after every code change (the venv is kept, the code is replaced).
#
#   launch/setup_tpu.sh [--dry_run]   (--dry_run: prints the gcloud commands, runs nothing)
#
# What is copied: tracked files plus untracked files git does not ignore (so launch/env.sh,
# .venv/, workdirs/ stay home). The venv lives outside the code dir (~/$REMOTE_VENV).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

take_dry_run "$@"
set -- ${ARGS_LEFT[@]+"${ARGS_LEFT[@]}"}
[[ $# -eq 0 ]] || { echo "usage: $0 [--dry_run]   (settings come from launch/env.sh)" >&2; exit 2; }
load_env PROJECT ZONE TPU_NAME

stage="$(mktemp -d)"
trap 'rm -rf "${stage}"' EXIT
mkdir -p "${stage}/${REMOTE_DIR}"
if git -C "${REPO_ROOT}" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "${REPO_ROOT}" && git ls-files -z --cached --others --exclude-standard \
     | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
     | tar --null -T - -cf -) | tar -C "${stage}/${REMOTE_DIR}" -xf -
else
  tar -C "${REPO_ROOT}" --exclude=.venv --exclude=workdirs --exclude=launch/env.sh \
    --exclude=__pycache__ -cf - . | tar -C "${stage}/${REMOTE_DIR}" -xf -
fi
echo "Copying $(find "${stage}/${REMOTE_DIR}" -type f | wc -l) files to all workers of ${TPU_NAME}:~/${REMOTE_DIR}"

tpu_ssh all "rm -rf ~/$(quote "${REMOTE_DIR}")"
gcloud_tpu tpu-vm scp --recurse "${stage}/${REMOTE_DIR}" "${TPU_NAME}:~/" --worker=all

venv="\$HOME/${REMOTE_VENV}"
install_cmd="set -e
if ! command -v $(quote "${REMOTE_PYTHON}") >/dev/null; then
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(quote "${REMOTE_PYTHON}") $(quote "${REMOTE_PYTHON}-venv")
fi
if [ ! -x \"${venv}/bin/python\" ]; then $(quote "${REMOTE_PYTHON}") -m venv \"${venv}\"; fi
\"${venv}/bin/pip\" install -q -U pip
cd ~/$(quote "${REMOTE_DIR}")
\"${venv}/bin/pip\" install -q -e '.[tf]' $(quote "${JAX_TPU_SPEC}") -f https://storage.googleapis.com/jax-releases/libtpu_releases.html
echo \"\$(hostname): installed jax \$(\"${venv}/bin/python\" -c 'import jax; print(jax.__version__)')\""
tpu_ssh all "${install_cmd}"
echo "Setup done. Next: launch/run.sh CONFIG[:ARGS] RUN_NAME"
