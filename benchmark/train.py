"""pretrain() / finetune() / evaluate(): plain PyTorch loops, no Ray.

Distributed execution is injected through ``Hooks``: ``prepare_model`` / ``prepare_loader``
are identity locally and Ray Train's ``prepare_model`` / ``prepare_data_loader`` under Ray
(the way MAE's ``submitit_pretrain.py`` wraps ``main_pretrain.main``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from filelock import FileLock
from torch import nn
from torch.utils.data import DataLoader, Subset

from benchmark import storage
from benchmark.backbones import build_backbone
from benchmark.backbones.transfer import external_model, transfer_model
from benchmark.checkpoints import StageCheckpoint, capture_rng, rank0_decides, restore_rng
from benchmark.data import CropDataset, SourcePoolDataset, drop_series, load_corpus, sample_dims
from benchmark.external import weights_of
from benchmark.job import CellResult, Job, NetworkSpec
from benchmark.kinds import kind_of, resolve_tta
from benchmark.methods import PretextTask, Recipe, get_method
from benchmark.protocol import DEFAULT_PROTOCOL, Protocol
from benchmark.prepared import read_cases
from benchmark.records import ExecutionSettings, FinetuneSettings, MetricRow
from benchmark.spatial_augmentation import SpatialAugmentation
from benchmark.store import content_hash
from tasks import Case, Task, Volume, get_task
from tasks.unlabeled import find_unlabeled_cases


@dataclass
class Hooks:
    """How the loops talk to their runtime: local (defaults) or Ray Train (``benchmark.ray_runner``)."""

    log: Callable[[str], None] = lambda msg: print(msg, flush=True)
    prepare_model: Callable[..., nn.Module] = lambda model, **kwargs: model
    prepare_loader: Callable[[DataLoader], DataLoader] = lambda loader: loader
    report: Callable[[dict[str, Any]], None] = lambda metrics: None  # live metrics (Ray Tune: tune.report)
    # progress(stage, step, steps, loss) after every optimiser step of the main worker, and once as each evaluation
    # starts (step 0 of 0): the driver's progress display (benchmark.console); stage e.g. "pretrain", "finetune 25%"
    progress: Callable[[str, int, int, float | None], None] = lambda stage, step, steps, loss: None
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    execution: ExecutionSettings = ExecutionSettings()  # the Job's precision, compile, loader workers (run_job sets it)
    # stage -> seconds per optimiser step, measured by the loops (the data wait included, validation excluded)
    step_seconds: dict[str, list[float]] = field(default_factory=dict)
    resumed_from: dict[str, int] = field(default_factory=dict)  # stage -> the step it continued from (its checkpoint)
    # claim(location): a context in which this process alone builds the cache entry at ``location`` (a pretraining or
    # evaluation network two Jobs share). Default: a lock file beside a local entry; under Ray the driver's lease actor
    node: str = ""  # where the loops run (the Ray node; recorded with every cell)
    claim: Callable[[str], contextlib.AbstractContextManager] = field(default=lambda location: local_claim(location))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        """The mixed-precision context of ``execution.precision`` on this device (fp32: none). Training steps run in
        it; evaluation does not (metrics and synthesised images in fp32, whatever the training precision)."""
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.execution.precision)
        return torch.autocast(device_type=self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def local_claim(location: str) -> contextlib.AbstractContextManager:
    """A lock file beside a local cache entry (processes of one machine, or of nodes sharing that disk); none for a
    remote one (outside Ray there is no one to share it with: the run layer passes its lease instead)."""
    path = storage.local_path(location)
    if path is None:
        return contextlib.nullcontext()
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


# ---- optimisation ----------------------------------------------------------------------------
def make_optimizer(params, recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=True)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, betas=(recipe.momentum, 0.999), weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "lars":  # SwAV's LARC(SGD): trust coefficient 0.001, no clipping, plain momentum
        from timm.optim import Lars

        return Lars(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, trust_coeff=0.001, trust_clip=False)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; expected sgd, adam, adamw or lars")


def lr_factor(step: int, *, total: int, recipe: Recipe) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine, poly (1 - t/T)^0.9 (nnU-Net) or constant.

    The warm-up is ``recipe.warmup_steps_for(total)`` (steps, or epochs x steps per epoch); with
    ``recipe.final_lr`` the decay ends at final_lr / lr instead of 0 (SwAV: lr_T + (lr_0 - lr_T)·cosine).
    """
    warmup = recipe.warmup_steps_for(total)
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    if recipe.schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * t))
    elif recipe.schedule == "poly":
        decay = (1.0 - t) ** 0.9
    elif recipe.schedule == "constant":
        return 1.0
    else:
        raise ValueError(f"unknown schedule {recipe.schedule!r}; expected cosine, poly or constant")
    if recipe.final_lr is None:
        return decay
    floor = recipe.final_lr / recipe.lr
    return floor + (1.0 - floor) * decay


def _optimise(
    model: nn.Module,
    dataset,
    recipe: Recipe,
    steps: int,
    loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    *,
    hooks: Hooks,
    tag: str,
    on_step: Callable[[int, int, float], None] | None = None,
    stage: str = "train",
    checkpoint: StageCheckpoint | None = None,
    generators: dict[str, torch.Generator] | None = None,
    extra_state: tuple[Callable[[], dict], Callable[[dict], None]] | None = None,
    label: str | None = None,
) -> list[float]:
    """``steps`` optimiser steps over ``dataset``'s batches; ``on_step(step, steps, loss)`` after each (model selection).

    The forward pass and loss run under ``hooks.autocast()`` (``--precision``); fp16 scales the loss (GradScaler) so
    small gradients do not flush to zero. The seconds of each step (waiting for its batch included, ``on_step``
    excluded) are recorded under ``stage`` in ``hooks.step_seconds``.

    ``checkpoint``: written as the steps go (``benchmark.checkpoints``), with the random states of ``generators`` and
    the caller's ``extra_state`` (get, set); a stage that finds its checkpoint continues from it (the loader from that
    step's samples, every random state restored), so it ends with the numbers of an uninterrupted stage. ``label``: the
    stage as ``hooks.progress`` names it (default ``stage``)."""
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total=steps, recipe=recipe))
    scaler = torch.amp.GradScaler(hooks.device.type) if hooks.execution.precision == "fp16" else None
    channels_last = hooks.execution.channels_last and hooks.device.type == "cuda"
    trained = getattr(model, "module", model)  # DDP's wrapped module: the checkpoint holds the plain module's keys
    generators = generators or {}
    losses, log_every, times = [], max(1, steps // 4), hooks.step_seconds.setdefault(stage, [])
    start, saved = 0, checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        trained.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if scaler is not None and saved["scaler"] is not None:
            scaler.load_state_dict(saved["scaler"])
        if extra_state is not None:
            extra_state[1](saved["extra"])
        losses, start = list(saved["losses"]), int(saved["step"])
        times[:] = saved["times"]
        hooks.resumed_from[stage] = start
        if hooks.is_main:
            hooks.log(f"  {tag}: resumed from its checkpoint at step {start}/{steps}")
    model.train()
    iterator = None
    if start < steps:  # samples are drawn by index: the resumed loader starts at the first sample of step ``start``
        first = start * recipe.batch_size * hooks.world_size
        iterator = iter(_loader(dataset if first == 0 else Subset(dataset, range(first, len(dataset))), recipe.batch_size, hooks))
    if saved is not None:  # after the loader drew its base seed: every later draw continues where the checkpoint left it
        restore_rng(saved["rng"], generators, hooks.device)
    if checkpoint is not None:
        checkpoint.start()
    tick = time.perf_counter()
    for step in range(start, steps):
        batch = {k: _to_device(v, hooks.device, channels_last=channels_last) for k, v in next(iterator).items()}
        with hooks.autocast():
            loss = loss_fn(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{tag}: loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        scheduler.step()
        losses.append(float(loss.detach()))
        times.append(time.perf_counter() - tick)
        if hooks.is_main:
            hooks.progress(label or stage, step + 1, steps, losses[-1])
        if hooks.is_main and (step + 1) % log_every == 0:
            window = losses[-log_every:]
            hooks.log(f"  {tag} step {step + 1}/{steps} loss {sum(window) / len(window):.4f}")
        if on_step is not None:
            on_step(step, steps, losses[-1])
        if checkpoint is not None and checkpoint.due(step + 1, steps):
            checkpoint.save({"step": step + 1, "model": trained.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
                             "losses": list(losses), "times": list(times), "extra": extra_state[0]() if extra_state else None},
                            capture_rng(generators, hooks.device))
        tick = time.perf_counter()
    return losses


def _to_device(value: torch.Tensor, device: torch.device, *, channels_last: bool) -> torch.Tensor:
    """A batch tensor on the device; 4D float images in channels-last memory format when asked (2D convolutions)."""
    value = value.to(device, non_blocking=True)
    if channels_last and value.dim() == 4 and value.is_floating_point():
        value = value.contiguous(memory_format=torch.channels_last)
    return value


def _prepare_network(network: nn.Module, hooks: Hooks) -> nn.Module:
    """``network`` as the Job's execution settings train it: compiled in place (``nn.Module.compile``: its
    state-dict keys stay those of the plain module, so checkpoints are the same files) and channels-last on CUDA."""
    if hooks.execution.channels_last and hooks.device.type == "cuda":
        network = network.to(memory_format=torch.channels_last)
    if hooks.execution.compile:  # static shapes: inductor (torch 2.14) fails on the MONAI U-Net's dynamic ones; a new shape recompiles
        network.compile(dynamic=False)
    return network


def _loader(dataset, batch_size: int, hooks: Hooks) -> DataLoader:
    """The stage's batches, built by ``execution.loader_workers`` DataLoader processes (0: here). Every sample is
    drawn from its own index-seeded generator, so the batches are the same for any number of workers; the loader
    still draws its base seed from the global torch RNG as before (the later draws of a run stay where they were)."""
    workers = hooks.execution.loader_workers
    return hooks.prepare_loader(DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, drop_last=True,
                                           persistent_workers=workers > 0, pin_memory=hooks.device.type == "cuda",
                                           prefetch_factor=4 if workers else None))


# ---- the three stages ------------------------------------------------------------------------
def pretraining_dataset(method: PretextTask, volumes: list[Volume], *, roi, length: int, seed: int, protocol: Protocol = DEFAULT_PROTOCOL,
                        modality_ids: list[tuple[int, ...]] | None = None, augmentation: str | None = None):
    """The samples ``pretrain`` draws for ``method``'s data spec (the registry contract test builds its batches here too).
    ``modality_ids``: per volume, the modality of each channel in a corpus vocabulary (``PretrainSpec.modalities``).
    ``augmentation``: the policy its samples get (``PretrainSpec.augmentation``; None: the method's paper's,
    ``pretrain_augmentation``), its elastic part only where ``protocol.pretrain_aug_elastic_dims`` holds the samples'
    dimensionality, drawn per sample index whatever the method (``benchmark.data``)."""
    spec = method.data_spec(method.cfg)
    policy = method.pretrain_augmentation(method.cfg) if augmentation is None else augmentation
    dims = sample_dims(spec.kind, roi)
    augment = SpatialAugmentation(policy, spatial_dims=dims, elastic=dims in protocol.pretrain_aug_elastic_dims, one_stream=True)
    if spec.kind == "source_pool":
        return SourcePoolDataset(volumes, roi=roi, length=length, seed=seed, pool_size=spec.pool_size, same_patient=spec.same_patient,
                                 augmentation=augment)
    if spec.kind in ("crops", "modality_crops"):  # label-aware methods also get batch["label"] (only of the cases they may see)
        return CropDataset(volumes, roi=roi, length=length, seed=seed, with_label=method.is_label_aware(method.cfg),
                           foreground_prob=method.pretrain_foreground_prob(method.cfg),
                           single_modality=spec.kind == "modality_crops", modality_ids=modality_ids, augmentation=augment, shared_draws=True)
    raise ValueError(f"{method.registry_name}: unknown pretraining data kind {spec.kind!r}")


def pretrain(method: PretextTask, volumes: list[Volume], *, recipe: Recipe, steps: int, roi, seed: int, hooks: Hooks,
             protocol: Protocol = DEFAULT_PROTOCOL, modality_ids: list[tuple[int, ...]] | None = None, stage: str = "pretrain",
             checkpoint: StageCheckpoint | None = None, augmentation: str | None = None) -> list[float]:
    """Train ``method`` (its backbone and heads) on unlabeled ``volumes``; returns the loss curve (its step times go to
    ``hooks.step_seconds[stage]``). ``checkpoint``: saved as it goes, resumed from when present (``_optimise``; the
    augmentation needs no state there: each sample's draws follow from its index). ``augmentation``: the samples'
    policy (``pretraining_dataset``)."""
    length = steps * recipe.batch_size * hooks.world_size
    dataset = pretraining_dataset(method, volumes, roi=roi, length=length, seed=seed, protocol=protocol, modality_ids=modality_ids,
                                  augmentation=augmentation)
    generator = torch.Generator().manual_seed(seed * protocol.generator_seed_stride + hooks.rank)  # own corruption draws per worker
    method.configure_schedule(recipe=recipe, steps=steps)  # e.g. SwAV freezes its prototypes for the first epoch
    ddp_options = {} if method.trains_whole_backbone else {"find_unused_parameters": True}
    _prepare_network(method.backbone, hooks)
    model = hooks.prepare_model(method, **ddp_options)
    return _optimise(
        model, dataset, recipe, steps,
        lambda batch: model(batch, generator=generator)["loss"], hooks=hooks, tag=f"pretrain {method.registry_name}", stage=stage,
        checkpoint=checkpoint, generators={"corruption": generator},
    )


class ModelSelection:
    """Validation-based model selection during fine-tuning (the papers' protocol): every ``every`` steps and
    at the last step the model is evaluated on the validation cases; the best state is kept, its step
    recorded, and the validation curve kept for the report. With no validation case it selects the last
    state. Every DDP worker evaluates (same weights, same score), so all keep the same checkpoint."""

    def __init__(self, model: nn.Module, task: Task, volumes: list[Volume], *, every: int, roi, hooks: Hooks, protocol: Protocol):
        self.model, self.task, self.volumes, self.every, self.roi = model, task, volumes, every, roi
        self.hooks, self.protocol = hooks, protocol
        self.best_score, self.best_step, self.best_state = float("-inf"), None, None
        self.curve: list[tuple[int, str, float]] = []
        self.offset = 0  # steps of earlier rounds (CNN-restart)
        self.seconds = 0.0  # spent evaluating

    def step(self, step: int, steps: int, loss: float) -> None:
        if not self.volumes or ((step + 1) % self.every and step + 1 != steps):
            return
        at = self.offset + step + 1
        start = time.perf_counter()
        rows = evaluate(self.model, self.task, self.volumes, roi=self.roi, device=self.hooks.device, protocol=self.protocol,
                        log=lambda _m: None, primary_only=True)
        score = kind_of(self.task).validation_score(self.task, rows)
        self.model.train()
        self.seconds += time.perf_counter() - start
        self.curve += [(at, "validation_score", score), (at, "train_loss", loss)]
        self.hooks.report({"step": at, "validation_score": score, "train_loss": loss})
        if score > self.best_score:  # NaN never wins
            self.best_score, self.best_step = score, at
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        """What a fine-tuning checkpoint keeps of the selection (``benchmark.checkpoints``)."""
        return {"best_score": self.best_score, "best_step": self.best_step, "best_state": self.best_state, "curve": list(self.curve),
                "offset": self.offset, "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score, self.best_step, self.best_state = state["best_score"], state["best_step"], state["best_state"]
        self.curve, self.offset, self.seconds = list(state["curve"]), state["offset"], state["seconds"]

    def end_round(self, steps: int) -> None:
        self.offset += steps

    def restore_best(self) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


def finetune(model: nn.Module, task: Task, volumes: list[Volume], *, recipe: Recipe, steps: int, roi, seed: int, hooks: Hooks, tag: str,
             settings: FinetuneSettings = FinetuneSettings(), protocol: Protocol = DEFAULT_PROTOCOL,
             selection: ModelSelection | None = None, stage: str = "finetune", checkpoint: StageCheckpoint | None = None,
             label: str | None = None) -> list[float]:
    """Supervised training of ``model`` on labelled ``volumes``: samples, loss and augmentation come
    from the task's kind (segmentation: crops, DiceCE, mixup / CarveMix; classification: whole cases, CE).
    ``selection`` evaluates on the validation cases as training goes (``ModelSelection``); ``checkpoint`` keeps the
    selection's state with the training state."""
    kind = kind_of(task)
    dataset = kind.training_set(task, volumes, roi=roi, length=steps * recipe.batch_size * hooks.world_size, seed=seed, protocol=protocol,
                                finetune=settings)
    wrapped = hooks.prepare_model(_prepare_network(model, hooks), **kind.ddp_options)
    generator = torch.Generator().manual_seed(seed * protocol.generator_seed_stride + protocol.finetune_generator_offset + hooks.rank)
    loss_fn = kind.loss_fn(task, wrapped, finetune=settings, generator=generator)
    losses = _optimise(wrapped, dataset, recipe, steps, loss_fn, hooks=hooks, tag=tag, on_step=selection.step if selection else None,
                       stage=stage, checkpoint=checkpoint, generators={"augmentation": generator},
                       extra_state=(selection.state_dict, selection.load_state_dict) if selection else None, label=label)
    if selection:
        selection.end_round(steps)
    return losses


def evaluate(model: nn.Module, task: Task, volumes: list[Volume], *, roi, device, protocol: Protocol = DEFAULT_PROTOCOL,
             log: Callable[[str], None] = print, primary_only: bool = False, tta: str = "none") -> list[MetricRow]:
    """Metric rows of ``model`` on ``volumes`` (per case and per set), by the task's kind; ``primary_only``: only
    what model selection reads (the main metric). ``tta``: test-time augmentation (``FinetuneSettings.tta``, resolved;
    model selection runs without it, the test evaluation with it)."""
    extra = {"tta": tta} if tta != "none" else {}  # only kinds that list test-time augmentations take the keyword
    return kind_of(task).evaluate(model, task, volumes, roi=roi, device=device, protocol=protocol, log=log, primary_only=primary_only, **extra)


def job_reader(job: Job) -> Callable[..., list[Volume]]:
    """``read(task, case_ids, data_root=..., extra_root=None)``: the Job's cases, from their prepared folders on the
    storage (no data folder needed: ``job.prepared_cases``) or, for a case without one, from the data files."""
    def read(task: Task, case_ids, *, data_root: str, extra_root: str | None = None) -> list[Volume]:
        def find() -> dict[str, Case]:
            cases = {c.case_id: c for c in task.find_cases(Path(data_root))} if data_root and Path(data_root).is_dir() else {}
            if extra_root:
                cases.update({c.case_id: c for c in find_unlabeled_cases(task, Path(extra_root))})
            return cases

        return read_cases(task, list(case_ids), folder=job.prepared_dir, locations=job.prepared_cases, volume_size=job.volume_size,
                          find_cases=find)

    return read


# ---- one unit of work: pretrain once, fine-tune + evaluate every label fraction ---------------------
def run_job(job: Job, hooks: Hooks | None = None, *, evaluate_test: bool = True) -> list[CellResult]:
    """Run one planned Job (``benchmark.plan``); returns one result per cell of the Job.

    Each cell fine-tunes with model selection on the Job's validation cases and evaluates the selected
    checkpoint on the test cases once. ``evaluate_test=False`` (a hyperparameter-search trial) never
    loads or evaluates a test case: the result then holds the validation curve and score only.

    The pretrained backbone is cached at ``job.pretrain.path``: loaded if present, else trained and
    written there (atomically, by the main worker) so later cells, runs and fractions reuse it.
    """
    hooks = dataclasses.replace(hooks or Hooks(), execution=job.execution, step_seconds={}, resumed_from={})
    task = get_task(job.task_ref)
    method_cls = get_method(job.method) if job.external is None else None  # a --pretrained row has no method
    external = weights_of(job) if job.external is not None else None  # its checkpoint, hash checked, keys mapped
    read = job_reader(job)
    load = lambda ids: read(task, ids, data_root=job.data_root)  # noqa: E731
    train_volumes = load(job.train_ids)
    val_volumes = load(job.val_ids)
    test_volumes = load(job.test_ids) if evaluate_test else []

    state, pretrain_seconds, reused, pretrain_loss = None, 0.0, False, None
    if job.pretrain is not None:  # a pretraining interrupted earlier continues from its checkpoint (hooks.resumed_from)
        state, pretrain_seconds, reused, pretrain_loss = _pretrained_backbone(job, method_cls, task, train_volumes + val_volumes, hooks)

    # Downstream data may miss series (CSM Table VII): fine-tuning and test cases alike, pretraining not.
    missing = job.finetune.missing_series
    train_volumes = kind_of(task).prepare(drop_series(train_volumes, missing), roi=job.roi)
    val_volumes = kind_of(task).prepare(drop_series(val_volumes, missing), roi=job.roi)
    test_volumes = kind_of(task).prepare(drop_series(test_volumes, missing), roi=job.roi)
    networks, network_seconds = _evaluation_networks(job, train_volumes, val_volumes, hooks)
    pretrain_seconds += network_seconds  # the kind's evaluation networks are pretrainings of the Job, not of a cell
    results, served = [], []  # served: the cells' fine-tuning checkpoints, removed once every cell has its result
    for cell in job.cells:
        start = time.perf_counter()
        hooks.step_seconds.pop("finetune", None)  # each cell's own fine-tuning steps
        hooks.resumed_from.pop("finetune", None)
        torch.manual_seed(job.seed * job.protocol.finetune_init_seed_stride + len(cell.labeled_ids))
        model = kind_of(task).job_model(job, task=task, state=state, networks=networks, hooks=hooks)
        if model is None and external is not None:  # --pretrained: every tensor of the checkpoint that fits, reported
            network, report = external_model(job.backbone, external, task=task, size=job.backbone_size, roi=job.roi,
                                             encoder_only=job.external.encoder_only)
            if hooks.is_main and cell is job.cells[0]:
                hooks.log(f"  {job.external.name}: {report.describe()} from {job.external.source} ({external.layout})")
            model = kind_of(task).build_model(network, task=task, backbone_name=job.backbone)
        if model is None:  # the usual case: the (pretrained) backbone, transferred, in the kind's wrapper
            network = transfer_model(method_cls, job.backbone, state=state, pretrain_channels=job.pretrain_channels, task=task,
                                     size=job.backbone_size, roi=job.roi)
            model = kind_of(task).build_model(network, task=task, backbone_name=job.backbone)
        model = model.to(hooks.device)
        labeled = [v for v in train_volumes if v.case_id in set(cell.labeled_ids)]
        tag = f"finetune {job.method}/{job.backbone} {job.task} {cell.fraction}"
        selection = ModelSelection(model, task, val_volumes, every=job.validation_every, roi=job.roi, hooks=hooks, protocol=job.protocol)
        checkpoints = [_cell_checkpoint(job, cell, r, hooks) for r in range(job.finetune_rounds)]
        served += [c for c in checkpoints if c is not None]
        first_round = _first_round(checkpoints)  # a later round's checkpoint holds the earlier rounds' outcome
        for round_index in range(first_round, job.finetune_rounds):  # > 1: CNN-restart, a fresh optimiser and schedule each round
            round_tag = tag + (f" round {round_index + 1}" if job.finetune_rounds > 1 else "")
            losses = finetune(model, task, labeled, recipe=job.finetune_recipe, steps=job.finetune_steps, roi=job.roi, seed=job.seed + round_index,
                              hooks=hooks, tag=round_tag, settings=job.finetune, protocol=job.protocol, selection=selection,
                              checkpoint=checkpoints[round_index],
                              label=f"finetune {cell.fraction}" + (f" round {round_index + 1}" if job.finetune_rounds > 1 else ""))
            if round_index == first_round and "finetune" in hooks.resumed_from:
                hooks.resumed_from["finetune"] += first_round * job.finetune_steps
        selection.restore_best()
        if selection.best_step is not None and hooks.is_main:
            hooks.log(f"  {tag}: validation-selected step {selection.best_step} (score {selection.best_score:.4f})")
        test_start = time.perf_counter()
        if hooks.is_main and evaluate_test:
            hooks.progress(f"evaluate {cell.fraction}", 0, 0, None)
        rows = evaluate(model, task, test_volumes, roi=job.roi, device=hooks.device, protocol=job.protocol, log=hooks.log,
                        tta=resolve_tta(job.finetune.tta, task)) if hooks.is_main and evaluate_test else []
        stage_seconds = {stage: sum(t) for stage, t in hooks.step_seconds.items()}
        stage_seconds.update(validation=selection.seconds, test=time.perf_counter() - test_start)
        results.append(CellResult(cell_id=cell.cell_id, rows=tuple(rows), finetune_seconds=time.perf_counter() - start,
                                  step_seconds=_mean_step_seconds(hooks.step_seconds), stage_seconds=stage_seconds,
                                  pretrain_seconds=pretrain_seconds, pretrain_reused=reused,
                                  final_finetune_loss=losses[-1] if losses else float("nan"), curve=tuple(selection.curve),
                                  selected_step=selection.best_step, resumed_from=dict(hooks.resumed_from), node=hooks.node,
                                  validation_score=selection.best_score if selection.best_step is not None else None,
                                  pretrain_loss=pretrain_loss))
    for checkpoint in served:  # the Job's results are complete
        checkpoint.remove()
    return results


# ---- checkpoints of the stages ----------------------------------------------------------------------------------
def _stage_checkpoint(job: Job, name: str, identity: dict[str, Any], hooks: Hooks) -> StageCheckpoint | None:
    """The checkpoint of one of ``job``'s stages, ``<job.checkpoint_dir>/<name>.pt`` (None: the Job keeps none)."""
    if job.checkpoint_dir is None:
        return None
    return StageCheckpoint(storage.join(job.checkpoint_dir, f"{name}.pt"), identity=identity, every_steps=job.execution.checkpoint_every,
                           every_seconds=60.0 * job.execution.checkpoint_minutes, rank=hooks.rank, world_size=hooks.world_size,
                           log=hooks.log if hooks.is_main else (lambda _m: None))


def _cell_checkpoint(job: Job, cell, round_index: int, hooks: Hooks) -> StageCheckpoint | None:
    """A cell's fine-tuning checkpoint of round ``round_index``: named by the cell and everything of its Job that
    changes its training (recipe, steps, pretraining, settings; not how the loops run), so two trials of a search
    that share a cell id never share a file."""
    fields = {k: v for k, v in job.to_dict().items() if k not in ("cells", "execution", "checkpoint_dir", "prepared_dir")}
    identity = {"stage": "finetune", "cell": cell.cell_id, "job": content_hash(fields), "round": round_index}
    return _stage_checkpoint(job, f"finetune-{content_hash(identity)}", identity, hooks)


def _first_round(checkpoints: list[StageCheckpoint | None]) -> int:
    """The fine-tuning round to start at: the latest one with a readable checkpoint (CNN-restart; else 0)."""
    for round_index in range(len(checkpoints) - 1, 0, -1):
        if checkpoints[round_index] is not None and checkpoints[round_index].load() is not None:
            return round_index
    return 0


def _mean_step_seconds(step_seconds: dict[str, list[float]]) -> dict[str, float]:
    """stage -> mean seconds per optimiser step, the first step of each stage left out where there are more (it
    pays for the loader's start and the first allocations, not for what every later step costs)."""
    return {stage: sum(t[1:] or t) / len(t[1:] or t) for stage, t in step_seconds.items() if t}


def _load_or_train(location: str, train: Callable[[], dict], hooks: Hooks, *, what: str,
                   checkpoint: StageCheckpoint | None = None) -> tuple[dict, float, bool]:
    """(what ``train()`` saved at ``location``, seconds it took, reused from the cache?): loaded when present, else
    trained and written there atomically by the main worker (``location``: a path or a storage URI).

    Two concurrent Jobs or search trials that need one key (a pretext configuration, a split's evaluation network)
    train it once: the second waits for the first's file under ``hooks.claim`` (under Ray: a lease of the run's
    driver, so it holds across nodes without a shared disk). DDP workers of one Job train together: rank 0 claims,
    looks, and tells the others what it found. A cached file that does not load (truncated, corrupt) is reported
    with its path and trained again, never trusted. Once the result is cached, the stage's ``checkpoint`` has served
    and is removed."""
    with hooks.claim(location) if hooks.is_main else contextlib.nullcontext():
        payload = _cached(location, hooks, what=what) if hooks.is_main else None
        if rank0_decides(payload is not None):
            if payload is None:  # another rank: rank 0 found it, so it is there
                payload = storage.load_torch(location, map_location="cpu", weights_only=True)
            if hooks.is_main:
                hooks.log(f"  {what} reused from cache {location.rsplit('/', 1)[-1]}")
            return payload, 0.0, True
        start = time.perf_counter()
        payload = train()
        if hooks.is_main:
            storage.save_torch(payload, location)
        if checkpoint is not None:
            checkpoint.remove()
        return payload, time.perf_counter() - start, False


def _cached(location: str, hooks: Hooks, *, what: str) -> dict | None:
    """The cache entry at ``location``, or None: absent, or unreadable (reported; it is trained again)."""
    if not storage.exists(location):
        return None
    try:
        return storage.load_torch(location, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unreadable cache entry is recomputed
        hooks.log(f"  cached {what} {location} is unreadable ({type(exc).__name__}: {str(exc)[:200]}); training it again")
        return None


def _pretrained_backbone(job: Job, method_cls, task: Task, train_volumes: list[Volume],
                         hooks: Hooks) -> tuple[dict, float, bool, tuple[float, float] | None]:
    """(backbone state dict, pretraining seconds, reused from the cache?, (initial, final) pretext loss) of the Job's
    pretraining."""
    checkpoint = _stage_checkpoint(job, f"pretrain-{job.pretrain.key}", {"stage": "pretrain", "key": job.pretrain.key}, hooks)
    payload, seconds, reused = _load_or_train(job.pretrain.path, lambda: _pretrain(job, method_cls, task, train_volumes, hooks, checkpoint),
                                              hooks, what="pretraining", checkpoint=checkpoint)
    return payload["backbone"], seconds, reused, loss_ends(payload.get("losses") or [])


def loss_ends(losses: list[float]) -> tuple[float, float] | None:
    """(initial, final) of a loss curve: the means of its first and last tenth (at least one step each), so one noisy
    step does not decide whether a pretraining lowered its loss."""
    if not losses:
        return None
    n = max(1, len(losses) // 10)
    return sum(losses[:n]) / n, sum(losses[-n:]) / n


def _pretrain(job: Job, method_cls, task: Task, train_volumes: list[Volume], hooks: Hooks, checkpoint: StageCheckpoint | None) -> dict:
    spec = job.pretrain
    torch.manual_seed(job.seed)
    backbone = build_backbone(job.backbone, in_channels=job.pretrain_channels[0], out_channels=job.pretrain_channels[1], size=job.backbone_size,
                              roi=job.roi)
    method = method_cls(backbone, job.method_config, in_channels=len(task.channels)).to(hooks.device)
    modality_ids = None
    read = job_reader(job)
    if spec.corpus:  # --pretrain-corpus: several tasks' non-test cases, each channel tagged with its modality
        volumes, modality_ids = load_corpus(spec.corpus, modalities=spec.modalities, volume_size=job.volume_size, read=read)
    else:
        wanted = set(spec.case_ids)
        volumes = [v for v in train_volumes if v.case_id in wanted]  # complete series
        if spec.extra_root:  # --pretrain-extra: unlabeled cases, pretraining only
            have = {v.case_id for v in train_volumes}
            volumes += read(task, [i for i in spec.case_ids if i not in have], data_root="", extra_root=spec.extra_root)
    volumes = kind_of(task).pretraining_volumes(task, volumes)  # e.g. synthesis: the target series only (CoPer IV.B)
    losses = pretrain(method, volumes, recipe=spec.recipe, steps=spec.steps, roi=job.roi, seed=job.seed, hooks=hooks, protocol=job.protocol,
                      modality_ids=modality_ids, checkpoint=checkpoint, augmentation=spec.augmentation)
    state = method.pretrained_state()  # the backbone's weights (DINO: its teacher's)
    return {"backbone": state, "key": spec.key, "losses": losses, "job": job.to_dict()}


def _evaluation_networks(job: Job, train_volumes: list[Volume], val_volumes: list[Volume], hooks: Hooks) -> tuple[dict[str, dict], float]:
    """(role -> trained state, seconds) of the networks the Job's kind evaluates with (``Job.networks``), each loaded from
    its cache or trained here first. Their training reports nothing to the runtime: a search scheduler reads only the
    compared model's validation score."""
    quiet = dataclasses.replace(hooks, report=lambda metrics: None)
    states, seconds = {}, 0.0
    for spec in job.networks:
        checkpoint = _stage_checkpoint(job, f"network-{spec.key}", {"stage": "network", "role": spec.role, "key": spec.key}, quiet)
        payload, spent, _ = _load_or_train(spec.path, lambda spec=spec, c=checkpoint: _train_network(spec, job, train_volumes, val_volumes, quiet, c),
                                           quiet, what=f"evaluation network {spec.role}", checkpoint=checkpoint)
        states[spec.role], seconds = payload, seconds + spent
    return states, seconds


def _train_network(spec: NetworkSpec, job: Job, train_volumes: list[Volume], val_volumes: list[Volume], hooks: Hooks,
                   checkpoint: StageCheckpoint | None = None) -> dict:
    """Train one planned evaluation network on the split's cases: a pretext pretraining on ``spec.task_ref``'s pretraining
    volumes (e.g. SwAV on the target series), or supervised fine-tuning of that task with model selection on its
    validation cases. Seeded by the spec's seed (default the Job's) on the spec's cases (default all), without touching the
    global RNG the cells draw from."""
    net_task = get_task(spec.task_ref)
    seed = job.seed if spec.seed is None else spec.seed
    if spec.case_ids is not None:
        wanted = set(spec.case_ids)
        train_volumes, val_volumes = [v for v in train_volumes if v.case_id in wanted], [v for v in val_volumes if v.case_id in wanted]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_backbone(spec.backbone, in_channels=spec.channels[0], out_channels=spec.channels[1], size=job.backbone_size, roi=spec.roi)
        if spec.stage == "pretrain":
            method_cls = get_method(spec.method)
            method = method_cls(net, method_cls.make_config(), in_channels=spec.channels[0]).to(hooks.device)
            pool = kind_of(net_task).pretraining_volumes(net_task, [*train_volumes, *val_volumes])
            # no pretraining augmentation: the network's key holds none (its method, SwAV, draws its own views)
            pretrain(method, pool, recipe=spec.recipe, steps=spec.steps, roi=spec.roi, seed=seed, hooks=hooks, protocol=job.protocol,
                     stage=f"network {spec.role}", checkpoint=checkpoint, augmentation="none")
            return {"backbone": {k: v.detach().cpu() for k, v in net.state_dict().items()}}
        if spec.stage == "finetune":
            model = net.to(hooks.device)
            every = max(1, spec.steps // job.protocol.validations_per_finetune)
            selection = ModelSelection(model, net_task, val_volumes, every=every, roi=spec.roi, hooks=hooks, protocol=job.protocol)
            finetune(model, net_task, train_volumes, recipe=spec.recipe, steps=spec.steps, roi=spec.roi, seed=seed, hooks=hooks,
                     tag=f"evaluation network {spec.role} ({net_task.name}, real images)", protocol=job.protocol, selection=selection,
                     stage=f"network {spec.role}", checkpoint=checkpoint)
            selection.restore_best()
            return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    raise ValueError(f"evaluation network {spec.role}: unknown stage {spec.stage!r}; expected pretrain or finetune")
