"""``g3r train --config config/train_<name>.yaml --out RUN_DIR [--resume]``, or
``g3r train --config ... --out RUN_DIR --validate-only MODEL [MODEL ...]``."""

from __future__ import annotations

NAME = "train"
HELP = "train G3R-Net across scenes (single process, or under torchrun with DDP)"


def add_arguments(p):
    p.add_argument("--config", required=True, help="training config YAML (e.g. config/train_cpu.yaml)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, curves, g3r_net.pt)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    p.add_argument("--iterations", type=int, default=None, help="override the number of scene iterations")
    p.add_argument("--minutes", type=float, default=None,
                   help="stop after this much wall time (then validate and checkpoint); resumable")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--validate-only", nargs="+", metavar="MODEL", default=None,
                   help="no training: score model files (or 'shipped') with the config's validation data, "
                        "exactly as training validates, and print one JSON line per model")


def run(args) -> int:
    from ..train import Trainer, load_train_config

    cfg = load_train_config(args.config)
    if args.iterations is not None:
        cfg.iterations = args.iterations
    if args.device is not None:
        cfg.device = args.device
    if args.validate_only:
        return _validate_only(cfg, args)
    trainer = Trainer(cfg, args.out, resume=args.resume, progress=not args.quiet)
    path = trainer.fit(max_minutes=args.minutes)
    if trainer.rank == 0:
        print(f"model written to {path}")
    return 0


def _validate_only(cfg, args) -> int:
    import json
    import time

    from ..model import load_model
    from ..train import Trainer

    cfg.init_model = args.validate_only[0]
    trainer = Trainer(cfg, args.out, progress=not args.quiet)
    trainer.load_data()
    for path in args.validate_only:
        trainer.model = load_model(None if path == "shipped" else path, device=trainer.device)
        t0 = time.perf_counter()
        result = trainer.validate()
        print(json.dumps({"model": path, **{k: round(v, 3) for k, v in result.items()},
                          "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    return 0
