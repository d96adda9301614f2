"""The per-scene 3DGS baseline: graphdeco's recipe (Kerbl et al. 2023) on our renderer.

- ``config``: :class:`Baseline3DGSConfig` (graphdeco defaults, ``schedule_scale``);
- ``schedule``: exponential position-LR decay, scene extent;
- ``loss``: L1 + D-SSIM, PSNR;
- ``state``: parameters + Adam + densification stats, edited consistently;
- ``densify``: clone / split / prune / opacity reset;
- ``loop``: :func:`optimize_3dgs`.

See docs/BASELINE.md for the recipe and every deviation from the reference.
"""

from .config import SH_C0, Baseline3DGSConfig
from .loop import BaselineResult, optimize_3dgs

__all__ = ["SH_C0", "Baseline3DGSConfig", "BaselineResult", "optimize_3dgs"]
