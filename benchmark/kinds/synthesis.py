"""Image synthesis: translate a case's source series into its target series (CoPer paper III.C, IV.B, Table III).

* methods: the generator losses of ``benchmark/methods/synthesis_losses.py`` (``l1`` and ``l1+coper``
  with its loss network and the loss balance as Config fields); SSL pretrainings are n/a here (nothing of theirs is
  compared on synthesis); the baseline, run once per loss-network backbone as scratch is elsewhere, is ``l1`` (a
  randomly initialised generator trained with L1 + adversarial loss: Table III's first row; "scratch" would be the
  same generator with no defined loss, so it has no meaning here);
* model: pix2pix (``benchmark/synthesis/pix2pix.py``): the generator is pix2pix's U-Net (U-Net-256 at the paper's
  256 crop, ``BackboneSize.pix2pix_filters`` wide) for every variant (``finetune_network``), the Job's backbone is
  the loss network;
* samples: axial slices holding every series in the pix2pix domain ([-1, 1] per slice, ``benchmark/synthesis/scaling.py``),
  jittered (resize 286/256, random crop, flip: ``benchmark/synthesis/data.py``); the kind splits them into X and Y;
* loss: adv·L_adv + rec·(λ1·L1 + (1 − λ1)·L_CoPer) with D trained by its own optimiser inside the loss step (``GanTrainer``);
* evaluation: PSNR (main metric; model selection picks the validation PSNR, the paper's "evaluation metric
  using an internal validation set", appendix C) and SSIM on 8-bit slices, CoPer (SwAV-VGG-16 on the target series,
  trained apart from any loss network), LPIPS (random VGG-16, no download) and, for labelled base tasks, Dice on
  synthetic images (``benchmark/synthesis/evaluation.py``).
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from benchmark import storage
from benchmark.backbones import build_backbone
from benchmark.job import NetworkSpec
from benchmark.kinds.base import NetworkPlanning, TaskKind, kind_of, register_kind
from benchmark.methods import get_method, list_methods
from benchmark.perceptual.metric import CoPerLoss, cnn_extractor, random_extractor
from benchmark.protocol import DEFAULT_PROTOCOL
from benchmark.records import FinetuneSettings, MetricInfo, MetricRow
from benchmark.store import content_hash
from benchmark.synthesis.data import SliceJitterDataset
from benchmark.synthesis.evaluation import (
    QUALITY_CONVENTION, dice_on_synthetic, load_evaluator, quality_rows, synthesize, target_series_volumes, with_evaluator,
)
from benchmark.synthesis.pix2pix import GanTrainer, LossWeights, Pix2Pix, build_generator
from benchmark.synthesis.scaling import SliceScale

if TYPE_CHECKING:
    from torch import nn

    from benchmark.protocol import Protocol
    from tasks.base import Volume
    from tasks.synthesis import SynthesisTask

SEGMENTER = "unet2d"  # the real-image segmentation network of the Dice-on-synthetic column (Table III)
METRIC_PRETEXT, METRIC_BACKBONE = "swav", "vgg16_unet"  # the CoPer scoring network: SwAV-VGG (V.B), VGG-16 (Table II)
METRIC_CASE_SHARE = 0.5  # the CoPer scoring network trains on this seeded share of the split's non-test cases
PROFILE_ENTRY = "pix2pix"  # the profiles' crop size and recipe of the generator (benchmark/profiles.py)


class SynthesisKind(TaskKind):
    name = "synthesis"
    baseline_method = "l1"

    # ---- planning ------------------------------------------------------------------------------
    def unsupported_reason(self, task, *, method_cls, backbone: str, spatial_dims: int, finetune: FinetuneSettings) -> str | None:
        if not getattr(method_cls, "synthesis_loss", False):
            losses = [m for m in list_methods() if getattr(get_method(m), "synthesis_loss", False)]
            return (f"{method_cls.registry_name} is a pretraining scored by fine-tuning a segmentation / classification network; task "
                    f"{task.name!r} is image synthesis, whose methods are generator losses ({', '.join(losses)})")
        if spatial_dims != 2:
            return f"task {task.name!r} synthesises 2D slices (pix2pix, CoPer III.C); backbone {backbone!r} is volumetric"
        if finetune.augmentation != "none" or finetune.missing_series:
            return f"--finetune-aug / --missing-series change segmentation inputs and labels; task {task.name!r} is image synthesis"
        return None

    def finetune_network(self, backbone: str) -> str:
        """The profile entry whose crop size and fine-tuning recipe apply: the generator's, whatever the loss network."""
        return PROFILE_ENTRY

    def describe(self, task: "SynthesisTask") -> str:
        labels = f"; Dice on synthetic images with {task.base.name}'s labels" if task.label_task is not None else ""
        return f"{' + '.join(task.sources)} -> {' + '.join(task.targets)}{labels}"

    def metric_info(self, task: "SynthesisTask") -> list[MetricInfo]:
        convention = QUALITY_CONVENTION.format(scale="rounded to 8 bit unless the profile's Protocol.synthesis_quality is slice_float")
        out = [MetricInfo("psnr", primary=True, description=f"PSNR (dB, CoPer Table III): {convention}"),
               MetricInfo("ssim", description=f"SSIM (Table III): {convention}"),
               MetricInfo("coper", higher_is_better=False, description="CoPer metric (III.B, weights one): SwAV-pretrained VGG-16 "
                          "trained apart from any loss network, on the z-scored slices with foreground, averaged"),
               MetricInfo("lpips", higher_is_better=False, description="LPIPS formula on a random VGG-16 (no calibration, no download), "
                          "[-1, 1] slices with foreground, averaged")]
        if task.label_task is not None:
            out += [MetricInfo(f"dice_synth_{r}", description="Dice of a segmenter trained on real images, target series synthetic")
                    for r in task.label_task.region_names]
            out += [MetricInfo("dice_synth_mean", description="mean of the dice_synth regions")]
        return out

    # ---- pretraining of the loss network ----------------------------------------------------------
    def pretraining_volumes(self, task: "SynthesisTask", volumes: list["Volume"]) -> list["Volume"]:
        """The target series only (CoPer IV.B), one grey volume per target series and case (Table I mixes modalities)."""
        return target_series_volumes(task, volumes)

    def pretrain_key(self, task: "SynthesisTask") -> dict:
        return {"series": list(task.targets)}

    # ---- fine-tuning ---------------------------------------------------------------------------
    def planned_networks(self, task: "SynthesisTask", *, plan: NetworkPlanning) -> tuple[NetworkSpec, ...]:
        """The networks every method of a comparison is scored with, trained once per task / seed / split before the
        cells (``benchmark.train.run_job``), then only loaded (``job_model``):

        * ``coper_metric``: SwAV on vgg16_unet, pretrained on the TARGET series (IV.B) of its own seeded half of the
          split's non-test cases (``METRIC_CASE_SHARE``) with its own seed (the Job's + ``Protocol.evaluation_network_seed_offset``):
          the ``l1+coper`` loss network is trained with the Job's seed on all of them, so the CoPer column never scores
          a generator with the network it was trained against (and a run without that method still has it);
        * ``segmenter`` (a labelled base task only): a unet2d segmentation network of the base task trained on the
          REAL images of the split's training cases, every series, validation-selected (Table III's downstream Dice).
        """
        profile = plan.profile
        base_key = {"task": task.ref, "data": plan.data_fingerprint, "seed": plan.seed, "train_ids": list(plan.train_ids),
                    "val_ids": list(plan.val_ids), "volume_size": profile.volume_size, "backbone_size": dataclasses.asdict(profile.backbone_size),
                    "version": 3}
        folder = storage.join(plan.storage, "synthesis_eval")
        swav = get_method(METRIC_PRETEXT)
        recipe, roi = profile.pretrain_recipe(swav, METRIC_BACKBONE), tuple(profile.rois[METRIC_BACKBONE])
        seed = plan.seed + plan.protocol.evaluation_network_seed_offset
        pool = sorted((*plan.train_ids, *plan.val_ids))
        share = max(1, round(METRIC_CASE_SHARE * len(pool)))
        cases = tuple(sorted(np.random.default_rng(seed).choice(pool, size=share, replace=False).tolist()))
        slices = max(1, round(plan.epoch_slices * share / max(1, len(pool))))
        steps = recipe.steps_for(slices * len(task.targets))  # one grey volume per target series and case
        key = content_hash({**base_key, "what": "coper_metric", "pretext": METRIC_PRETEXT, "config": dataclasses.asdict(swav.make_config()),
                            "recipe": dataclasses.asdict(recipe), "steps": steps, "roi": roi, "series": list(task.targets),
                            "network_seed": seed, "cases": list(cases)})
        networks = [NetworkSpec(role="coper_metric", stage="pretrain", method=METRIC_PRETEXT, backbone=METRIC_BACKBONE, task_ref=task.ref,
                                channels=(1, 1), recipe=recipe, steps=steps, roi=roi, key=key, path=storage.join(folder, f"coper-{key}.pt"),
                                seed=seed, case_ids=cases)]
        base = task.label_task
        if base is not None:
            recipe, roi = profile.finetune_recipes[SEGMENTER], tuple(profile.rois[SEGMENTER])  # as for any segmentation task
            steps = recipe.steps_for(plan.finetune_samples)
            key = content_hash({**base_key, "what": "segmenter", "network": SEGMENTER, "recipe": dataclasses.asdict(recipe), "steps": steps,
                                "roi": roi, "protocol": dataclasses.asdict(plan.protocol)})
            networks.append(NetworkSpec(role="segmenter", stage="finetune", method="", backbone=SEGMENTER, task_ref=base.ref,
                                        channels=(len(base.channels), base.num_outputs), recipe=recipe, steps=steps, roi=roi, key=key,
                                        path=storage.join(folder, f"segmenter-{key}.pt")))
        return tuple(networks)

    def job_model(self, job, *, task: "SynthesisTask", state: dict | None, networks: dict[str, dict], hooks) -> "nn.Module":
        """pix2pix for one cell of ``job``: a fresh generator, the variant's frozen loss network (random, seeded,
        or the Job's pretrained one) and the loss weights, scored by the Job's trained evaluation ``networks``."""
        method_cls = get_method(job.method)
        filters = job.backbone_size.pix2pix_filters
        generator = build_generator(in_channels=len(task.sources), out_channels=len(task.targets), filters=filters, roi=job.roi)
        loss_network, source = None, method_cls.loss_network_of(job.method_config)
        if source == "rand":  # Table III "rand.": a seeded random network, the same for every run
            loss_network = random_extractor(job.backbone, size=job.backbone_size, in_channels=1, seed=job.seed)
        elif source != "none":
            if state is None:
                raise ValueError(f"{job.method}: no pretrained loss network in the Job (expected its pretraining)")
            net = build_backbone(job.backbone, in_channels=job.pretrain_channels[0], out_channels=job.pretrain_channels[1],
                                 size=job.backbone_size, roi=job.roi)
            net.load_state_dict(state)
            loss_network = cnn_extractor(net, job.backbone, job.pretrain_channels[0])
        lambda1, adversarial, reconstruction = method_cls.loss_weights(job.method_config, task)
        coper = None if loss_network is None else CoPerLoss(loss_network, feature_norm=method_cls.feature_norm_of(job.method_config))
        model = Pix2Pix(generator, coper=coper, weights=LossWeights(lambda1=lambda1, adversarial=adversarial, reconstruction=reconstruction),
                        discriminator_channels=filters, discriminator_lr=job.finetune_recipe.lr,
                        source_channels=len(task.sources), target_channels=len(task.targets))
        specs = {n.role: n for n in job.networks}
        return with_evaluator(model, load_evaluator(specs, networks, size=job.backbone_size, segmenter_task=task.label_task))

    def training_set(self, task, volumes, *, roi, length, seed, protocol: "Protocol", finetune: FinetuneSettings = FinetuneSettings()):
        """pix2pix's samples: axial slices with foreground in the pix2pix domain, jittered and flipped (CoPer appendix C)."""
        return SliceJitterDataset(volumes, roi=roi, length=length, seed=seed, sources=task.source_index)

    def loss_fn(self, task: "SynthesisTask", model: "nn.Module", *, finetune: FinetuneSettings,
                generator: "torch.Generator") -> Callable[[dict], torch.Tensor]:
        return GanTrainer(getattr(model, "module", model), sources=task.source_index, targets=task.target_index)

    # ---- evaluation ----------------------------------------------------------------------------
    def evaluate(self, model, task: "SynthesisTask", volumes: list["Volume"], *, roi, device: Any, protocol: "Protocol", log,
                 primary_only: bool = False, tta: str = "none") -> list[MetricRow]:
        """Per case: its slice map (from the sources' foreground), the generator on its source series in the pix2pix
        domain, then every metric (``benchmark/synthesis/evaluation.py``)."""
        model = getattr(model, "module", model)
        evaluator = model.evaluator
        rows = []
        for v in volumes:
            image = torch.from_numpy(np.asarray(v.image)).to(device)  # z-scored [C, X, Y, Z]
            scale = SliceScale.of(image, sources=task.source_index)
            fake = synthesize(model, scale.to_pix2pix(image[list(task.source_index)], channels=task.source_index), roi=roi,
                              protocol=protocol)  # [n, X, Y, Z] in [-1, 1]
            real = scale.to_pix2pix(image[list(task.target_index)], channels=task.target_index)
            values = quality_rows(fake, real, scale=scale, targets=task.target_index, evaluator=evaluator, primary_only=primary_only,
                                  quality_scale=protocol.synthesis_quality)
            if not primary_only and evaluator is not None and evaluator.segmenter is not None and v.label is not None:
                values.update(dice_on_synthetic(evaluator.segmenter, task.label_task, image, v.label, scale.to_zscore(fake, channels=task.target_index),
                                                target_index=task.target_index, segmenter_roi=evaluator.segmenter_roi, device=device,
                                                protocol=protocol))
            rows.extend(MetricRow(metric=k, value=val, case_id=v.case_id) for k, val in values.items())
        return rows

    # ---- the task contract ---------------------------------------------------------------------------
    def target_problem(self, task: "SynthesisTask", volume: "Volume") -> str | None:
        """The targets are the image's own series; a labelled base task's label map is its kind's (Dice on synthetic images)."""
        return None if task.label_task is None else kind_of(task.label_task).target_problem(task.label_task, volume)

    def contract_metric_rows(self, task: "SynthesisTask", volumes: list["Volume"]) -> tuple[list[MetricRow], list[MetricRow]]:
        """The image-quality rows of a slightly shifted copy of each case's target (no evaluator networks) and, for a
        labelled base task, Dice on the real images of a fixed 1x1x1 segmenter."""
        rows = []
        for v in volumes:
            image = torch.from_numpy(v.image)
            scale = SliceScale.of(image, sources=task.source_index)
            target = scale.to_pix2pix(image[list(task.target_index)], channels=task.target_index)  # [n, X, Y, Z] in [-1, 1]
            values = quality_rows((target + 0.1).clamp(-1, 1), target, scale=scale, targets=task.target_index, evaluator=None,
                                  primary_only=False)
            if task.label_task is not None:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    segmenter = torch.nn.Conv3d(len(task.channels), task.label_task.num_outputs, 1)
                values.update(dice_on_synthetic(segmenter, task.label_task, v.image, v.label, image[list(task.target_index)],
                                                target_index=task.target_index, segmenter_roi=v.image.shape[1:], device="cpu",
                                                protocol=DEFAULT_PROTOCOL))
            rows += [MetricRow(metric=name, value=value, case_id=v.case_id) for name, value in values.items()]
        return rows, []


SYNTHESIS = register_kind(SynthesisKind())
