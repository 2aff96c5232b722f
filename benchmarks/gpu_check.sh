#!/usr/bin/env bash
# The GPU side of benchmarks/gpu_check.py: install the carried wheels, then run the check.
#
# Prepare on a machine whose pip reaches a registry:   python benchmarks/gpu_check.py --wheels .whl
# Then, on the GPU machine, from the repository root:  bash benchmarks/gpu_check.sh [gpu_check.py options]
# (the device tool: command "set -o pipefail; bash benchmarks/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log",
#  carry [".whl"], timeout_s 540; the JSON lands in $OUT/gpu_check.json).
#
# The wheels go into /tmp/site, first on PYTHONPATH, as the device README says; rlvr itself travels as source, and
# gpu_check.py puts the repository on the path and sets the offline environment (HF_HUB_OFFLINE, ...) itself.
set -euo pipefail
cd "$(dirname "$0")/.."
# Overridable for a rehearsal elsewhere: the interpreter, the wheel directory, the install target.
python=${PYTHON:-python3}
wheel_dir=${GPU_CHECK_WHEELS:-.whl}
site=${GPU_CHECK_SITE:-/tmp/site}
shopt -s nullglob
wheels=("$wheel_dir"/*.whl)
if ((${#wheels[@]})); then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${wheels[@]}"
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "gpu_check.sh: no wheels in $wheel_dir/ (python benchmarks/gpu_check.py --wheels .whl makes them); using what is installed" >&2
fi
export PYTHONUNBUFFERED=1
exec "$python" benchmarks/gpu_check.py "$@"
