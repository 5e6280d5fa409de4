"""Probe a smoke recipe: one Job (a method on a backbone and a task, built-in data) trained with overrides of the smoke
profile, on one CPU thread (what each of the default run's two concurrent Jobs gets on a 2-core machine).

    python scripts/probe_smoke_recipe.py scratch unet2d btcv ft_steps=300 unet=8,16,32,64,64,8 [fr=100%,25%]

Overrides (key=value): ft_steps, ft_bs, ft_lr, ft_sched, pt_steps, pt_bs, pt_lr, pt_sched (the backbone's smoke
fine-tuning / pretraining recipe), aug (the fine-tuning spatial augmentation: profile (default: the smoke profile's), auto, none, si, dae, ...), roi (e.g. 64x64x32), vol (the profile's volume size, e.g. 32x32x32), shape (the built-in data's written grid),
unet (unet_features), swin_norm (instance | layer | batch | group), cases (the built-in data's case count),
vals (validations per fine-tuning), swin_feature_size, swin_window, vit_dim, vit_depth, vit_patch,
dir (work folder, default /tmp/medssl-probe). Prints each cell's mean test Dice, its seconds, and the pretraining's
logged losses: the numbers behind choosing the smoke recipes (issue 20), without a 7-minute run per try.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch

from benchmark import profiles
from benchmark.cli import parse_fractions
from benchmark.datasources import resolve_task_data
from benchmark.plan import MethodEntry, build_plan
from benchmark.records import FinetuneSettings
from benchmark.train import Hooks, run_job
from tasks import get_task

SIZE_KEYS = ("swin_feature_size", "swin_window", "vit_dim", "vit_depth", "vit_patch")


def probe_profile(backbone: str, overrides: dict[str, str]) -> profiles.Profile:
    base = profiles.SMOKE

    def recipe(current, prefix: str):
        return dataclasses.replace(current, steps=int(overrides.get(f"{prefix}_steps", current.steps)),
                                   batch_size=int(overrides.get(f"{prefix}_bs", current.batch_size)),
                                   lr=float(overrides.get(f"{prefix}_lr", current.lr)),
                                   schedule=overrides.get(f"{prefix}_sched", current.schedule))

    size = base.backbone_size
    if "unet" in overrides:
        size = dataclasses.replace(size, unet_features=tuple(int(x) for x in overrides["unet"].split(",")))
    size = dataclasses.replace(size, **{k: int(overrides[k]) for k in SIZE_KEYS if k in overrides})
    if "swin_norm" in overrides:
        size = dataclasses.replace(size, swin_norm=overrides["swin_norm"])
    rois = dict(base.rois)
    if "roi" in overrides:
        rois[backbone] = tuple(int(x) for x in overrides["roi"].split("x"))
    volume_size = tuple(int(x) for x in overrides["vol"].split("x")) if "vol" in overrides else base.volume_size
    task_recipes = {task: {**recipes, backbone: recipe(recipes[backbone], "ft")} if backbone in recipes else recipes
                    for task, recipes in base.task_finetune_recipes.items()}
    protocol = dataclasses.replace(base.protocol, validations_per_finetune=int(overrides.get("vals", base.protocol.validations_per_finetune)))
    return dataclasses.replace(base, name="probe", protocol=protocol, rois=rois, backbone_size=size, volume_size=volume_size, task_finetune_recipes=task_recipes,
                               finetune_recipes={**base.finetune_recipes, backbone: recipe(base.finetune_recipes[backbone], "ft")},
                               smoke_pretrain={**base.smoke_pretrain, backbone: recipe(base.smoke_pretrain[backbone], "pt")})


def main(argv: list[str]) -> None:
    method, backbone, task_name = argv[:3]
    overrides = dict(arg.split("=", 1) for arg in argv[3:])
    torch.set_num_threads(1)
    work = Path(overrides.get("dir", "/tmp/medssl-probe"))
    task = get_task(task_name)
    shape = tuple(int(x) for x in overrides["shape"].split("x")) if "shape" in overrides else task.synthetic_shape
    cases = int(overrides.get("cases", task.synthetic_cases))
    data = work / f"data-{task_name}-n{cases}-{'x'.join(map(str, shape))}"
    if not data.exists():  # the default run's built-in data: same case count, grid and seed
        task.write_synthetic(data, n_cases=cases, shape=shape, seed=0)
    task_data = resolve_task_data(task, data_root=data, cache_dir=work / "cache")
    plan = build_plan(finetune=FinetuneSettings(spatial_aug=overrides.get("aug", "profile")), methods=[MethodEntry(method)], task_data=[task_data], fractions=parse_fractions(overrides.get("fr", "100%,25%")),
                      seeds=[0], profile=probe_profile(backbone, overrides), cache_dir=work / "cache",
                      backbone=backbone if method == "scratch" else None)
    job = next(j for j in plan.jobs if j.method == method and j.backbone == backbone)
    if job.na_reason:  # e.g. dae on btcv alone: its CMCL needs the default run's multi-modality pretraining corpus
        sys.exit(f"{method}/{backbone} on {task_name} is n/a here: {job.na_reason}")
    if job.pretrain is not None:  # never a cached pretraining: the probe measures this recipe's
        job = dataclasses.replace(job, pretrain=dataclasses.replace(job.pretrain, path=str(work / f"pretrain-{time.time_ns()}.pt")))
    logs: list[str] = []
    started = time.perf_counter()
    for result in run_job(job, Hooks(log=logs.append)):
        dice = [row.value for row in result.rows if row.metric == "dice_mean"]
        cell = next(c for c in job.cells if c.cell_id == result.cell_id)
        print(f"{method}/{backbone} {task_name} {cell.fraction}: dice_mean {sum(dice) / len(dice):.3f}  "
              f"pretrain {result.pretrain_seconds:.1f}s finetune {result.finetune_seconds:.1f}s")
        per_region: dict[str, list[float]] = {}
        for row in result.rows:
            if row.metric.startswith("dice_") and row.metric != "dice_mean" and row.case_id:
                per_region.setdefault(row.metric, []).append(row.value)
        print("  " + ", ".join(f"{k[5:]} {sum(v) / len(v):.2f}" for k, v in per_region.items()))
    print(f"total {time.perf_counter() - started:.1f}s with {overrides}")
    print("\n".join(line for line in logs if " step " in line or "selected" in line))


if __name__ == "__main__":
    main(sys.argv[1:])
