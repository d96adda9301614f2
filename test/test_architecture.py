"""The layering rule: the core (everything outside ``g3r_ros/ros/``) never imports rclpy.

Checked twice: statically (no ``import rclpy`` / ``from rclpy`` anywhere in the core source,
lazy imports included) and at run time (importing every core module, plus the rclpy-free
parts of the adapter, leaves ``rclpy`` out of ``sys.modules``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "g3r_ros"
ROS_FREE_ADAPTER = ["g3r_ros.ros.params", "g3r_ros.ros.logs"]


def _core_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "ros" not in p.relative_to(PACKAGE).parts[:1])


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_source_never_imports_rclpy():
    files = _core_files()
    assert len(files) > 30  # the walk found the package
    offenders = [str(p.relative_to(PACKAGE)) for p in files if "rclpy" in _imported_roots(p)]
    assert not offenders, f"core modules importing rclpy: {offenders}"


def test_importing_the_core_loads_no_rclpy():
    modules = [_module_name(p) for p in _core_files() if p.name != "__main__.py"] + ROS_FREE_ADAPTER
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n"
            "    importlib.import_module(m)\n"
            "print('rclpy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "False", "importing the core pulled in rclpy"
