"""Fixture run folders for the report tests: results.csv / cells.csv / metrics.csv written with pandas
(no Ray, no training). Values are chosen so every statistic has a known answer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

CASES = [f"case{i}" for i in range(6)]
# csi − scratch on brats dice_mean, per case (all positive: Wilcoxon exact p = 2/64 = 0.03125, n = 6)
GAIN = np.array([0.05, 0.06, 0.07, 0.07, 0.07, 0.08])


def cell(run, method, backbone, task, fraction, n_labeled, seed, *, status="done", reason="", config_id="cfg0",
         finetune_aug="none", missing_series=0.0, overrides=None, label_aware=False, new_schema=True, fold=0):
    cid = f"{method}|{backbone}|{task}|{fraction}|seed{seed}|fold{fold}|{config_id}"
    record = {"run": run, "cell_id": cid, "method": method, "backbone": backbone, "task": task, "fraction": fraction,
              "n_labeled": n_labeled, "seed": seed, "fold": fold, "status": status, "reason": reason, "label_aware": label_aware,
              "finetune_aug": finetune_aug, "missing_series": missing_series, "config_id": config_id,
              "pretrain_hash": "" if method == "scratch" else f"hash-{method}-{seed}", "pretrain_reused": False,
              "pretrain_seconds": 60.0, "finetune_seconds": 30.0, "device_hours": 0.025}
    key = "method_overrides" if new_schema else "hparams_overrides"
    record["config"] = json.dumps({"method_config": {"lr": 1e-3, **(overrides or {})}, key: overrides or {}})
    if new_schema:
        record["variant"] = ",".join(f"{k}={v}" for k, v in (overrides or {}).items())
        record["versions"] = json.dumps({"python": "3.11", "torch": "2.4", "monai": "1.4", "ray": "2.40", "suite": "abc1234"})
    return record


def rows_for(record, metric, values, *, scope="case", new_schema=True):
    base = {k: record[k] for k in ("run", "method", "backbone", "task", "fraction", "n_labeled", "seed", "fold", "cell_id")}
    if scope == "set":
        out = [{**base, "case_id": "" if new_schema else "__set__", "metric": metric, "value": values}]
    else:
        out = [{**base, "case_id": c, "metric": metric, "value": v} for c, v in zip(CASES, values)]
    if new_schema:
        for r in out:
            r["scope"] = scope
    return out


def write_run(folder: Path, *, new_schema: bool = True, mixup: bool = False, collide: bool = False) -> Path:
    """brats (segmentation: dice_mean, dice_all, hd95_mean, masd with NaN) with scratch / csi / inpainting on unet2d at
    100% (3 seeds) and 25% (seed 0 only), csm n/a; prostate158 (classification: auc, accuracy; set-level) on vit.
    ``mixup``: the same methods again with --finetune-aug mixup (scratch much worse). ``collide``: a second csi
    configuration whose label reads the same (another config id)."""
    folder.mkdir(parents=True, exist_ok=True)
    cells, rows = [], []
    rng = np.random.default_rng(7)
    run = folder.name
    for aug in (["none", "mixup"] if mixup else ["none"]):
        shift = 0.6 if aug == "mixup" else 0.0  # the mixup scratch baseline is much worse
        for fraction, n_labeled, seeds in (("100%", 9, (0, 1, 2)), ("25%", 2, (0,))):
            for seed in seeds:
                base = 0.5 + 0.05 * seed + rng.normal(0, 0.02, len(CASES)) - (0.2 if fraction == "25%" else 0.0)
                configs = [("scratch", "cfg0", base - shift), ("csi", "cfg1", base + GAIN), ("inpainting", "cfg2", base + GAIN - 0.01)]
                if collide:
                    configs.append(("csi", "cfg9", base + GAIN + 0.1))
                for method, cfg, dice in configs:
                    rec = cell(run, method, "unet2d", "brats", fraction, n_labeled, seed, config_id=cfg + ("m" if aug == "mixup" else ""),
                               finetune_aug=aug, new_schema=new_schema)
                    cells.append(rec)
                    rows += rows_for(rec, "dice_mean", dice, new_schema=new_schema)
                    rows += rows_for(rec, "dice_all", dice + 0.01, new_schema=new_schema)
                    rows += rows_for(rec, "hd95_mean", 20 - 10 * dice, new_schema=new_schema)
                    masd = 5 - 2 * dice
                    masd[[1, 4]] = np.nan  # MASD's one-empty rule
                    rows += rows_for(rec, "masd", masd, new_schema=new_schema)
                if aug == "none":
                    cells.append(cell(run, "csm", "vit", "brats", fraction, n_labeled, seed, status="n/a", reason="needs >= 2 series",
                                      config_id="cfg3", new_schema=new_schema))
    for method, aucs in (("scratch", [0.6, 0.62, 0.58]), ("csm", [0.8, 0.85, 0.79])):
        for seed, auc in enumerate(aucs):
            rec = cell(run, method, "vit", "prostate158", "100%", 6, seed, config_id=f"p{method}", new_schema=new_schema)
            cells.append(rec)
            rows += rows_for(rec, "auc", auc, scope="set", new_schema=new_schema)
            rows += rows_for(rec, "accuracy", auc - 0.1, scope="set", new_schema=new_schema)
            probs = rows_for(rec, "prob_positive", np.full(len(CASES), 0.5), new_schema=new_schema)
            rows += probs
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    pd.DataFrame(cells).to_csv(folder / "cells.csv", index=False)
    if new_schema:
        metrics = [("brats", "dice_mean", True, True, "case"), ("brats", "dice_all", True, False, "case"),
                   ("brats", "hd95_mean", False, False, "case"), ("brats", "masd", False, False, "case"),
                   ("prostate158", "auc", True, True, "set"), ("prostate158", "accuracy", True, False, "set")]
        pd.DataFrame(metrics, columns=["task", "metric", "higher_is_better", "primary", "scope"]).to_csv(folder / "metrics.csv", index=False)
    (folder / "config.json").write_text(json.dumps({"profile": {"name": "smoke"}, "data_roots": {
        "brats": "/cache/synthetic/brats-n16", "prostate158": "/cache/synthetic/prostate158"}}))
    return folder
