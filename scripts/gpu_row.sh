#!/usr/bin/env bash
# One command for a bare GPU node (torch preinstalled, no package index, maybe no git): the headline row
# (CIFAR-100-LT γ=100, resnet32x4 -> resnet8x4, full recipe): the teacher, then the LTKD, KD, DKD and CE
# students in parallel, then ReviewKD if time is left.
#
#   scripts/gpu_row.sh [--plan] DATA WHEELHOUSE OUT BUDGET
#
#   --plan      print the phases with their estimated times and budgets, and exit
#   DATA        a folder holding cifar-100-python/, or a .tar.xz of it (unpacked once)
#   WHEELHOUSE  `make wheelhouse` output, installed once into a private target (torch untouched); `none`:
#               use the environment as it is
#   OUT         receives, on every exit: gpu_row.log (this console), selfcheck.log, progress.json (every
#               run's per-epoch history and times so far), gpu_row.tar.gz (every metrics.json, config.yaml,
#               plot, the table, environment.json); gpu_row.md (the table) once a run finished; teacher.pt
#               (or teacher.pt.000, .001, ...: the returned teacher) once the teacher is trained
#   BUDGET      wall-clock budget of the whole command, counted from its start (9m30s, 570, 1h): training
#               checkpoints and stops in time to pack, and the command exits with 75; the same command again
#               continues where it stopped (same state: a warm machine), or from the returned teacher
#               (LTKD_ROW_TEACHER, on a fresh machine)
#
# Environment: PYTHON (python3); LTKD_ROW_STATE (.gpu/row: what a re-run resumes from); LTKD_ROW_TEACHER (a
# returned teacher, OUT/teacher.pt of an earlier call: imported into the cache, never retrained); LTKD_ROW_DEVICE
# (cuda: refuse to run without a GPU; cpu: a rehearsal on purpose); LTKD_ROW_JOBS (4: the headline students at
# once); LTKD_ROW_ARGS (extra overrides, e.g. smoke size); LTKD_COMMIT (the commit, where git is missing).
set -uo pipefail

PLAN_ONLY=0
if [ "${1:-}" = "--plan" ]; then PLAN_ONLY=1; shift; fi
if [ $# -ne 4 ] && [ $PLAN_ONLY -eq 0 ]; then
    sed -n '6,19p' "$0" >&2
    exit 2
fi
BUDGET="${4:-9m30s}"
PY="${PYTHON:-python3}"
DEVICE="${LTKD_ROW_DEVICE:-cuda}"
JOBS="${LTKD_ROW_JOBS:-4}"
SELFCHECK_TIMEOUT_S=150  # the self-check's own time; it takes 0.5-0.8 min on an H200
PACK_RESERVE_S=40        # tabulating, the progress file and packing after training stops
MIN_PASS_S=30            # a pass with less training budget left is not started (start-up alone takes ~15 s)
STOP_GRACE_S=60          # beyond the training budget before an outer timeout kills a pass whose stop hangs
HEADLINE=ltkd,kd,dkd,ce  # first pass, in parallel; ReviewKD (the slowest student) in the second
SWEEP=gpu_row

plan() {
    cat <<EOF
plan of one call (estimates for one H200 from op counts and FLOPs, not yet measured; budget $BUDGET):
  phase                                   estimate      limit in this command
  machine start (before the command)      1-2 min       -
  wheels + data unpack (first call)       0.2 min       -
  CUDA self-check (pytest -m 'cuda and not compile')  0.5-0.8 min   ${SELFCHECK_TIMEOUT_S} s (timeout)
  teacher resnet32x4, 240 epochs          2.9-4.2 min   the training budget (trainer.time_limit)
  students LTKD, KD, DKD, CE in parallel  3.6-5.7 min   the training budget
  ReviewKD student (second pass)          if time is left, else the next call
  table, progress, pack                   0.1-0.8 min   ${PACK_RESERVE_S} s kept back
  training budget = BUDGET - ${PACK_RESERVE_S} s from the start; the row's recipe is the full one, with
  trainer.eval_every=10 (the last epoch always evaluated) and trainer.checkpoint_every=20 (a stop saves at once)
EOF
}
if [ $PLAN_ONLY -eq 1 ]; then plan; exit 0; fi

export LTKD_LAUNCH_TIME="${LTKD_LAUNCH_TIME:-$(date +%s.%N)}"  # every budget below counts from here
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="$1" WHEELHOUSE="$2" OUT="$(mkdir -p "$3" && cd "$3" && pwd)"
STATE="$(mkdir -p "${LTKD_ROW_STATE:-$ROOT/.gpu/row}" && cd "${LTKD_ROW_STATE:-$ROOT/.gpu/row}" && pwd)"
cd "$ROOT" || exit 2
exec > >(tee -a "$OUT/gpu_row.log") 2>&1
echo "== gpu_row.sh $(date -u +%FT%TZ) budget $BUDGET, device $DEVICE, state $STATE"
plan

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
if [ -z "${LTKD_COMMIT:-}" ] && command -v git > /dev/null; then
    LTKD_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null)"
fi
export LTKD_COMMIT="${LTKD_COMMIT:-}"  # metrics.json's commit where git is missing

mkdir -p "$STATE/pack"
"$PY" - "$STATE/pack/environment.json" "$DEVICE" <<'EOF' || exit 2
import datetime, json, os, platform, sys
import torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
env = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
       "python": platform.python_version(), "commit": os.environ.get("LTKD_COMMIT") or None,
       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
open(sys.argv[1], "w").write(json.dumps(env, indent=1) + "\n")
print("environment:", env)
if sys.argv[2] == "cuda" and gpu is None:
    print("error: no CUDA device; the row trains on a GPU only (LTKD_ROW_DEVICE=cpu rehearses it on the CPU)")
    sys.exit(1)
EOF

ROW=(experiment=table_cifar100_lt_g100_resnet32x4_resnet8x4 logger=none data.root="$DATA" data.download=false
     paths.sweep_root="$STATE/multirun" paths.teacher_cache="$STATE/cache" trainer.device="$DEVICE")
# shellcheck disable=SC2206  # LTKD_ROW_ARGS is a list of overrides
ROW+=(${LTKD_ROW_ARGS:-})
ENTRY="$("$PY" -m ltkd.transfer teacher-path "${ROW[@]}")" || exit 2
WATCHER=""

finish() {  # every exit: the returned teacher (once trained), the progress so far, the pack
    local status=$1
    if [ -n "$WATCHER" ]; then  # an export under way finishes; a watcher still waiting goes
        [ -f "$ENTRY" ] || kill "$WATCHER" 2> /dev/null
        wait "$WATCHER" 2> /dev/null
    fi
    export_teacher
    "$PY" -m ltkd.transfer progress "$STATE/multirun/$SWEEP" "$STATE/cache" "$OUT/progress.json" \
        || echo "progress.json could not be written"
    local runs="$STATE/multirun/$SWEEP"
    if compgen -G "$runs/*/*/*/*/metrics.json" > /dev/null; then
        "$PY" scripts/make_table.py "$runs" --name "$SWEEP" --out "$STATE/pack" > /dev/null && cp "$STATE/pack/$SWEEP.md" "$OUT/"
    fi
    cp "$OUT/selfcheck.log" "$OUT/progress.json" "$STATE/pack/" 2> /dev/null
    mkdir -p "$runs"
    (cd "$STATE" && find "multirun/$SWEEP" -name metrics.json -o -name config.yaml -o -name per_class_accuracy.png \
        | tar czf "$OUT/gpu_row.tar.gz" pack -T -)
    case $status in
        0) echo "== row complete: $OUT" ;;
        75) echo "== out of budget: progress checkpointed in $STATE; run the same command again to continue" \
                 "(on a fresh machine: with LTKD_ROW_TEACHER=<OUT of this call>/teacher.pt)" ;;
        *) echo "== stopped with status $status; see above" ;;
    esac
    exit "$status"
}

export_teacher() {  # the cache entry, compacted, into OUT (once)
    if [ -f "$ENTRY" ] && ! compgen -G "$OUT/teacher.pt*" > /dev/null; then
        "$PY" -m ltkd.transfer export-teacher "$OUT/teacher.pt" "${ROW[@]}" || echo "the teacher could not be exported"
    fi
}

if [ -n "${LTKD_ROW_TEACHER:-}" ]; then
    "$PY" -m ltkd.transfer import-teacher "$LTKD_ROW_TEACHER" "${ROW[@]}" || finish 2
fi

if [ ! -f "$STATE/selfcheck.passed" ]; then
    echo "== self-check (pytest -m 'cuda and not compile', timeout ${SELFCHECK_TIMEOUT_S} s)"
    per_test=()
    "$PY" -c "import pytest_timeout" 2> /dev/null && per_test=(--timeout=60)
    timeout -k 10 "$SELFCHECK_TIMEOUT_S" "$PY" -m pytest -q -m "cuda and not compile" -rfEs -p no:cacheprovider \
        "${per_test[@]}" tests > "$OUT/selfcheck.log" 2>&1
    status=$?
    tail -n 3 "$OUT/selfcheck.log"
    if [ $status -ne 0 ]; then
        echo "self-check FAILED (status $status; 124: timed out); nothing trained. Failing tests:"
        grep -E "^(FAILED|ERROR)" "$OUT/selfcheck.log"
        finish 1
    fi
    touch "$STATE/selfcheck.passed"
fi

( while [ ! -f "$ENTRY" ]; do sleep 5; done; export_teacher ) &  # the teacher comes back as soon as it exists
WATCHER=$!

train_budget="$("$PY" -c "from ltkd.deadline import parse_duration as p; print(p('$BUDGET') - $PACK_RESERVE_S)")" || finish 2
sweep() {  # one pass: its losses, its parallel jobs; an outer timeout only if the budget's own stop hangs
    local left_s
    left_s="$("$PY" -c "import time; print(int($LTKD_LAUNCH_TIME + $train_budget - time.time()))")"
    if [ "$left_s" -lt "$MIN_PASS_S" ]; then
        echo "== pass: loss=$1 not started: ${left_s}s of the training budget left (under ${MIN_PASS_S}s)"
        return 75
    fi
    echo "== pass: loss=$1, $2 jobs at once, training budget ${train_budget}s from the start (${left_s}s left)"
    timeout -k 20 "$((left_s + STOP_GRACE_S))" "$PY" -m ltkd.train -m "${ROW[@]}" sweep_name=$SWEEP loss="$1" \
        hydra/launcher=joblib hydra.launcher.n_jobs="$2" trainer.time_limit="$train_budget"
}
sweep "$HEADLINE" "$JOBS"
status=$?
if [ $status -eq 0 ]; then
    sweep reviewkd 1
    status=$?
fi
finish $status
