"""DINO (Caron et al. 2021): self-distillation with no labels, the CSM paper's "Dino [3]" baseline (Tables I-IV).

A student and a teacher of the same architecture see multi-crop views of a sample: the teacher only the two global
views, the student every view. Each network's pooled encoder output goes through a projection head (``DINOHead``:
3-layer MLP, l2-normalised bottleneck, weight-normalised last layer of K = 65536 outputs). The student's
distribution P_s = softmax(g_s / τ_s) (τ_s = 0.1) is trained to match the teacher's centred and sharpened
P_t = softmax((g_t − c) / τ_t) (τ_t = 0.04) by cross-entropy over every pair of different views (section 3.1,
eq. 2-3). The teacher gets no gradient: after every step it moves by EMA, θ_t ← λθ_t + (1 − λ)θ_s, λ on a cosine
schedule from 0.996 to 1, and the centre is an EMA of the teacher's batch means, c ← m·c + (1 − m)·mean g_t
(m = 0.9, over the global batch). Defaults and formulas are the authors' code (facebookresearch/dino ``main_dino.py``).

As the CSM paper runs it (IV.A "Compared Baselines"; "For all methods except Pcrlv2 and Vox2vec ... the ViT-B/16 is
employed as the standard backbone"): on the same series-token ViT as CSM and MAE3D (``Backbone.token_encoder``: the
``vit`` backbone or UNETR's ViT), 96³ crops, and only the encoder transfers.

The pretraining recipe (``recipe``): the CSM paper states its own ("Adam optimizer with a cosine decay learning rate
starting at 1e-3", 8000 epochs on BT-MSD, batch 6) but not its baselines'. DINO trains with AdamW at a learning rate
scaled linearly with the batch (5e-4 x B / 256, ``main_dino.py``), a 10-epoch warm-up and a cosine to 1e-6; at
learning rates far above that its outputs can collapse to the uniform solution (the loss then sits at log K, as it
ends in a 40-step smoke pretraining at AdamW 2e-3, the smoke profile's recipe for every method). The default ``"dino"`` is DINO's own optimiser over the CSM paper's
length and batch (8000 epochs, batch 6: lr 5e-4 x 6 / 256), the recipe that can have produced the CSM paper's DINO
row, which is on a par with MAE3D; ``"csm"`` trains DINO with the CSM recipe as ``mae3d`` is. The CSM paper names DINO a single-series method: like MAE3D here, it sees a scan as one image
whose series are tokenised by the shared ViT, every view cropping all series alike.

Choices the 3D suite makes (each said where it is made):

* Views: ``benchmark.blocks.multicrop3d`` (3D crops, no solarization); local views interpolate the ViT's position
  embedding to their smaller token grid, as DINO's ViT does.
* The embedding is the mean of the encoder's output tokens: the suite's ViTs have no [CLS] token (the series-token
  ViT's tokens feed a segmentation decoder); DINO's ResNet variant likewise uses the pooled output.
* Schedules in epochs (teacher-temperature warm-up, last-layer freeze: ``freeze_last_layer_epochs``, 1 in the code)
  are converted with the run's steps per epoch (``configure_schedule``); a recipe counted in steps (the smoke
  profile) has no epochs, so neither applies there, as SwAV's prototype freeze. Until ``configure_schedule`` gives
  the run's length the teacher's momentum stays at its base value.
* Not taken from DINO's recipe, because the suite's shared backbone and train loop are what every compared method
  gets: its weight-decay SCHEDULE (0.04 -> 0.4; here 0.04 throughout), gradient clipping at 3.0 and stochastic depth 0.1.
* The teacher's EMA for step k is applied at the start of step k + 1 (the loop has no after-step hook), which gives
  the same teacher at every forward as DINO's update after step k; the centre likewise. ``pretrained_state`` applies
  the last step's update, so the transferred teacher (``transfer_network="teacher"``, DINO's evaluated network:
  its ``eval_*`` scripts load ``checkpoint_key="teacher"``) is exactly DINO's after the last step.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from benchmark.blocks.dino import DINOHead, dino_loss, ema_update, teacher_momentum, teacher_temperature
from benchmark.blocks.distributed import all_reduce_sum, world_size
from benchmark.blocks.groups import BACKBONES_2D, unsupported
from benchmark.blocks.heads import token_encoder
from benchmark.blocks.multicrop3d import N_GLOBAL, DINOViewsConfig, dino_views
from benchmark.blocks.recipes import CSM_PAPER_RECIPE
from benchmark.methods.base import PretextTask, Recipe, register_method

TRANSFER_NETWORKS = ("teacher", "student")
RECIPES = ("dino", "csm")
BATCH = 6  # CSM IV.A: "our training batch sizes are all 6"
DINO_RECIPE = Recipe(
    steps=None,
    epochs=CSM_PAPER_RECIPE.epochs,
    batch_size=BATCH,
    lr=5e-4 * BATCH / 256,  # main_dino.py: --lr 0.0005 "specified here for a reference batch size of 256", linear scaling rule
    optimizer="adamw",
    weight_decay=0.04,  # main_dino.py --weight_decay (its cosine schedule to 0.4 is not applied)
    schedule="cosine",
    warmup_epochs=10,  # --warmup_epochs 10
    final_lr=1e-6,  # --min_lr 1e-6
    source=(
        "DINO's optimiser (facebookresearch/dino main_dino.py: AdamW, lr 5e-4 x batch / 256, 10 warm-up epochs, cosine to "
        "1e-6, weight decay 0.04) over the CSM paper's pretraining length and batch (IV.A: 8000 epochs on BT-MSD, batch 6, "
        "96^3 crops); the CSM paper does not state its DINO baseline's recipe"
    ),
)


@dataclass(frozen=True)
class DINOConfig(DINOViewsConfig):
    """Multi-crop fields (``DINOViewsConfig``) plus DINO's head, temperatures and EMAs (``main_dino.py`` defaults)."""

    out_dim: int = 65536  # K
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    head_layers: int = 3
    use_bn_in_head: bool = False
    norm_last_layer: bool = True  # the code's default (it notes False helps ViT-S but can be unstable)
    momentum_teacher: float = 0.996  # λ's start; cosine to 1
    teacher_temp: float = 0.04  # τ_t
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    student_temp: float = 0.1  # τ_s
    center_momentum: float = 0.9  # m
    freeze_last_layer_epochs: float = 1.0
    transfer_network: str = "teacher"  # which network's encoder fine-tuning starts from
    recipe: str = "dino"  # the paper profile's pretraining recipe: DINO's own optimiser or the CSM recipe (module docstring)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("teacher_temp", "warmup_teacher_temp", "student_temp"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DINOConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("momentum_teacher", "center_momentum"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"DINOConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if min(self.out_dim, self.hidden_dim, self.bottleneck_dim, self.head_layers) < 1:
            raise ValueError("DINOConfig: out_dim, hidden_dim, bottleneck_dim and head_layers must be >= 1")
        if self.warmup_teacher_temp_epochs < 0 or self.freeze_last_layer_epochs < 0:
            raise ValueError("DINOConfig: warmup_teacher_temp_epochs and freeze_last_layer_epochs must be >= 0")
        if self.recipe not in RECIPES:
            raise ValueError(f"DINOConfig.recipe must be one of {list(RECIPES)}, got {self.recipe!r}")
        if self.transfer_network not in TRANSFER_NETWORKS:
            raise ValueError(f"DINOConfig.transfer_network must be one of {list(TRANSFER_NETWORKS)}, got {self.transfer_network!r}")


def embed(encoder: nn.Module, view: torch.Tensor) -> torch.Tensor:
    """view [B, S, *size] -> the mean of the encoder's output tokens [B, dim] (every series, every position)."""
    tokens = encoder.tokenize(view)  # [B, S, n, dim]
    b, s, n, dim = tokens.shape
    return encoder.encode(tokens.reshape(b, s * n, dim)).mean(dim=1)


def _prefix_of(root: nn.Module, module: nn.Module) -> str:
    """The state-dict prefix of ``module`` inside ``root`` ("encoder." for the ViT backbones)."""
    for name, sub in root.named_modules():
        if sub is module:
            return f"{name}." if name else ""
    raise ValueError(f"{type(module).__name__} is not a submodule of {type(root).__name__}")


@register_method("dino")
class DINO(PretextTask):
    """DINO: multi-crop self-distillation, EMA teacher, centring + sharpening, cross-entropy (Caron et al. 2021 §3.1; CSM Tables I-IV)."""

    Config = DINOConfig
    default_backbone = "vit"
    supported_backbones = ("vit", "unetr")  # the series-token encoders (CSM IV.A: ViT-B/16)
    unsupported_backbones = {
        **unsupported(("swin_unetr",), "DINO as the CSM paper runs it distils the series-token ViT (CSM IV.A: ViT-B/16), whose "
                                       "position embedding is interpolated for the smaller local views; Swin-UNETR has no "
                                       "token encoder"),
        **unsupported(BACKBONES_2D, "DINO's views here are 3D multi-crops of the series-token ViT's input (CSM IV.A); "
                                    "a 2D network has no such encoder"),
    }
    transfer = "encoder"  # the ViT encoder is fine-tuned with the task head, as CSM's
    trains_whole_backbone = False  # the segmentation decoder is unused while pretraining
    paper = "cross_series_masking"
    # CSM IV.A: the paper's pretraining pipeline flips and crops for every row (mae3d alike); DINO's own views follow
    pretrain_aug = "csm"
    paper_recipe = DINO_RECIPE

    @classmethod
    def recipe_for(cls, cfg: DINOConfig) -> Recipe:
        """DINO's optimiser over the CSM paper's length (``recipe="dino"``) or the CSM recipe itself (``"csm"``)."""
        return CSM_PAPER_RECIPE if cfg.recipe == "csm" else DINO_RECIPE

    def __init__(self, backbone: nn.Module, cfg: DINOConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=in_channels)
        encoder = token_encoder(backbone, "dino")
        head = dict(hidden_dim=cfg.hidden_dim, bottleneck_dim=cfg.bottleneck_dim, layers=cfg.head_layers, use_bn=cfg.use_bn_in_head,
                    norm_last_layer=cfg.norm_last_layer)
        self.head = DINOHead(encoder.dim, cfg.out_dim, **head)
        # The teacher starts as the student's copy and never gets a gradient (main_dino.py: requires_grad = False).
        self.teacher_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, cfg.out_dim))
        self.register_buffer("pending_center", torch.zeros(1, cfg.out_dim))  # the last step's batch centre, not yet applied
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # training steps taken
        self.total_steps: int | None = None
        self.steps_per_epoch: float | None = None
        self.freeze_last_layer_steps = 0

    def configure_schedule(self, *, recipe: Recipe, steps: int) -> None:
        """The run's length (teacher momentum) and epoch length (temperature warm-up, last-layer freeze)."""
        self.total_steps = steps
        self.steps_per_epoch = recipe.steps_per_epoch(steps)
        self.freeze_last_layer_steps = 0 if self.steps_per_epoch is None else int(round(self.cfg.freeze_last_layer_epochs * self.steps_per_epoch))

    def _pairs(self):
        """(teacher, student) module pairs the EMA moves."""
        return ((self.teacher_encoder, self.backbone.token_encoder), (self.teacher_head, self.head))

    @torch.no_grad()
    def _apply_last_update(self) -> None:
        """The EMAs of the step just taken (DINO applies them after its optimiser step; here before the next forward)."""
        momentum = teacher_momentum(int(self.step) - 1, total=self.total_steps, base=self.cfg.momentum_teacher)
        for teacher, student in self._pairs():
            ema_update(teacher, student, momentum=momentum)
        m = self.cfg.center_momentum
        self.center.mul_(m).add_(self.pending_center, alpha=1.0 - m)

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, S, D, H, W]
        cfg = self.cfg
        training = self.training and torch.is_grad_enabled()  # a no-grad forward (evaluation, tests) changes no state
        if training and int(self.step) > 0:
            self._apply_last_update()
        encoder = self.backbone.token_encoder
        views = dino_views(x, cfg, patch=encoder.patch, generator=generator)  # 2 global [B, S, *roi], then local [B, S, *l]
        # Views of one size go through the encoder together (DINO's MultiCropWrapper); rows stay view-major.
        features = torch.cat([embed(encoder, torch.cat(views[:N_GLOBAL]))]
                             + ([embed(encoder, torch.cat(views[N_GLOBAL:]))] if len(views) > N_GLOBAL else []))
        frozen = int(self.step) < self.freeze_last_layer_steps
        student = self.head(features, freeze_last_layer=frozen)  # [V*B, K]
        with torch.no_grad():
            teacher = self.teacher_head(embed(self.teacher_encoder, torch.cat(views[:N_GLOBAL])))  # [2B, K]
        temp = teacher_temperature(int(self.step), steps_per_epoch=self.steps_per_epoch, warmup_temp=cfg.warmup_teacher_temp,
                                   temp=cfg.teacher_temp, warmup_epochs=cfg.warmup_teacher_temp_epochs)
        loss = dino_loss(student, teacher, center=self.center, n_global=N_GLOBAL, student_temp=cfg.student_temp, teacher_temp=temp)
        if training:  # DINOLoss.update_center: the mean of the teacher's outputs over the global batch
            batch_center = all_reduce_sum(teacher.float().sum(dim=0, keepdim=True)) / (teacher.shape[0] * world_size())
            self.pending_center.copy_(batch_center)
            self.step += 1
        return {"loss": loss}

    @torch.no_grad()
    def pretrained_state(self) -> dict[str, torch.Tensor]:
        """The backbone's weights with its encoder replaced by the teacher's after the last step's EMA
        (``transfer_network="teacher"``), or the student backbone as trained."""
        state = super().pretrained_state()
        if self.cfg.transfer_network == "student":
            return state
        teacher = copy.deepcopy(self.teacher_encoder)
        if int(self.step) > 0:
            momentum = teacher_momentum(int(self.step) - 1, total=self.total_steps, base=self.cfg.momentum_teacher)
            ema_update(teacher, self.backbone.token_encoder, momentum=momentum)
        prefix = _prefix_of(self.backbone, self.backbone.token_encoder)
        state.update({prefix + k: v.detach().cpu() for k, v in teacher.state_dict().items()})
        return state
