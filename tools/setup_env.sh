#!/usr/bin/env bash
# Bootstrap the project's virtual environment (.venv) on a fresh machine.
# Idempotent: each stage writes a stamp file and is skipped when its stamp exists.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
cd "$ROOT"

stamp() { mkdir -p "$VENV/.stamps"; touch "$VENV/.stamps/$1"; }
done_() { [ -f "$VENV/.stamps/$1" ]; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

if ! done_ base-v1; then
  echo "[setup] installing torch (CPU wheel) and the Python dependencies"
  "${PIP[@]}" --upgrade pip
  # torch first and pinned, so nothing later can pull a CUDA build.
  "${PIP[@]}" torch==2.13.0
  "${PIP[@]}" -r "$ROOT/tools/requirements.txt"
  # gsplat: optional CUDA backend and pure-torch reference used by the parity tests.
  "${PIP[@]}" --no-deps gsplat==1.5.3
  "${PIP[@]}" jaxtyping rich ninja 2>/dev/null || true
  stamp base-v1
fi

if ! done_ ros-v1; then
  echo "[setup] installing rclpy + message wheels (ROS 2 Kilted builds from PyPI)"
  "${PIP[@]}" ros-rclpy ros-sensor-msgs ros-nav-msgs ros-rmw-fastrtps-cpp ros-std-srvs \
    ros-visualization-msgs ros-diagnostic-msgs ros-geometry-msgs
  stamp ros-v1
fi

if ! done_ tf2msgs-v1; then
  if "$VENV/bin/python" -c "import tf2_msgs.msg" 2>/dev/null; then
    echo "[setup] tf2_msgs already importable"
  else
    bash "$ROOT/tools/build_tf2_msgs.sh" "$VENV"
  fi
  stamp tf2msgs-v1
fi

if ! done_ project-v1; then
  echo "[setup] installing g3r_ros in editable mode"
  "${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
  stamp project-v1
fi
echo "[setup] environment ready: $VENV"
