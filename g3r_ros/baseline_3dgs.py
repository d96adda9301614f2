"""Public entry point of the per-scene 3DGS baseline (implemented in ``g3r_ros.baseline``)."""

from .baseline import SH_C0, Baseline3DGSConfig, BaselineResult, optimize_3dgs

__all__ = ["SH_C0", "Baseline3DGSConfig", "BaselineResult", "optimize_3dgs"]
