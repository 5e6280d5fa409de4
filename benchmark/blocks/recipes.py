"""Pretraining recipes that several methods share (each paper trains its baselines like its own method)."""
from __future__ import annotations

from benchmark.blocks.pretext import Recipe

# SI paper 5.5: one recipe for every proxy task (CSI, WSI, DSI and the Models-Genesis baselines).
SI_PAPER_RECIPE = Recipe(
    steps=None,
    epochs=1000,
    iterations_per_epoch=250,  # nnU-Net epochs, which the paper follows (section 5.5.3)
    batch_size=1,  # section 5.5.1
    lr=1e-2,
    optimizer="sgd",
    momentum=0.99,
    weight_decay=3e-5,
    schedule="poly",
    source="SI paper 5.5.1 and 5.5.3: SGD lr 1e-2, momentum 0.99, wd 3e-5, poly, 1000 epochs, batch 1",
)

# DAE paper 3.2: its one pretraining recipe; the Table 4 baselines (MAE, Swin-UNETR SSL, ...) train like DAE.
DAE_PAPER_RECIPE = Recipe(
    steps=20_000,
    batch_size=2,
    lr=4e-4,
    optimizer="adamw",
    weight_decay=1e-5,
    schedule="cosine",
    warmup_steps=500,
    source="DAE paper 3.2: AdamW lr 4e-4, wd 1e-5, 20K iterations, warm-up cosine 500, batch 2/GPU, 96^3 crops",
)
DAE_BASELINE_SOURCE = "DAE paper 3.2, its one pretraining recipe (Table 4 baselines train like DAE): AdamW lr 4e-4, wd 1e-5, 20K it, batch 2/GPU"

# CSM paper IV.A; its MAE3D baseline is pretrained with the same recipe.
CSM_PAPER_RECIPE = Recipe(
    steps=None,
    epochs=8000,
    batch_size=6,
    lr=1e-3,
    optimizer="adam",
    schedule="cosine",
    source="CSM paper IV.A: Adam, cosine decay from 1e-3, 8000 epochs (BT-MSD), 96^3 crops; batch 6 as stated for training",
)

# LADP paper II.D: "For both phases, the model is optimized using the Adam with a learning rate of
# 0.0001 for 30 epochs with a batch size of 16" -- the same recipe for its DDP baseline (Table 1).
LADP_PAPER_RECIPE = Recipe(
    steps=None,
    epochs=30,
    batch_size=16,
    lr=1e-4,
    optimizer="adam",
    weight_decay=0.0,
    schedule="constant",
    source=(
        "LADP paper II.D: Adam, lr 1e-4, 30 epochs, batch 16, random horizontal/vertical flips; 2D slices of the "
        "BONBID-HIE volumes (II.A), 2 channels ADC + Z_ADC upscaled to 256x256 (II.B). Not stated in the paper: "
        "learning-rate schedule (constant assumed), weight decay (0 assumed), warm-up (none assumed)"
    ),
)
