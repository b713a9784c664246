#!/usr/bin/env bash
# Runs several `:ARGS` variants of one config on the slice, one after another (a TPU runs one
# program at a time), each with its own run name PREFIX_<args> and workdir.
#
#   launch/sweep.sh [--dry_run] CONFIG RUN_PREFIX ARGS1 [ARGS2 ...] [-- --config.key=value ...]
#   launch/sweep.sh configs/supervised.py sup labels=10pct labels=1pct
#     -> runs sup_labels-10pct, then sup_labels-1pct
#
# Each run is started with launch/run.sh, then this script polls worker 0 every POLL_S
# (default 300) seconds until it ends. Keep it alive with nohup/tmux on your workstation.
# Re-running the same sweep is safe: finished runs find their last checkpoint and just
# re-report, an interrupted one resumes. A run that fails stops the sweep (CONTINUE_ON_ERROR=1
# moves on instead). --dry_run prints each run's gcloud commands (one poll each) and runs nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  echo "usage: $0 [--dry_run] CONFIG RUN_PREFIX ARGS1 [ARGS2 ...] [-- --config.key=value ...]" >&2
  echo "  e.g. $0 configs/supervised.py sup labels=10pct labels=1pct" >&2
  exit 2
}
take_dry_run "$@"
set -- ${ARGS_LEFT[@]+"${ARGS_LEFT[@]}"}
[[ $# -ge 3 ]] || usage
config="$1" prefix="$2"
shift 2
[[ "${config}" != *:* ]] || die "give CONFIG without :ARGS; the variants are the ARGS."
check_run_name "${prefix}"
variants=()
while [[ $# -gt 0 && "$1" != "--" ]]; do variants+=("$1"); shift; done
[[ $# -gt 0 ]] && shift  # the "--"
[[ ${#variants[@]} -gt 0 ]] || usage
overrides=("$@")
load_env PROJECT ZONE TPU_NAME TFDS_DATA_DIR WORKDIR_ROOT
POLL_S="${POLL_S:-300}"
dry=()
(( ! DRY_RUN )) || dry=(--dry_run)

run_name_for() {  # labels=10pct,steps=5 -> PREFIX_labels-10pct_steps-5
  local v="$1"
  [[ -n "${v}" ]] || { echo "${prefix}_default"; return; }
  v="${v//=/-}"; v="${v//,/_}"; v="${v//[^A-Za-z0-9._-]/-}"
  echo "${prefix}_${v}"
}

for v in "${variants[@]}"; do
  name="$(run_name_for "${v}")"
  echo "=== sweep: ${name} (${config}:${v})"
  if [[ -n "${v}" ]]; then cfg="${config}:${v}"; else cfg="${config}"; fi
  "${LAUNCH_DIR}/run.sh" ${dry[@]+"${dry[@]}"} "${cfg}" "${name}" ${overrides[@]+"${overrides[@]}"}
  pidf="\$HOME/${RUNS_DIR}/${name}/worker*.pid"
  while true; do
    (( DRY_RUN )) || sleep "${POLL_S}"
    state="$(tpu_ssh 0 "for f in ${pidf}; do [ -e \"\$f\" ] && kill -0 \$(cat \"\$f\") 2>/dev/null && echo RUNNING; done; true" || echo RUNNING)"
    [[ "${state}" == *RUNNING* ]] || break
  done
  log_tail="$(tpu_ssh 0 "tail -n 3 \"\$HOME/${RUNS_DIR}/${name}\"/worker*.log" 2>/dev/null || true)"
  echo "${log_tail}"
  (( ! DRY_RUN )) || continue
  if [[ "${log_tail}" != *"top-1"* && "${CONTINUE_ON_ERROR:-0}" != 1 ]]; then
    die "${name} ended without a result line; see launch/logs.sh ${name}. Stopping the sweep."
  fi
done
echo "Sweep done: results in ${WORKDIR_ROOT%/}/${prefix}_*/results.json"
