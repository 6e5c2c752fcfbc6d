#!/usr/bin/env bash
# One command for a bare GPU node (torch preinstalled, no package index): the headline row of the table
# (CIFAR-100-LT γ=100, resnet32x4 -> resnet8x4: teacher, then CE/KD/DKD/ReviewKD/LTKD students in parallel).
#
#   scripts/gpu_row.sh DATA WHEELHOUSE OUT BUDGET
#
#   DATA        a folder holding cifar-100-python/, or a .tar.xz of it (unpacked once)
#   WHEELHOUSE  `make wheelhouse` output, installed once into a private target (torch untouched); `none`:
#               use the environment as it is
#   OUT         receives gpu_row.tar.gz (every metrics.json with per-epoch times, the table .md/.csv/.png,
#               environment.json with GPU / torch / CUDA versions, selfcheck.log), gpu_row.md (the table)
#               and gpu_row.log (this command's console)
#   BUDGET      wall-clock budget of the whole command, counted from its start (9m, 540, 1h): training
#               checkpoints and stops in time to pack the results, and the command exits with status 75;
#               re-running the same command continues where it stopped.
#
# Steps: install the wheels, unpack the data, run the CUDA self-check (`pytest -m cuda`; stops there,
# naming the failing tests, if it fails), train the row as one parallel sweep (the first job trains the
# teacher under the cache lock, the others wait and load it), tabulate, pack.
# Environment: PYTHON (python3), LTKD_ROW_STATE (.gpu/row: everything a re-run resumes from),
# LTKD_ROW_JOBS (5, the sweep's parallel jobs), LTKD_ROW_ARGS (extra overrides, e.g. smoke size on a CPU).
set -uo pipefail

if [ $# -ne 4 ]; then
    sed -n '5,16p' "$0" >&2
    exit 2
fi
export LTKD_LAUNCH_TIME="${LTKD_LAUNCH_TIME:-$(date +%s.%N)}"  # every budget below counts from here
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="$1" WHEELHOUSE="$2" OUT="$(mkdir -p "$3" && cd "$3" && pwd)" BUDGET="$4"
PY="${PYTHON:-python3}"
STATE="$(mkdir -p "${LTKD_ROW_STATE:-$ROOT/.gpu/row}" && cd "${LTKD_ROW_STATE:-$ROOT/.gpu/row}" && pwd)"
JOBS="${LTKD_ROW_JOBS:-5}"
PACK_RESERVE_S=30  # tabulating and packing after training stops
SWEEP=gpu_row
cd "$ROOT" || exit 2
exec > >(tee -a "$OUT/gpu_row.log") 2>&1
echo "== gpu_row.sh $(date -u +%FT%TZ) budget $BUDGET, state $STATE"

export PYTHONPATH="$ROOT"  # this checkout's code (and tests) first, then the wheels
if [ "$WHEELHOUSE" != none ]; then
    if [ ! -f "$STATE/site/.installed" ]; then
        "$PY" -m pip install --quiet --no-index --no-deps --target "$STATE/site" "$WHEELHOUSE"/*.whl || exit 2
        touch "$STATE/site/.installed"
    fi
    PYTHONPATH="$PYTHONPATH:$STATE/site"
fi

if [ -f "$DATA" ]; then
    if [ ! -d "$STATE/data/cifar-100-python" ]; then
        mkdir -p "$STATE/data" && tar xJf "$DATA" -C "$STATE/data" || exit 2
    fi
    DATA="$STATE/data"
fi

mkdir -p "$STATE/pack"
"$PY" - "$STATE/pack/environment.json" <<'EOF' || exit 2
import datetime, json, platform, subprocess, sys
import torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
env = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
       "python": platform.python_version(), "commit": commit or None,
       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
open(sys.argv[1], "w").write(json.dumps(env, indent=1) + "\n")
print("environment:", env)
if gpu is None:
    print("WARNING: no CUDA device: the self-check skips its tests and training runs on the CPU")
EOF

if [ ! -f "$STATE/selfcheck.passed" ]; then
    echo "== CUDA self-check (pytest -m cuda)"
    "$PY" -m pytest -q -m cuda -rfEs -p no:cacheprovider tests > "$STATE/pack/selfcheck.log" 2>&1
    status=$?
    tail -n 3 "$STATE/pack/selfcheck.log"
    if [ $status -ne 0 ]; then
        echo "self-check FAILED (pytest status $status); nothing trained. Failing tests:"
        grep -E "^(FAILED|ERROR)" "$STATE/pack/selfcheck.log"
        tar czf "$OUT/gpu_row.tar.gz" -C "$STATE" pack
        exit 1
    fi
    touch "$STATE/selfcheck.passed"
fi

train_budget="$("$PY" -c "from ltkd.deadline import parse_duration as p; print(p('$BUDGET') - $PACK_RESERVE_S)")" || exit 2
echo "== the row: $JOBS parallel jobs, training budget ${train_budget}s from the start"
# shellcheck disable=SC2086  # LTKD_ROW_ARGS is a list of overrides
"$PY" -m ltkd.train -m experiment=table_cifar100_lt_g100_resnet32x4_resnet8x4 sweep_name=$SWEEP logger=none \
    data.root="$DATA" data.download=false paths.sweep_root="$STATE/multirun" paths.teacher_cache="$STATE/cache" \
    hydra/launcher=joblib hydra.launcher.n_jobs="$JOBS" trainer.time_limit="$train_budget" ${LTKD_ROW_ARGS:-}
status=$?

runs="$STATE/multirun/$SWEEP"
if compgen -G "$runs/*/*/*/*/metrics.json" > /dev/null; then
    "$PY" scripts/make_table.py "$runs" --name "$SWEEP" --out "$STATE/pack" > /dev/null && cp "$STATE/pack/$SWEEP.md" "$OUT/"
fi
(cd "$STATE" && find "multirun/$SWEEP" -name metrics.json -o -name config.yaml -o -name per_class_accuracy.png \
    | tar czf "$OUT/gpu_row.tar.gz" pack -T -)
case $status in
    0) echo "== row complete: $OUT/gpu_row.tar.gz" ;;
    75) echo "== out of budget: progress checkpointed in $STATE; re-run the same command to continue" ;;
    *) echo "== the sweep failed (status $status); see above" ;;
esac
exit $status
