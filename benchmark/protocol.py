"""Protocol constants of a comparison: named once, recorded in every cell's resolved configuration.

These are the knobs that are not a method's hyperparameters and not a profile's size/recipe, but
that every method of a comparison shares (so changing one changes every row alike): crop sampling,
sliding-window inference, the seed offsets that decorrelate the random streams of one seed, and
the default of the fine-tuning mixup. A task's test share is task configuration
(``Task.test_fraction``), not a protocol constant.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Protocol:
    # nnU-Net-style foreground oversampling of fine-tuning crops (a third of the crops centred on a label).
    finetune_foreground_prob: float = 0.33
    # Which labelled voxel such a crop is centred on: "class" (nnU-Net: a label value present in the case, uniformly,
    # then one of its voxels; small organs are seen as often as the liver) or "voxel" (any labelled voxel, uniformly).
    finetune_foreground_sampling: str = "class"
    # (Pretraining crops: a method's own setting, e.g. LADP's foreground_prob; only a label-aware one samples by labels.)
    # MONAI sliding-window inference on the test volumes.
    sliding_window_overlap: float = 0.25
    sliding_window_batch_3d: int = 2
    sliding_window_batch_2d: int = 16  # axial slices per forward pass of a 2D network
    # Sample dimensionalities (2: slices, 3: crops) whose fine-tuning augmentation keeps its elastic part
    # (benchmark/spatial_augmentation.py). The smoke profile leaves 3D elastic out: ~0.5 s per deformed 64x64x32 crop on a CPU.
    spatial_aug_elastic_dims: tuple[int, ...] = (2, 3)
    # Synthesis (CoPer Table III): the scale PSNR / SSIM are computed on (benchmark/synthesis/evaluation.py):
    # "slice_8bit" (the paper's images: each axial slice in gray levels 0-255, rounded; data range 255) or "slice_float"
    # (the same levels, not rounded).
    synthesis_quality: str = "slice_8bit"
    # Mixup's Beta(alpha, alpha) when --finetune-aug mixup is given without --mixup-alpha (the SI paper gives none).
    mixup_alpha: float = 0.4
    # Model selection: validation evaluations per fine-tuning run (every steps // n steps, and at the last step);
    # the checkpoint with the best validation score is the one tested. Profiles set their own (benchmark/profiles.py).
    validations_per_finetune: int = 4
    # Seed arithmetic: one run seed drives several independent random streams.
    labeled_subset_seed_offset: int = 10_000  # nested labelled subsets: permutation seeded by offset + seed
    validation_seed_offset: int = 20_000  # validation cases of a split: seeded by offset + split seed + seed, fold
    generator_seed_stride: int = 1_000  # torch.Generator of a stage: seed * stride + offset + worker rank
    finetune_generator_offset: int = 17  # fine-tuning augmentation draws (mixup, CarveMix)
    finetune_init_seed_stride: int = 7919  # fine-tuning initialisation: seed * stride + labelled cases
    # A kind's scoring network that must not be the compared method's own (synthesis: the CoPer metric network vs the
    # l1+coper loss network): initialised and trained with seed + offset, on its own seeded share of the cases.
    evaluation_network_seed_offset: int = 30_000


DEFAULT_PROTOCOL = Protocol()
