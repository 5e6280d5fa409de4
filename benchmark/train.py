"""pretrain() / finetune() / evaluate(): plain PyTorch loops, no Ray.

Distributed execution is injected through ``Hooks``: ``prepare_model`` / ``prepare_loader``
are identity locally and Ray Train's ``prepare_model`` / ``prepare_data_loader`` under Ray
(the way MAE's ``submitit_pretrain.py`` wraps ``main_pretrain.main``).
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmark.backbones import BackboneSize, build_backbone
from benchmark.classifier import ClassifierNet, VolumeClassDataset, fit_to_roi
from benchmark.data import CropDataset, SourcePoolDataset, drop_series, load_volumes
from benchmark.methods import PretextTask, Recipe, get_method
from tasks import SegmentationTask, Volume, get_task


@dataclass
class Hooks:
    """How the loops talk to their runtime: local (defaults) or Ray Train (``benchmark.ray_runner``)."""

    log: Callable[[str], None] = lambda msg: print(msg, flush=True)
    prepare_model: Callable[..., nn.Module] = lambda model, **kwargs: model
    prepare_loader: Callable[[DataLoader], DataLoader] = lambda loader: loader
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# ---- optimisation ----------------------------------------------------------------------------
def make_optimizer(params, recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=True)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; expected sgd, adam or adamw")


def lr_factor(step: int, *, total: int, recipe: Recipe) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine, poly (1 - t/T)^0.9 (nnU-Net) or constant."""
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    t = (step - recipe.warmup_steps) / max(1, total - recipe.warmup_steps)
    if recipe.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if recipe.schedule == "poly":
        return (1.0 - t) ** 0.9
    if recipe.schedule == "constant":
        return 1.0
    raise ValueError(f"unknown schedule {recipe.schedule!r}; expected cosine, poly or constant")


def _optimise(
    model: nn.Module,
    loader: DataLoader,
    recipe: Recipe,
    steps: int,
    loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    *,
    hooks: Hooks,
    tag: str,
) -> list[float]:
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total=steps, recipe=recipe))
    model.train()
    losses, log_every = [], max(1, steps // 4)
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        batch = {k: v.to(hooks.device, non_blocking=True) for k, v in batch.items()}
        loss = loss_fn(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{tag}: loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if hooks.is_main and (step + 1) % log_every == 0:
            window = losses[-log_every:]
            hooks.log(f"  {tag} step {step + 1}/{steps} loss {sum(window) / len(window):.4f}")
    return losses


def _loader(dataset, batch_size: int, hooks: Hooks) -> DataLoader:
    return hooks.prepare_loader(DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, drop_last=True))


# ---- the three stages ------------------------------------------------------------------------
def pretrain(method: PretextTask, volumes: list[Volume], *, recipe: Recipe, steps: int, roi, seed: int, hooks: Hooks) -> list[float]:
    """Train ``method`` (its backbone and heads) on unlabeled ``volumes``; returns the loss curve."""
    spec = method.data_spec(method.cfg)
    length = steps * recipe.batch_size * hooks.world_size
    if spec.kind == "source_pool":
        dataset = SourcePoolDataset(volumes, roi=roi, length=length, seed=seed, pool_size=spec.pool_size, same_patient=spec.same_patient)
    elif spec.kind in ("crops", "modality_crops"):  # label-aware methods also get batch["label"] (only of the cases they may see)
        dataset = CropDataset(volumes, roi=roi, length=length, seed=seed, with_label=method.label_aware,
                              foreground_prob=0.33 if method.label_aware else 0.0, single_modality=spec.kind == "modality_crops")
    else:
        raise ValueError(f"{method.registry_name}: unknown pretraining data kind {spec.kind!r}")
    generator = torch.Generator().manual_seed(seed * 1_000 + hooks.rank)  # own corruption draws per worker
    ddp_options = {} if method.trains_whole_backbone else {"find_unused_parameters": True}
    model = hooks.prepare_model(method, **ddp_options)
    return _optimise(
        model, _loader(dataset, recipe.batch_size, hooks), recipe, steps,
        lambda batch: model(batch, generator=generator)["loss"], hooks=hooks, tag=f"pretrain {method.registry_name}",
    )


def finetune(model: nn.Module, task: SegmentationTask, volumes: list[Volume], *, recipe: Recipe, steps: int, roi, seed: int, hooks: Hooks, tag: str,
             augmentation: str = "none", mixup_alpha: float = 0.4) -> list[float]:
    """Supervised training of a segmentation ``model`` on labelled ``volumes`` with the task's loss.

    ``augmentation``: "none", "mixup" (SI paper 6.4; images and dense targets blended) or
    "carvemix" (lesion regions carved from one case into another, labels alike).
    """
    from benchmark.augmentations import carvemix, mixup

    if augmentation not in ("none", "mixup", "carvemix"):
        raise ValueError(f"unknown fine-tuning augmentation {augmentation!r}; expected none, mixup or carvemix")
    dataset = CropDataset(volumes, roi=roi, length=steps * recipe.batch_size * hooks.world_size, seed=seed, with_label=True, foreground_prob=0.33)
    criterion = task.make_loss()
    wrapped = hooks.prepare_model(model)
    generator = torch.Generator().manual_seed(seed * 1_000 + 17 + hooks.rank)

    def loss_fn(batch):
        image, label = batch["image"], batch["label"]
        if augmentation == "carvemix":
            image, label = carvemix(image, label, generator=generator)
        target = task.loss_target(label)
        if augmentation == "mixup":
            image, target = mixup(image, target, alpha=mixup_alpha, generator=generator)
        return criterion(wrapped(image), target)

    return _optimise(wrapped, _loader(dataset, recipe.batch_size, hooks), recipe, steps, loss_fn, hooks=hooks, tag=tag)


@torch.no_grad()
def predict_volume(model: nn.Module, image: torch.Tensor, *, roi, spatial_dims: int) -> torch.Tensor:
    """Logits for a whole volume image [C, X, Y, Z] -> [1, K, X, Y, Z] by MONAI sliding-window inference.

    2D networks run slice by slice: the axial slices become the batch of a 2D sliding window.
    """
    from monai.inferers import sliding_window_inference

    model.eval()
    if spatial_dims == 3:
        return sliding_window_inference(image[None], roi_size=roi, sw_batch_size=2, predictor=model, overlap=0.25)
    slices = image.permute(3, 0, 1, 2)  # [Z, C, X, Y]
    logits = sliding_window_inference(slices, roi_size=roi, sw_batch_size=16, predictor=model, overlap=0.25)
    return logits.permute(1, 2, 3, 0)[None]


def evaluate(model: nn.Module, task: SegmentationTask, volumes: list[Volume], *, roi, spatial_dims: int, device) -> list[tuple[str, str, float]]:
    """Per-case metrics on the test volumes: rows (case_id, metric, value)."""
    rows = []
    for v in volumes:
        logits = predict_volume(model, torch.from_numpy(v.image).to(device), roi=roi, spatial_dims=spatial_dims)
        label = torch.from_numpy(v.label).to(device)[None, None]
        metrics = task.metrics(task.logits_to_regions(logits), task.label_to_regions(label), spacing=v.spacing, image=v.image, label=label)
        rows.extend((v.case_id, name, value) for name, value in metrics.items())
    return rows


# ---- case-level classification (tasks/classification.py, benchmark/classifier.py) ----------------------
def finetune_classifier(model: nn.Module, volumes: list[Volume], *, recipe: Recipe, steps: int, seed: int, hooks: Hooks, tag: str) -> list[float]:
    """Supervised training of a ``ClassifierNet`` on whole labelled volumes (already at the crop size):
    cross-entropy on each case's class, random flips; the same recipe and steps as segmentation fine-tuning."""
    dataset = VolumeClassDataset(volumes, length=steps * recipe.batch_size * hooks.world_size, seed=seed)
    wrapped = hooks.prepare_model(model, find_unused_parameters=True)  # the backbone's segmentation decoder gets no gradient
    criterion = nn.CrossEntropyLoss()
    return _optimise(wrapped, _loader(dataset, recipe.batch_size, hooks), recipe, steps,
                     lambda batch: criterion(wrapped(batch["image"]), batch["target"]), hooks=hooks, tag=tag)


@torch.no_grad()
def evaluate_classifier(model: nn.Module, task: SegmentationTask, volumes: list[Volume], *, device, log: Callable[[str], None]) -> list[tuple[str, str, float]]:
    """Rows (case_id, metric, value): per test case (prob_positive, correct, target) and per test set
    (case_id ``SET_CASE_ID``: auc, accuracy). A test set of one class has no AUC: NaN, and a log line says so."""
    from tasks.classification import SET_CASE_ID

    model.eval()
    probs = [torch.softmax(model(torch.from_numpy(v.image)[None].to(device)), dim=1)[0].cpu().numpy() for v in volumes]  # [K] each
    targets = [int(v.target) for v in volumes]
    rows = [(v.case_id, name, value) for v, p, t in zip(volumes, probs, targets) for name, value in task.case_metrics(p, t).items()]
    summary = task.set_metrics(np.stack(probs), np.asarray(targets))
    if math.isnan(summary["auc"]):
        present = sorted({task.class_names[t] for t in targets})
        log(f"  AUC undefined on {task.name}: the {len(volumes)} test case(s) hold the classes {present} only (every class is needed); written as NaN")
    rows.extend((SET_CASE_ID, name, value) for name, value in summary.items())
    return rows


# ---- transfer --------------------------------------------------------------------------------
def transfer_model(method_cls: type[PretextTask], backbone_name: str, *, state: dict | None, pretrain_channels: tuple[int, int],
                   task: SegmentationTask, size: BackboneSize, roi) -> nn.Module:
    """The fine-tuning network: pretrained weights where the method transfers them, new task I/O layers."""
    in_channels = len(task.channels)
    if state is None:
        return build_backbone(backbone_name, in_channels=in_channels, out_channels=task.num_outputs, size=size, roi=roi)
    if method_cls.transfer == "encoder":
        model = build_backbone(backbone_name, in_channels=in_channels, out_channels=task.num_outputs, size=size, roi=roi)
        own = model.state_dict()
        encoder = {k: v for k, v in state.items() if k.startswith(model.encoder_prefixes) and k in own and own[k].shape == v.shape}
        model.load_state_dict(encoder, strict=False)
        return model
    model = build_backbone(backbone_name, in_channels=pretrain_channels[0], out_channels=pretrain_channels[1], size=size, roi=roi)
    model.load_state_dict(state)
    if method_cls.replace_input_on_transfer or pretrain_channels[0] != in_channels:
        # Pretrained on one channel (single-modality volumes, DAE): widen that layer rather than discard it.
        inflate = pretrain_channels[0] == 1 and in_channels > 1 and not method_cls.replace_input_on_transfer
        model.replace_input(in_channels, inflate=inflate)
    model.replace_output(task.num_outputs)
    return model


def save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ---- one unit of work: pretrain once, fine-tune + evaluate every label fraction ---------------------
def run_group(spec: dict[str, Any], hooks: Hooks | None = None) -> list[dict[str, Any]]:
    """Run one planned group (see ``benchmark.plan.Group.to_spec``); returns one result per cell.

    The pretrained backbone is cached at ``spec["pretrain_path"]``: loaded if present, else
    trained and written there (atomically, by the main worker) so later runs reuse it.
    """
    hooks = hooks or Hooks()
    task = get_task(spec["task"])
    method_cls = get_method(spec["method"])
    cfg = method_cls.make_config(spec["hparams"])
    size = BackboneSize(**spec["backbone_size"])
    roi = tuple(spec["roi"])
    spatial_dims = len(roi)
    volume_size = tuple(spec["volume_size"]) if spec["volume_size"] else None
    cases = {c.case_id: c for c in task.find_cases(Path(spec["data_root"]))}
    load = lambda ids: load_volumes(task, [cases[i] for i in ids], volume_size=volume_size)  # noqa: E731
    train_volumes = load(spec["train_ids"])
    test_volumes = load(spec["test_ids"])
    channels = method_cls.backbone_channels(cfg, in_channels=len(task.channels))

    state, pretrain_seconds, reused = None, 0.0, False
    if method_cls.pretrains:
        path = Path(spec["pretrain_path"])
        if path.exists():
            state, reused = torch.load(path, map_location="cpu", weights_only=True)["backbone"], True
            hooks.log(f"  pretraining reused from cache {path.name}")
        else:
            start = time.perf_counter()
            torch.manual_seed(spec["seed"])
            backbone = build_backbone(spec["backbone"], in_channels=channels[0], out_channels=channels[1], size=size, roi=roi)
            method = method_cls(backbone, cfg, in_channels=len(task.channels)).to(hooks.device)
            recipe = Recipe(**spec["pretrain_recipe"])
            pretrain_volumes = [v for v in train_volumes if v.case_id in set(spec["pretrain_ids"])]  # complete series
            if spec.get("extra_root"):  # --pretrain-extra: unlabeled cases, pretraining only
                from tasks.unlabeled import find_unlabeled_cases

                extra = {c.case_id: c for c in find_unlabeled_cases(task, Path(spec["extra_root"]))}
                wanted = [extra[i] for i in spec["pretrain_ids"] if i in extra]
                pretrain_volumes += load_volumes(task, wanted, volume_size=volume_size)
            losses = pretrain(method, pretrain_volumes, recipe=recipe, steps=spec["pretrain_steps"], roi=roi, seed=spec["seed"], hooks=hooks)
            state = {k: v.detach().cpu() for k, v in method.backbone.state_dict().items()}
            if hooks.is_main:
                save_atomic({"backbone": state, "key": spec["pretrain_key"], "losses": losses, "spec": spec}, path)
            pretrain_seconds = time.perf_counter() - start

    # Downstream data may miss series (CSM Table VII): fine-tuning and test cases alike, pretraining not.
    missing = spec.get("missing_series") or 0.0
    train_volumes, test_volumes = drop_series(train_volumes, missing), drop_series(test_volumes, missing)
    classify = task.kind == "classification"  # one class per case: whole volumes at the crop size, a ClassifierNet
    if classify:
        train_volumes, test_volumes = fit_to_roi(train_volumes, roi), fit_to_roi(test_volumes, roi)
    results = []
    for cell in spec["cells"]:
        start = time.perf_counter()
        torch.manual_seed(spec["seed"] * 7919 + len(cell["labeled_ids"]))
        model = transfer_model(method_cls, spec["backbone"], state=state, pretrain_channels=channels, task=task, size=size, roi=roi)
        if classify:
            model = ClassifierNet(model, backbone_name=spec["backbone"], num_classes=task.num_outputs)
        model = model.to(hooks.device)
        labeled = [v for v in train_volumes if v.case_id in set(cell["labeled_ids"])]
        recipe = Recipe(**spec["finetune_recipe"])
        tag = f"finetune {spec['method']}/{spec['backbone']} {spec['task']} {cell['fraction']}"
        rounds = spec["finetune_rounds"]
        for round_index in range(rounds):  # > 1: CNN-restart, a fresh optimiser and schedule each round
            round_tag = tag + (f" round {round_index + 1}" if rounds > 1 else "")
            if classify:
                losses = finetune_classifier(model, labeled, recipe=recipe, steps=spec["finetune_steps"], seed=spec["seed"] + round_index,
                                             hooks=hooks, tag=round_tag)
            else:
                losses = finetune(model, task, labeled, recipe=recipe, steps=spec["finetune_steps"], roi=roi, seed=spec["seed"] + round_index,
                                  hooks=hooks, tag=round_tag, augmentation=spec["finetune_aug"], mixup_alpha=spec["mixup_alpha"] or 0.0)
        if not hooks.is_main:
            rows = []
        elif classify:
            rows = evaluate_classifier(model, task, test_volumes, device=hooks.device, log=hooks.log)
        else:
            rows = evaluate(model, task, test_volumes, roi=roi, spatial_dims=spatial_dims, device=hooks.device)
        results.append({
            "cell_id": cell["cell_id"],
            "rows": rows,
            "finetune_seconds": time.perf_counter() - start,
            "pretrain_seconds": pretrain_seconds,
            "pretrain_reused": reused,
            "final_finetune_loss": losses[-1] if losses else float("nan"),
        })
    return results
