"""``g3r train --validate-only``: model files scored with the training config's validation data."""

import argparse
import json

import pytest
from test_bench_reconstruct import tiny_model, tiny_train_config

from g3r_ros.commands import train as train_command


@pytest.mark.slow
def test_validate_only_scores_each_model_without_training(tmp_path, capsys):
    cfg = tiny_train_config(tmp_path)
    model = tiny_model(tmp_path / "m.pt")
    args = argparse.Namespace(config=str(cfg), out=str(tmp_path / "run"), resume=False, iterations=None, minutes=None,
                              device="cpu", quiet=True, validate_only=[str(model), str(model)])
    assert train_command.run(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["model"] for r in rows] == [str(model)] * 2
    for r in rows:
        assert r["val_init_psnr"] > 0 and r["val_g3r_psnr"] > 0 and r["val_score"] == pytest.approx(r["val_g3r_psnr"],
                                                                                                      abs=1e-3)
    assert rows[0]["val_g3r_psnr"] == pytest.approx(rows[1]["val_g3r_psnr"], abs=1e-3)   # deterministic
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
