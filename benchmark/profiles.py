"""Run profiles: how big and how long. ``smoke`` for a laptop CPU, ``paper`` for each paper's recipe.

Fine-tuning recipes are per BACKBONE, not per method: every method on a backbone (scratch
included) is fine-tuned identically, which is what makes the comparison fair.
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

    def pretrain_recipe(self, method: type[PretextTask], backbone: str, cfg: Any = None) -> Recipe:
        """The pretraining recipe of ``method`` (with ``cfg``: that configuration's) on ``backbone``."""
        if self.smoke_pretrain:
            return self.smoke_pretrain[backbone]
        return method.recipe_for(cfg) if cfg is not None else method.paper_recipe


SMOKE = Profile(
    name="smoke",
    # Model selection twice per fine-tuning run (half-way and at the end): each validation is a sliding-window pass
    # over every validation volume, which at smoke size costs as much as a quarter of the fine-tuning.
    # The fine-tuning augmentation's elastic part on 2D slices only (~3 ms each); on 3D crops it costs ~0.5 s per deformed crop.
    protocol=dataclasses.replace(DEFAULT_PROTOCOL, validations_per_finetune=2, spatial_aug_elastic_dims=(2,)),
    backbone_size=SMOKE_SIZE,
    volume_size=(64, 64, 32),
    # "pix2pix": the synthesis generator's crops and recipe (benchmark/kinds/synthesis.py ``finetune_network``).
    # The 3D networks train on 32^3 crops of the 64x64x32 volumes at batch 2: per sample 4x cheaper than whole volumes at
    # batch 1 (which also falls back to PyTorch's slow conv3d path on a CPU), and foreground-biased crops learn faster.
    rois={"unet2d": (64, 64), "vgg_unet": (64, 64), "swin_unetr": (32, 32, 32), "vit": (32, 32, 32), "resnet_unet": (64, 64), "pix2pix": (64, 64),
          "unetr": (32, 32, 32)},  # UNETR's 16^3 patches: a 2x2x2 token grid
    # AdamW with a constant-then-cosine schedule converges in the few steps a smoke run has.
    finetune_recipes={
        "unet2d": Recipe(steps=160, batch_size=8, lr=1e-2, optimizer="adamw", source="smoke: scripts/probe_smoke_recipe.py (btcv scratch: 100 steps 0.24, 200 steps 0.55)"),
        "vgg_unet": Recipe(steps=100, batch_size=8, lr=1e-3, optimizer="adamw", source="smoke (no normalisation layers: lower lr)"),
        # scripts/probe_smoke_recipe.py, scratch on brats at 100 %: swin 80 steps lr 1e-2 dice 0.97 (lr 2e-3 / 5e-4 at 64x64x32
        # batch 1: 0.33 / 0.16 after 80 steps); vit 120 steps 0.88 (80: 0.72)
        "swin_unetr": Recipe(steps=60, batch_size=2, lr=1e-2, optimizer="adamw", source="smoke: scripts/probe_smoke_recipe.py (brats scratch: 80 steps 0.97)"),
        "vit": Recipe(steps=100, batch_size=2, lr=1e-2, optimizer="adamw", source="smoke: scripts/probe_smoke_recipe.py (brats scratch: 80 steps 0.72, 120 steps 0.88)"),
        "resnet_unet": Recipe(steps=100, batch_size=8, lr=2e-3, optimizer="adamw", source="smoke"),
        "pix2pix": Recipe(steps=40, batch_size=4, lr=2e-4, optimizer="adam", schedule="constant", source="smoke (pix2pix's Adam lr 2e-4)"),
        # scripts/probe_smoke_recipe.py scratch unetr brats fr=100% (one thread): 100 steps 0.70 (26 s), 160 steps 0.92 (42 s);
        # lr 3e-3 at 100 steps 0.15
        "unetr": Recipe(steps=160, batch_size=2, lr=1e-2, optimizer="adamw", source="smoke: scripts/probe_smoke_recipe.py (brats scratch: 100 steps 0.70, 160 steps 0.92)"),
    },
    smoke_pretrain={
        "unet2d": Recipe(steps=80, batch_size=8, lr=1e-2, optimizer="adamw", source="smoke"),
        "vgg_unet": Recipe(steps=80, batch_size=8, lr=1e-3, optimizer="adamw", source="smoke"),
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
            steps=None, epochs=200, batch_size=1, lr=2e-4, optimizer="adam", schedule="constant",
            source="CoPer appendix C: pix2pix, lr 2e-4; epochs and batch not given: pix2pix's 200 epochs, batch 1 "
                   "(pix2pix decays the lr linearly over the last 100 epochs; here it stays constant)",
        ),
    },
)


def _few_steps(recipes: dict[str, Recipe], steps: int) -> dict[str, Recipe]:
    return {name: dataclasses.replace(recipe, steps=steps) for name, recipe in recipes.items()}


# Seconds per job: exercises every stage of the pipeline (used by the end-to-end tests).
TINY = dataclasses.replace(
    SMOKE, name="tiny", finetune_recipes=_few_steps(SMOKE.finetune_recipes, 2), smoke_pretrain=_few_steps(SMOKE.smoke_pretrain, 2)
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
