#!/usr/bin/env bash
# Shows (and follows) the log of a run on one worker.
#
#   launch/logs.sh RUN_NAME [WORKER] [--dry_run]   # WORKER defaults to 0 (the one that prints metrics)
#
# Env: LOG_LINES (default 100) lines of history; FOLLOW=0 prints and exits instead of following.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { echo "usage: $0 RUN_NAME [WORKER] [--dry_run]   (WORKER: 0, 1, ..., default 0)" >&2; exit 2; }
take_dry_run "$@"
set -- ${ARGS_LEFT[@]+"${ARGS_LEFT[@]}"}
[[ $# -ge 1 && $# -le 2 ]] || usage
run_name="$1" worker="${2:-0}"
check_run_name "${run_name}"
[[ "${worker}" =~ ^[0-9]+$ ]] || usage
load_env PROJECT ZONE TPU_NAME

lines="${LOG_LINES:-100}"
[[ "${lines}" =~ ^[0-9]+$ ]] || lines=100
follow="-F"
[[ "${FOLLOW:-1}" == 0 ]] && follow=""
tpu_ssh "${worker}" "ls \"\$HOME/${RUNS_DIR}/${run_name}\"/worker*.log >/dev/null 2>&1 || { echo 'no log for run ${run_name} on worker ${worker}' >&2; exit 1; }
tail -n ${lines} ${follow} \"\$HOME/${RUNS_DIR}/${run_name}\"/worker*.log"
