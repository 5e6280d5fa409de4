"""Image synthesis: translate a case's source series into its target series (CoPer paper III.C, IV.B, Table III).

* methods: the generator losses of ``benchmark/methods/synthesis_losses.py`` (``l1`` and ``l1+coper``
  with its loss network as Config fields); SSL pretrainings are n/a here (nothing of theirs is compared on synthesis);
  the baseline, run once per loss-network backbone as scratch is elsewhere, is ``l1`` (a randomly
  initialised generator trained with L1 + adversarial loss: Table III's first row; "scratch" would be the
  same generator with no defined loss, so it has no meaning here);
* model: pix2pix (``benchmark/synthesis/pix2pix.py``): the generator is the suite's ``unet2d`` (MONAI
  BasicUNet) for every variant (``finetune_network``), the Job's backbone is the loss network;
* samples: 2D crops of axial slices holding every series; the kind splits them into X (sources) and Y (targets);
* loss: eq. 5 with D trained by its own optimiser inside the loss step (``GanTrainer``);
* evaluation: PSNR (main metric; model selection picks the validation PSNR, the paper's "evaluation metric
  using an internal validation set", appendix C), SSIM, CoPer (SwAV-VGG on the target series), LPIPS (random
  VGG-16, no download) and, for labelled base tasks, Dice on synthetic images (``benchmark/synthesis/evaluation.py``).
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

import torch

from benchmark import storage
from benchmark.backbones import build_backbone
from benchmark.data import CropDataset
from benchmark.inference import predict_volume
from benchmark.job import NetworkSpec
from benchmark.kinds.base import NetworkPlanning, TaskKind, register_kind
from benchmark.methods import get_method, list_methods
from benchmark.perceptual.metric import cnn_extractor, random_extractor
from benchmark.records import FinetuneSettings, MetricInfo, MetricRow
from benchmark.store import content_hash
from benchmark.synthesis.evaluation import dice_on_synthetic, load_evaluator, quality_rows, target_series_volumes, with_evaluator
from benchmark.synthesis.pix2pix import GanTrainer, Pix2Pix

if TYPE_CHECKING:
    from torch import nn

    from benchmark.protocol import Protocol
    from tasks.base import Volume
    from tasks.synthesis import SynthesisTask

GENERATOR = "unet2d"  # MONAI BasicUNet: pix2pix's U-Net generator, the same network for every loss variant
SEGMENTER = "unet2d"  # the real-image segmentation network of the Dice-on-synthetic column (Table III)
METRIC_PRETEXT, METRIC_BACKBONE = "swav", "vgg_unet"  # the CoPer scoring network: SwAV-VGG (V.B)
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
        out = [MetricInfo("psnr", primary=True), MetricInfo("ssim"), MetricInfo("coper", higher_is_better=False),
               MetricInfo("lpips", higher_is_better=False)]
        if task.label_task is not None:
            out += [MetricInfo(f"dice_synth_{r}") for r in task.label_task.region_names] + [MetricInfo("dice_synth_mean")]
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

        * ``coper_metric``: SwAV on vgg_unet, pretrained on the TARGET series of the split's non-test cases (IV.B), as
          the default ``l1+coper`` loss network is (trained separately, so a run without that method still has it);
        * ``segmenter`` (a labelled base task only): a unet2d segmentation network of the base task trained on the
          REAL images of the split's training cases, every series, validation-selected (Table III's downstream Dice).
        """
        profile = plan.profile
        base_key = {"task": task.ref, "data": plan.data_fingerprint, "seed": plan.seed, "train_ids": list(plan.train_ids),
                    "val_ids": list(plan.val_ids), "volume_size": profile.volume_size, "backbone_size": dataclasses.asdict(profile.backbone_size),
                    "version": 2}
        folder = storage.join(plan.storage, "synthesis_eval")
        swav = get_method(METRIC_PRETEXT)
        recipe, roi = profile.pretrain_recipe(swav, METRIC_BACKBONE), tuple(profile.rois[METRIC_BACKBONE])
        steps = recipe.steps_for(plan.epoch_slices * len(task.targets))  # one grey volume per target series and case
        key = content_hash({**base_key, "what": "coper_metric", "pretext": METRIC_PRETEXT, "config": dataclasses.asdict(swav.make_config()),
                            "recipe": dataclasses.asdict(recipe), "steps": steps, "roi": roi, "series": list(task.targets)})
        networks = [NetworkSpec(role="coper_metric", stage="pretrain", method=METRIC_PRETEXT, backbone=METRIC_BACKBONE, task_ref=task.ref,
                                channels=(1, 1), recipe=recipe, steps=steps, roi=roi, key=key, path=storage.join(folder, f"coper-{key}.pt"))]
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
        or the Job's pretrained one) and eq. 5's weights, scored by the Job's trained evaluation ``networks``."""
        method_cls = get_method(job.method)
        generator = build_backbone(GENERATOR, in_channels=len(task.sources), out_channels=len(task.targets), size=job.backbone_size, roi=job.roi)
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
        lambda1 = method_cls.lambda1(job.method_config, task)
        model = Pix2Pix(generator, loss_network=loss_network, lambda1=lambda1, lambda2=job.method_config.lambda2,
                        discriminator_channels=job.backbone_size.unet_features[0], discriminator_lr=job.finetune_recipe.lr,
                        source_channels=len(task.sources), target_channels=len(task.targets))
        specs = {n.role: n for n in job.networks}
        return with_evaluator(model, load_evaluator(specs, networks, size=job.backbone_size, segmenter_task=task.label_task))

    def training_set(self, task, volumes, *, roi, length, seed, protocol: "Protocol", finetune: FinetuneSettings = FinetuneSettings()):
        """2D crops of every series (the kind splits X and Y); crops centred on foreground, as the paper drops empty slices."""
        return CropDataset(volumes, roi=roi, length=length, seed=seed, with_label=False)

    def loss_fn(self, task: "SynthesisTask", model: "nn.Module", *, finetune: FinetuneSettings,
                generator: "torch.Generator") -> Callable[[dict], torch.Tensor]:
        return GanTrainer(getattr(model, "module", model), sources=task.source_index, targets=task.target_index)

    # ---- evaluation ----------------------------------------------------------------------------
    def evaluate(self, model, task: "SynthesisTask", volumes: list["Volume"], *, roi, device: Any, protocol: "Protocol", log,
                 primary_only: bool = False, tta: str = "none") -> list[MetricRow]:
        model = getattr(model, "module", model)
        evaluator = model.evaluator
        rows = []
        for v in volumes:
            image = torch.from_numpy(v.image).to(device)
            fake = predict_volume(model, image[list(task.source_index)], roi=roi, protocol=protocol)[0]  # [n, X, Y, Z]
            real = image[list(task.target_index)]
            values = quality_rows(fake, real, evaluator=evaluator, primary_only=primary_only)
            if not primary_only and evaluator is not None and evaluator.segmenter is not None and v.label is not None:
                values.update(dice_on_synthetic(evaluator.segmenter, task.label_task, v.image, v.label, fake, target_index=task.target_index,
                                                segmenter_roi=evaluator.segmenter_roi, device=device, protocol=protocol))
            rows.extend(MetricRow(metric=k, value=val, case_id=v.case_id) for k, val in values.items())
        return rows


SYNTHESIS = register_kind(SynthesisKind())
