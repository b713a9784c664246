#!/usr/bin/env bash
# Prepares TFDS imagenet2012 once and copies it to $TFDS_DATA_DIR (GCS) for all hosts.
#
#   launch/prepare_data.sh [MANUAL_DIR]           # on this machine (e.g. a CPU VM with disk)
#   launch/prepare_data.sh --on-tpu [MANUAL_DIR]  # on worker 0 of the slice (after setup_tpu.sh)
#   launch/prepare_data.sh --on-tpu --dry_run ... # prints the gcloud command, runs nothing
#
# MANUAL_DIR holds ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (from image-net.org; you
# must accept its terms yourself). It may be a gs:// folder; the tars are then copied down
# first. Default: $LOCAL_DATA_DIR/downloads/manual. LOCAL_DATA_DIR defaults to
# ~/tensorflow_datasets and needs about 300 GB free (tars + prepared records).
# PYTHON: interpreter with `pip install -e ".[tf]"` (default ~/$REMOTE_VENV/bin/python, else python3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { echo "usage: $0 [--on-tpu [--dry_run]] [MANUAL_DIR]" >&2; exit 2; }
take_dry_run "$@"
set -- ${ARGS_LEFT[@]+"${ARGS_LEFT[@]}"}
on_tpu=0
if [[ "${1:-}" == "--on-tpu" ]]; then on_tpu=1; shift; fi
[[ $# -le 1 ]] || usage
[[ "${1:-}" != -* ]] || usage
manual="${1:-}"
(( on_tpu || ! DRY_RUN )) || die "--dry_run needs --on-tpu (the local mode calls gsutil and python, not gcloud)."
load_env TFDS_DATA_DIR

if (( on_tpu )); then
  load_env PROJECT ZONE TPU_NAME TFDS_DATA_DIR
  echo "Preparing imagenet2012 on worker 0 of ${TPU_NAME} (hours; follow with the output here)."
  tpu_ssh 0 "cd ~/$(quote "${REMOTE_DIR}") && S4L_ENV=/dev/null TFDS_DATA_DIR=$(quote "${TFDS_DATA_DIR}") \
REMOTE_VENV=$(quote "${REMOTE_VENV}") LOCAL_DATA_DIR=$(quote "${LOCAL_DATA_DIR:-}") \
bash launch/prepare_data.sh ${manual:+$(quote "${manual}")}"
  exit 0
fi

local_dir="${LOCAL_DATA_DIR:-${HOME}/tensorflow_datasets}"
local_dir="${local_dir%/}"
[[ "${local_dir}" != gs://* ]] || die "LOCAL_DATA_DIR must be a local disk path."
python="${PYTHON:-${HOME}/${REMOTE_VENV}/bin/python}"
[[ -x "${python}" ]] || python=python3
manual_local="${local_dir}/downloads/manual"
mkdir -p "${manual_local}"
if [[ "${manual}" == gs://* ]]; then
  gsutil -m cp -n "${manual%/}/ILSVRC2012_img_train.tar" "${manual%/}/ILSVRC2012_img_val.tar" "${manual_local}/"
elif [[ -n "${manual}" ]]; then
  manual_local="${manual%/}"
fi
for t in ILSVRC2012_img_train.tar ILSVRC2012_img_val.tar; do
  [[ -f "${manual_local}/${t}" ]] || die "${manual_local}/${t} is missing; download it from image-net.org."
done

echo "download_and_prepare imagenet2012 into ${local_dir} (manual tars: ${manual_local})"
"${python}" - "${local_dir}" "${manual_local}" <<'PY'
import sys
import tensorflow_datasets as tfds
data_dir, manual_dir = sys.argv[1], sys.argv[2]
builder = tfds.builder("imagenet2012", data_dir=data_dir)
builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
print(builder.info.splits)
PY

echo "Copying ${local_dir}/imagenet2012 to ${TFDS_DATA_DIR%/}/"
gsutil -m cp -r "${local_dir}/imagenet2012" "${TFDS_DATA_DIR%/}/"
echo "Done. Training reads it via TFDS_DATA_DIR=${TFDS_DATA_DIR} (run.sh exports it)."
