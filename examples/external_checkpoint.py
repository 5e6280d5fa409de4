"""Evaluate a checkpoint made elsewhere against scratch, from Python (``benchmark.api.run``), on the built-in data.

    python examples/external_checkpoint.py                          # a stand-in checkpoint, smoke profile, brats
    python examples/external_checkpoint.py --checkpoint /ckpt/model.pt --backbone unet2d --tasks brats,btcv

Without --checkpoint it writes a stand-in for your file: a unet2d at the smoke profile's width, saved the way a
DistributedDataParallel run saves one (``torch.save(ddp_model.state_dict())``: every key starts with ``module.``).
The same as ``python run_benchmark.py --pretrained ours=PATH:backbone=B --tasks ...``.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmark.api import run
from benchmark.backbones import SMOKE_SIZE, build_backbone


def stand_in(path: Path) -> Path:
    torch.manual_seed(0)
    network = build_backbone("unet2d", in_channels=4, out_channels=4, size=SMOKE_SIZE, roi=(64, 64))
    torch.save({f"module.{key}": value for key, value in network.state_dict().items()}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="your checkpoint (default: a stand-in, see above)")
    parser.add_argument("--backbone", default="unet2d")
    parser.add_argument("--tasks", default="brats")
    parser.add_argument("--profile", default="smoke")
    args = parser.parse_args()
    checkpoint = args.checkpoint or stand_in(Path(tempfile.mkdtemp()) / "ours_ddp.pt")
    result = run(pretrained={"ours": f"{checkpoint}:backbone={args.backbone}"}, tasks=args.tasks, profile=args.profile,
                 fractions=["100%", "25%"], no_dashboard=True)
    table, folder = result
    print(table[table.metric == "dice_mean"].groupby(["task", "method", "fraction"]).value.mean().unstack("fraction").round(3))
    print(result.cells[["method", "backbone", "task", "fraction", "status", "pretrain_hash", "transfer_loaded", "transfer_missing",
                        "transfer_unexpected"]].to_string(index=False))
    print(f"report: {folder / 'leaderboard.md'}")


if __name__ == "__main__":
    main()
