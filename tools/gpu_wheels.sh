#!/usr/bin/env bash
# Download the wheels that the GPU machine's image lacks into .whl/ (run on a machine with PyPI).
# The device image has Python 3.12 with torch, numpy, scipy, pyyaml, tqdm, matplotlib, pillow and
# pytest; g3r_ros needs these on top (pure-Python or manylinux x86-64 wheels, exact versions):
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
PY="${PYTHON:-python3}"
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
PKGS=(gsplat==1.5.3 rosbags==0.11.9 plyfile==1.1.5 transforms3d==0.4.2 mcap==1.6.0 mcap-ros2-support==0.6.0
      apsw==3.54.1.0 backports.zstd==1.8.0 lz4==4.4.5 ruamel.yaml==0.19.1)
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download --no-deps -q "${PLAT[@]}" -d .whl "${PKGS[@]}"
du -sh .whl
ls .whl
