#!/usr/bin/env bash
# One-shot G3R-Net training / checks on a fresh GPU machine without network (see docs/GPU.md).
#
#   tools/gpu_train.sh train  OUT [--minutes M] [--config C] [--device cuda|cpu] [--iterations N]
#   tools/gpu_train.sh check  OUT [--device cuda|cpu] [--cases "1920x1080/1m"] [--kitti-cache F] [--quick]
#   tools/gpu_train.sh all    OUT [--minutes M]          # check, then train (one device call)
#
# Prepared on the CPU machine (carry these paths with the device tool):
#   .whl/                    wheels of what the GPU image lacks   (tools/gpu_wheels.sh)
#   runs/train_cache.npz     real training + validation windows   (g3r train-cache --config C --real)
#   runs/kitti_full.npz      one full-resolution KITTI window     (g3r train-cache --config C --full-window F)
# train: installs the wheels (if any), pre-generates the config's synthetic scenes in parallel,
#   tries to build gsplat's CUDA extension (else the torch backend renders on CUDA), trains from
#   the shipped weights for M minutes and writes OUT/{g3r_net.pt,g3r_net_best.pt,train_log.jsonl,
#   MODEL_CARD.md,training_curves.png,train.json}.
# check: prints (and writes OUT/check.json) one JSON: the CUDA parity tests, `g3r bench render
#   --device cuda` (torch backend and gsplat), and 24 G3R steps on a full-resolution KITTI window.
# --device cpu is the dry run (a few iterations; test/test_gpu_script.py runs it in `make test`).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
MODE="${1:-}"; OUT="${2:-}"
if [[ -z "$MODE" || -z "$OUT" || ! "$MODE" =~ ^(train|check|all)$ ]]; then
  sed -n 2,20p "$0"; exit 2
fi
shift 2
MINUTES=6; CONFIG=config/train_gpu.yaml; DEVICE=cuda; ITERS=""; CASES="1920x1080/1m"; QUICK=0
KITTI_CACHE=runs/kitti_full.npz
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2;;
    --config) CONFIG="$2"; shift 2;;
    --device) DEVICE="$2"; shift 2;;
    --iterations) ITERS="$2"; shift 2;;
    --cases) CASES="$2"; shift 2;;
    --quick) QUICK=1; shift;;
    --kitti-cache) KITTI_CACHE="$2"; shift 2;;
    *) echo "unknown argument: $1" >&2; exit 2;;
  esac
done
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
log() { echo "[gpu_train $(date +%H:%M:%S)] $*"; }

# 1. dependencies: carried wheels (never the network), only when something is missing
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
DEPS_CHECK="import g3r_ros, rosbags, plyfile, transforms3d, mcap, torch"
if ! "$PY" -c "$DEPS_CHECK" 2> /dev/null; then
  compgen -G ".whl/*.whl" > /dev/null || { echo "dependencies missing and no .whl/ carried (tools/gpu_wheels.sh)" >&2; exit 3; }
  log "installing $(ls .whl/*.whl | wc -l) carried wheels into /tmp/g3r_site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/g3r_site .whl/*.whl \
    || { echo "wheel install failed" >&2; exit 3; }
  export PYTHONPATH="/tmp/g3r_site:$PYTHONPATH"
fi
"$PY" -c "$DEPS_CHECK" || { echo "missing dependencies" >&2; exit 3; }

# 2. gsplat's CUDA extension: build it in the background while the CPU prepares data
GSPLAT_LOG="$OUT/gsplat_build.log"
if [[ "$DEVICE" == cuda ]]; then
  ( "$PY" - > "$GSPLAT_LOG" 2>&1 <<'EOF'
import time, torch
t = time.time()
try:
    from gsplat.cuda._backend import _C
    ok = _C is not None
except Exception as e:  # noqa: BLE001 - report any build failure
    ok = False
    print("gsplat build failed:", type(e).__name__, e)
print("gsplat_ok" if ok else "gsplat_missing", round(time.time() - t, 1))
EOF
  ) &
  GSPLAT_PID=$!
fi
wait_gsplat() {
  [[ -n "${GSPLAT_PID:-}" ]] || return 1
  wait "$GSPLAT_PID"; grep -q gsplat_ok "$GSPLAT_LOG"
}

run_check() {
  log "check: CUDA parity tests"
  local cuda_tests=(test/test_render_gradients.py test/test_sparse_conv.py test/test_render_images.py)
  "$PY" -m pytest -q -x -k cuda "${cuda_tests[@]}" -p no:cacheprovider --junitxml "$OUT/parity.xml" \
    > "$OUT/parity.log" 2>&1; local parity_rc=$?
  local cases="$CASES"
  [[ "$QUICK" == 1 ]] && cases="96x64/2k"
  log "check: g3r bench render --device $DEVICE --cases $cases"
  local bench_json="$OUT/bench_render.json"
  if [[ "$DEVICE" == cuda ]]; then
    wait_gsplat || log "gsplat did not build: timing the torch backend only"
    "$PY" -m g3r_ros bench render --device cuda --cases $cases --repeats 5 > "$bench_json" 2> "$OUT/bench_render.log"
  else
    "$PY" -m g3r_ros bench render --no-reference --cases $cases --repeats 1 > "$bench_json" 2> "$OUT/bench_render.log"
  fi
  log "check: 24 G3R steps on a full-resolution KITTI window"
  local steps=24; [[ "$QUICK" == 1 ]] && steps=2
  "$PY" -m g3r_ros.benchmarks.window_steps --cache "$KITTI_CACHE" --steps "$steps" --device "$DEVICE" \
    > "$OUT/kitti_steps.json" 2> "$OUT/kitti_steps.log"
  "$PY" - "$OUT" "$parity_rc" <<'EOF'
import json, sys, pathlib, xml.etree.ElementTree as ET
out, rc = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def load(name):
    try:
        return json.loads((out / name).read_text())
    except Exception as e:  # noqa: BLE001
        return {"error": f"{name}: {type(e).__name__}: {e}"}
parity = {"rc": rc}
try:
    suite = ET.parse(out / "parity.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    parity.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
except Exception as e:  # noqa: BLE001
    parity["error"] = str(e)
report = {"parity_tests": parity, "bench_render": load("bench_render.json"), "kitti_steps": load("kitti_steps.json")}
(out / "check.json").write_text(json.dumps(report, indent=2))
print(json.dumps(report, indent=2))
EOF
}

run_train() {
  log "train: synthetic scenes of $CONFIG"
  local jobs; jobs=$(( $(nproc) > 2 ? $(nproc) - 1 : 1 ))
  "$PY" -m g3r_ros train-cache --config "$CONFIG" --synth --jobs "$jobs" > "$OUT/synth.json" 2> "$OUT/synth.log" \
    || { tail -20 "$OUT/synth.log"; return 4; }
  if [[ "$DEVICE" == cuda ]] && ! wait_gsplat; then
    log "gsplat did not build: training renders with the torch backend on CUDA"
  fi
  log "train: $MINUTES minutes on $DEVICE"
  local extra=(); [[ -n "$ITERS" ]] && extra+=(--iterations "$ITERS")
  "$PY" -m g3r_ros train --config "$CONFIG" --out "$OUT/run" --device "$DEVICE" --minutes "$MINUTES" --quiet \
    "${extra[@]}" > "$OUT/train.log" 2>&1 || { tail -30 "$OUT/train.log"; return 5; }
  for f in g3r_net.pt g3r_net_best.pt train_log.jsonl MODEL_CARD.md training_curves.png; do
    [[ -f "$OUT/run/$f" ]] && cp "$OUT/run/$f" "$OUT/$f"
  done
  "$PY" - "$OUT" <<'EOF'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
rows = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines() if l.strip()]
val = [r for r in rows if "val_score" in r]
s = {"iterations": len(rows), "seconds_per_iteration": sum(r["time_s"] for r in rows) / max(len(rows), 1),
     "real_iterations": sum(1 for r in rows if r.get("real")), "validation": val[-1] if val else None}
(out / "train.json").write_text(json.dumps(s, indent=2))
print(json.dumps(s, indent=2))
EOF
  rm -rf "$OUT/run"  # checkpoints with optimizer state are too large to bring back
}

rc=0
case "$MODE" in
  check) run_check || rc=$?;;
  train) run_train || rc=$?;;
  all) run_check || rc=$?; run_train || rc=$?;;
esac
log "done (rc=$rc)"
exit $rc
