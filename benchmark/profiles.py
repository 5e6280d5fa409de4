"""Run profiles: how big and how long. ``smoke`` for a laptop CPU, ``paper`` for each paper's recipe.

Fine-tuning recipes are per BACKBONE (and, where a profile says so, per task and backbone), never per method: every
method on a backbone (scratch included) is fine-tuned identically on a task, which is what makes the comparison fair.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from benchmark.backbones import BACKBONES, PAPER_SIZE, SMOKE_SIZE, BackboneSize
from benchmark.errors import BenchmarkInputError
from benchmark.methods import PretextTask, Recipe
from benchmark.protocol import DEFAULT_PROTOCOL, Protocol


@dataclass(frozen=True)
class Profile:
    name: str
    backbone_size: BackboneSize
    volume_size: tuple[int, int, int] | None  # resample every volume to this size (None: native grid)
    rois: dict[str, tuple[int, ...]]  # training crop / inference window per backbone
    finetune_recipes: dict[str, Recipe]
    smoke_pretrain: dict[str, Recipe] = field(default_factory=dict)  # per backbone; empty -> each paper's recipe
    protocol: Protocol = DEFAULT_PROTOCOL  # constants every method of a run shares (benchmark/protocol.py)
    # task name -> backbone -> the fine-tuning recipe of that backbone on that task (else ``finetune_recipes``)
    task_finetune_recipes: dict[str, dict[str, Recipe]] = field(default_factory=dict)
    # What ``--spatial-aug profile`` (the default) stands for: task name -> its fine-tuning augmentation policy
    # (benchmark/spatial_augmentation.py; ``none``: the crops as they are); a task not listed gets ``auto``, the policy
    # of the paper it comes from.
    finetune_spatial_aug: dict[str, str] = field(default_factory=dict)

    def spatial_aug(self, task: str) -> str:
        """The fine-tuning augmentation ``--spatial-aug profile`` gives the task named ``task``."""
        return self.finetune_spatial_aug.get(task, "auto")

    def finetune_recipe(self, network: str, task: str) -> Recipe:
        """The fine-tuning recipe of ``network`` on the task named ``task``: the same for every method."""
        return self.task_finetune_recipes.get(task, {}).get(network) or self.finetune_recipes[network]

    def pretrain_recipe(self, method: type[PretextTask], backbone: str, cfg: Any = None) -> Recipe:
        """The pretraining recipe of ``method`` (with ``cfg``: that configuration's) on ``backbone``."""
        if self.smoke_pretrain:
            return self.smoke_pretrain[backbone]
        return method.recipe_for(cfg) if cfg is not None else method.paper_recipe


SMOKE = Profile(
    name="smoke",
    # Model selection 4 times per fine-tuning run: each validation is one sliding window per validation volume at the
    # 32^3 grid (0.3-1.1 s a validation); a constant-lr recipe's last step is not always its best (brats unet2d at
    # constant lr, 100 %: step 50 of 100 validated better than step 100).
    # The fine-tuning augmentation's elastic part on 2D slices only (~3 ms each); on 3D crops it costs ~0.5 s per deformed crop.
    # The pretraining augmentation's not at all: SI source pools deform 5 slices per sample (benchmark/protocol.py).
    protocol=dataclasses.replace(DEFAULT_PROTOCOL, validations_per_finetune=4, spatial_aug_elastic_dims=(2,), pretrain_aug_elastic_dims=()),
    # BTCV without its fine-tuning augmentation: the DAE policy flips every axis, so a left kidney or adrenal gland
    # appears on either side of the image under the same label, and a network tells them apart only from anatomical
    # context it has not learned at smoke length (probe_smoke_recipe.py, scratch Swin-UNETR, 100 % / 25 % of the labels:
    # 120 steps with the policy 0.43 / 0.32, without 0.73 / 0.38; with it, left kidney and right adrenal stayed at
    # Dice < 0.15). BraTS keeps the SI policy (no left/right labels; its rows learn with it). ``--spatial-aug auto``
    # gives every task its paper's policy.
    finetune_spatial_aug={"btcv": "none"},
    backbone_size=SMOKE_SIZE,
    # Every volume at 32x32x32: 2D networks train on its 32x32 slices (4x cheaper than 64x64), 3D networks on whole
    # volumes, so every structure is in every sample (at 64x64x32, 32^3 crops held a quarter of the abdomen and
    # Swin-UNETR learned BTCV's liver alone in 180 steps; whole 32^3 volumes: 13 organs, mean Dice 0.63 in 200 steps).
    volume_size=(32, 32, 32),
    # "pix2pix": the synthesis generator's crops and recipe (benchmark/kinds/synthesis.py ``finetune_network``).
    rois={"unet2d": (32, 32), "vgg_unet": (32, 32), "vgg16_unet": (32, 32), "swin_unetr": (32, 32, 32), "vit": (32, 32, 32), "resnet_unet": (32, 32), "pix2pix": (32, 32),
          "unetr": (32, 32, 32)},  # UNETR's 16^3 patches: a 2x2x2 token grid
    # Measured with scripts/probe_smoke_recipe.py (one Job of the default run on one CPU thread, scratch at 100 % of the
    # labels, mean test Dice; 2026-12-06, smoke grid 32^3): the numbers are in each recipe's ``source``.
    finetune_recipes={
        "unet2d": Recipe(steps=100, batch_size=8, lr=1e-2, optimizer="adamw",
                         source="smoke, probe_smoke_recipe.py: brats scratch 100 steps cosine 0.82 (25 %: 0.43), in the default "
                                "run 0.81 (0.65); constant lr 0.81 (0.81), in the default run 0.81 (0.86)"),
        "vgg_unet": Recipe(steps=100, batch_size=8, lr=1e-3, optimizer="adamw", source="smoke (no normalisation layers: lower lr)"),
        "vgg16_unet": Recipe(steps=100, batch_size=8, lr=1e-3, optimizer="adamw", source="smoke: vgg_unet's (no normalisation layers: lower lr)"),
        # A constant lr: Swin-UNETR is still learning its classes when a cosine decay would stop it (btcv 150 steps:
        # cosine 0.09, constant 0.27).
        "swin_unetr": Recipe(steps=60, batch_size=2, lr=1e-2, optimizer="adamw", schedule="constant",
                             source="smoke, probe_smoke_recipe.py: brats dae 60 steps 0.78 (25 %: 0.83); 40 steps scratch 0.86 "
                                    "(0.80) but dae 0.43 in the default run (its loss still falling fast at step 40)"),
        # constant lr: brats scratch 100 steps cosine 0.67, constant 0.88; 60 steps constant 0.77 (25 %: 0.42)
        "vit": Recipe(steps=80, batch_size=2, lr=1e-2, optimizer="adamw", schedule="constant",
                      source="smoke, probe_smoke_recipe.py: brats scratch 80 steps constant lr 0.85 (25 %: 0.71); 100 steps "
                             "0.88 (0.85)"),
        "resnet_unet": Recipe(steps=100, batch_size=8, lr=2e-3, optimizer="adamw", source="smoke"),
        # pix2pix's Adam (beta1 0.5) at 5x its lr 2e-4: 40 steps at 2e-4 left the generator at PSNR 11 dB (l1, 64x64
        # slices), 1e-3 reached 20 dB.
        "pix2pix": Recipe(steps=40, batch_size=4, lr=1e-3, optimizer="adam", momentum=0.5, schedule="constant",
                          source="smoke: pix2pix's Adam (beta1 0.5); lr 1e-3 (40 steps: 2e-4 gave PSNR 11 dB, 1e-3 20 dB)"),
        # UNETR (not in the default run): brats scratch 100 steps 0.60 (25 %: 0.24), 160 steps 0.88 (25 %: 0.76); btcv
        # 160 steps 0.06, 320 steps 0.16 (like Swin-UNETR, it learns BTCV's 13 organs slowly; no btcv recipe of its own)
        "unetr": Recipe(steps=160, batch_size=2, lr=1e-2, optimizer="adamw",
                        source="smoke, probe_smoke_recipe.py: brats scratch 160 steps 0.88 (25 %: 0.76)"),
    },
    # BTCV's 13 organs take a 3D network far more steps than BraTS's three nested regions (every method on the
    # backbone gets these, scratch included).
    task_finetune_recipes={
        "btcv": {
            "swin_unetr": Recipe(steps=140, batch_size=2, lr=1e-2, optimizer="adamw", schedule="constant",
                                 source="smoke, probe_smoke_recipe.py: btcv scratch (group norm, no augmentation) 120 steps 0.73 "
                                        "(25 %: 0.38), 140 steps 0.83 (0.49); with the DAE policy 100 steps 0.28 (0.30), 150 "
                                        "steps 0.62 (0.36), 180 steps 0.74 (0.55); layer norm needed 400 steps for 0.88"),
            # cosine: it anneals the 13 small organs' boundaries (with the DAE policy 200 steps constant 0.65, 25 %: 0.62)
            "unet2d": Recipe(steps=200, batch_size=8, lr=1e-2, optimizer="adamw",
                             source="smoke, probe_smoke_recipe.py: btcv scratch (no augmentation) 160 steps cosine 0.73 (25 %: "
                                    "0.41), 200 steps 0.83 (0.47); with the DAE policy 300 steps 0.83 (0.56), 160 steps 0.46-0.58"),
        },
    },
    smoke_pretrain={
        "unet2d": Recipe(steps=80, batch_size=8, lr=1e-2, optimizer="adamw", source="smoke"),
        "vgg_unet": Recipe(steps=80, batch_size=8, lr=1e-3, optimizer="adamw", source="smoke"),
        "vgg16_unet": Recipe(steps=80, batch_size=8, lr=1e-3, optimizer="adamw", source="smoke: vgg_unet's"),
        # batch 4: batch-wise losses (DAE's CMCL, contrastive coding) need positive and negative pairs in a batch
        # (a batch of 2 never holds both: tests/test_registry_contract.py checks every loss term on pipeline batches)
        "swin_unetr": Recipe(steps=30, batch_size=4, lr=2e-3, optimizer="adamw", source="smoke"),
        "vit": Recipe(steps=40, batch_size=4, lr=2e-3, optimizer="adamw", source="smoke"),
        "resnet_unet": Recipe(steps=80, batch_size=8, lr=2e-3, optimizer="adamw", source="smoke"),
        "unetr": Recipe(steps=40, batch_size=4, lr=2e-3, optimizer="adamw", source="smoke: as vit"),
    },
)

PAPER = Profile(
    name="paper",
    protocol=dataclasses.replace(DEFAULT_PROTOCOL, validations_per_finetune=20),  # e.g. every 50 of nnU-Net's 1000 epochs
    backbone_size=PAPER_SIZE,
    volume_size=None,
    rois={
        "unet2d": (192, 192),  # SI 5.1.1 crops/pads slices to 200x200; 192 is the nearest size the 4-level U-Net divides
        "vgg_unet": (256, 256),  # LADP II.B: slices upscaled to 256x256
        # CoPer's VGG-16 loss / metric network: pretrained like resnet_unet on crops of the 240x240 BraTS slices (224: the
        # largest side <= 240 that five pools divide)
        "vgg16_unet": (224, 224),
        "swin_unetr": (96, 96, 96),  # DAE 3.2
        "vit": (96, 96, 96),  # CSM IV.A (BT-MSD)
        "unetr": (96, 96, 96),  # CSM IV.A (BT-MSD; its Table I-II UNETR row); UNETR paper section 4 (BTCV 96^3 crops)
        # CoPer appendix B draws its 192 / 96 multi-crops from whole 240x240 BraTS slices (Table I);
        # 224 is the largest side <= 240 that the ResNet's five stride-2 stages divide.
        "resnet_unet": (224, 224),
        "pix2pix": (256, 256),  # CoPer appendix C: random 256 x 256 crops (of slices resized to 286)
    },
    finetune_recipes={
        "unet2d": Recipe(
            steps=None, epochs=1000, iterations_per_epoch=250, batch_size=8, lr=1e-2, optimizer="sgd", momentum=0.99,
            weight_decay=3e-5, schedule="poly", source="SI paper 5.5.1 and 5.5.3 (BraTS batch 8)",
        ),
        "vgg_unet": Recipe(
            steps=None, epochs=30, batch_size=16, lr=1e-4, optimizer="adam", schedule="constant",
            source="LADP paper II.D: Adam lr 1e-4, 30 epochs, batch 16 (pretraining and fine-tuning)",
        ),
        "vgg16_unet": Recipe(
            steps=None, epochs=30, batch_size=16, lr=1e-4, optimizer="adam", schedule="constant",
            source="no paper fine-tunes this network for segmentation (CoPer uses it as a perceptual loss): vgg_unet's LADP recipe, II.D",
        ),
        "swin_unetr": Recipe(
            steps=None, epochs=600, batch_size=4, lr=4e-4, optimizer="adamw", weight_decay=1e-5, schedule="cosine",
            source="DAE paper 3.2: 600 epochs, lr 4e-4, batch 4/GPU",
        ),
        "vit": Recipe(
            steps=None, epochs=600, batch_size=6, lr=5e-3, optimizer="adam", weight_decay=0.01, schedule="cosine",
            source="CSM paper IV.A: lr 5e-3, weight decay 0.01, batch 6 (epochs not stated; 600 as in DAE)",
        ),
        "unetr": Recipe(
            steps=None, epochs=600, batch_size=6, lr=5e-3, optimizer="adam", weight_decay=0.01, schedule="cosine",
            source="CSM paper IV.A: one fine-tuning recipe for every row of Tables I-II, its UNETR row included: lr 5e-3, weight "
                   "decay 0.01, batch 6, Adam (epochs not stated; 600 as in DAE). The DAE paper's UNETR row (Table 2) is a "
                   "leaderboard entry copied from Hatamizadeh et al., with no recipe of its own",
        ),
        "resnet_unet": Recipe(
            steps=None, epochs=1000, iterations_per_epoch=250, batch_size=8, lr=1e-2, optimizer="sgd", momentum=0.99,
            weight_decay=3e-5, schedule="poly",
            source="no paper fine-tunes this network for segmentation (CoPer uses it as a perceptual loss): unet2d's nnU-Net recipe, SI paper 5.5.1 and 5.5.3",
        ),
        "pix2pix": Recipe(
            steps=None, epochs=200, batch_size=1, lr=2e-4, optimizer="adam", momentum=0.5, schedule="constant",
            source="CoPer appendix C: pix2pix, lr 2e-4; epochs, batch and Adam's beta1 not given: pix2pix's 200 epochs, batch 1, "
                   "beta1 0.5 (pix2pix decays the lr linearly over the last 100 epochs; here it stays constant)",
        ),
    },
)


def _few_steps(recipes: dict[str, Recipe], steps: int) -> dict[str, Recipe]:
    return {name: dataclasses.replace(recipe, steps=steps) for name, recipe in recipes.items()}


# Seconds per job: exercises every stage of the pipeline (used by the end-to-end tests).
TINY = dataclasses.replace(
    SMOKE, name="tiny", finetune_recipes=_few_steps(SMOKE.finetune_recipes, 2), smoke_pretrain=_few_steps(SMOKE.smoke_pretrain, 2),
    task_finetune_recipes={task: _few_steps(recipes, 2) for task, recipes in SMOKE.task_finetune_recipes.items()},
    finetune_spatial_aug={},  # the end-to-end tests run every task's augmentation through the pipeline
)



def with_plugin_backbones(profile: Profile) -> Profile:
    """``profile`` plus the crop and recipes that each plugin backbone (``benchmark.plugins``) declares for it in
    ``Backbone.profiles`` (tiny: its smoke entry with 2 steps per stage); the suite's own backbones are listed above."""
    declared = {name: BACKBONES.get(name).profiles for name in BACKBONES.names() if BACKBONES.origin(name) is not None}
    if not declared:
        return profile
    own = "smoke" if profile.name == "tiny" else profile.name
    finetune = {name: d[own].finetune for name, d in declared.items()}
    pretrain = {name: d["smoke"].pretrain for name, d in declared.items()} if profile.smoke_pretrain else {}
    if profile.name == "tiny":
        finetune, pretrain = _few_steps(finetune, 2), _few_steps(pretrain, 2)
    return dataclasses.replace(profile, rois={**profile.rois, **{name: tuple(d[own].roi) for name, d in declared.items()}},
                               finetune_recipes={**profile.finetune_recipes, **finetune}, smoke_pretrain={**profile.smoke_pretrain, **pretrain})


PROFILES = {p.name: with_plugin_backbones(p) for p in (SMOKE, PAPER, TINY)}
PROFILE_HELP = {
    "smoke": "built-in data, narrow networks, a few minutes on a CPU (default without --data-root)",
    "paper": "each paper's recipe: epochs, batch, learning rate, crop size (default with --data-root)",
    "tiny": "2 steps per stage: checks that the whole pipeline runs (tests)",
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise BenchmarkInputError(f"unknown profile {name!r}; expected one of: {', '.join(PROFILES)}")
    return PROFILES[name]
