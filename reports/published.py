"""The five papers' published numbers (``reports/data/paper_results.csv``, a copy of
``shared/reference/paper_results.csv``) matched to our rows: task, method (+ ablation switches,
fine-tuning augmentation), metric and label setting. A match never means the protocols agree:
each carries a note saying where ours differs (data, profile, backbone, labelled cases)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import pandas as pd

PAPERS = {  # paper key -> (citation, backbone of the paper's main rows, short name)
    "source_identification": ("Chen et al., Source Identification (SI)", "unet2d", "SI"),
    "disruptive_autoencoders": ("Valanarasu et al., Disruptive Autoencoders (DAE)", "swin_unetr", "DAE"),
    "label_aware_denoising": ("Ninalga, Label Aware Denoising Pretraining (LADP)", "vgg_unet", "LADP"),
    "cross_series_masking": ("Wang et al., Cross-series Masking (CSM)", "vit", "CSM"),
    "coper_perceptual_metric": ("Li et al., CoPer perceptual metric", "resnet_unet", "CoPer"),
}
TASKS = {"brats_synthesis": "brats_synthesis", "brats_seg": "brats", "wmh_seg": "wmh", "feta_seg": "feta", "btcv_seg": "btcv", "hie_seg": "hie",
         "msd_brain_seg": "msd_brain", "prostate_cls": "prostate158", "breast_cls": "mri_cls"}
METRICS = {"dice_overall": "dice_lesion", "dice_lt1pct": "dice_size_lt1"}  # paper name -> ours (others: same name, any case)
METHODS = {  # paper method -> (our method, overrides, fine-tuning augmentation)
    "unetr_scratch": ("scratch", {}, "none"), "vit_scratch": ("scratch", {}, "none"),
    "carvemix": ("scratch", {}, "carvemix"),
    "csm_mask50": ("csm", {"mask_ratio": "0.5"}, "none"),
    "csm_same_position_mask": ("csm", {"same_position_masks": "true"}, "none"),
    "csm_no_series_mask": ("csm", {"series_masking": "false"}, "none"),
    "dae_noise_only": ("dae", {"downsampling": "false", "local_masking": "false"}, "none"),
    "dae_downsample_only": ("dae", {"noise": "false", "local_masking": "false"}, "none"),
    "dae_local_mask_only": ("dae", {"noise": "false", "downsampling": "false"}, "none"),
    # CoPer Table III's loss rows -> our synthesis loss methods (benchmark/methods/synthesis_losses.py)
    # (``l1+coper`` with its loss network as Config fields; the defaults, swav and vgg16_unet, are not overrides)
    "l1": ("l1", {}, "none"),
    "coper_swav_vgg": ("l1+coper", {}, "none"),
    "coper_swav_resnet": ("l1+coper", {"loss_backbone": "resnet_unet"}, "none"),
    "coper_simsiam_vgg": ("l1+coper", {"loss_network": "simsiam"}, "none"),
    "coper_simsiam_resnet": ("l1+coper", {"loss_network": "simsiam", "loss_backbone": "resnet_unet"}, "none"),
    "rand_vgg": ("l1+coper", {"loss_network": "rand"}, "none"),
    "rand_resnet": ("l1+coper", {"loss_network": "rand", "loss_backbone": "resnet_unet"}, "none"),
}
# The network a paper row used where it is not the paper's main backbone (PAPERS): CoPer's synthesis losses name theirs.
# CoPer's "VGG" is VGG-16 (Table II): ``vgg16_unet``.
METHOD_BACKBONES = {"l1": "vgg16_unet", "rand_vgg": "vgg16_unet", "coper_swav_vgg": "vgg16_unet", "coper_simsiam_vgg": "vgg16_unet",
                    "rand_resnet": "resnet_unet", "coper_swav_resnet": "resnet_unet", "coper_simsiam_resnet": "resnet_unet"}


@dataclass(frozen=True)
class Published:
    paper: str
    table: str
    value: float
    std: float
    dataset: str
    setting: str
    note: str
    protocol: str  # where our cell's protocol differs

    @property
    def source(self) -> str:
        return f"{PAPERS.get(self.paper, (self.paper,))[0]}, Table {self.table}"

    @property
    def short(self) -> str:
        return f"{PAPERS.get(self.paper, ('', '', self.paper))[2]} Table {self.table}"

    @property
    def text(self) -> str:
        std = f" ({self.std:.3f})" if pd.notna(self.std) else ""
        return f"{self.value:.3f}{std}"


def paper_results() -> pd.DataFrame:
    """The packaged table of published numbers."""
    with resources.files("reports").joinpath("data/paper_results.csv").open("r") as handle:
        return pd.read_csv(handle, dtype={"table": str})


def _norm(value) -> str:
    return str(value).strip().lower()


def _setting_share(setting: str) -> tuple[float | None, int | None]:
    """'25/100 labeled' -> (0.25, 25); '50% multi-series' -> (0.5, None); '5-fold CV' / other -> (1.0, None)."""
    m = re.search(r"(\d+)\s*/\s*(\d+)\s*labeled", setting)
    if m:
        return int(m.group(1)) / int(m.group(2)), int(m.group(1))
    m = re.search(r"(\d+(?:\.\d+)?)\s*%", setting)
    if m:
        return float(m.group(1)) / 100, None
    return 1.0, None


def _our_share(fraction: str) -> tuple[float | None, int | None]:
    if fraction.endswith("%"):
        return float(fraction[:-1]) / 100, None
    try:
        return None, int(float(fraction.split()[0]))
    except ValueError:
        return None, None


def matches(*, task: str, metric: str, row, fraction: str, n_labeled: str, profiles: list[str], synthetic: bool,
            table: pd.DataFrame | None = None) -> list[Published]:
    """Published values for one of our cells (row x fraction) of ``task``/``metric``."""
    table = paper_results() if table is None else table
    out = []
    for r in table.itertuples():
        if TASKS.get(r.task) != task:
            continue
        if _norm(METRICS.get(r.metric, r.metric)) != _norm(metric):
            continue
        method, overrides, aug = METHODS.get(r.method, (r.method, {}, "none"))
        if method != row.method or aug != row.finetune_aug or float(row.missing_series):
            continue
        if {k: _norm(v) for k, v in overrides.items()} != {k: _norm(v) for k, v in row.overrides.items()}:
            continue
        share, count = _setting_share(str(r.label_setting))
        ours_share, ours_count = _our_share(fraction)
        if not ((ours_share is not None and share is not None and abs(ours_share - share) < 1e-6)
                or (ours_count is not None and count is not None and ours_count == count)):
            continue
        paper_backbone = METHOD_BACKBONES.get(r.method) or PAPERS.get(r.paper, ("", "", ""))[1]
        if row.method == "scratch" and paper_backbone and row.backbone != paper_backbone:
            continue  # a paper's "from scratch" row is the baseline of its own backbone only
        differs = []
        if synthetic:
            differs.append(f"ours: built-in synthetic data, not {r.dataset}")
        if profiles and "paper" not in profiles:
            differs.append(f"ours: profile {'/'.join(profiles)}, not the paper's recipe")
        if paper_backbone and row.backbone != paper_backbone:
            differs.append(f"ours: backbone {row.backbone}, paper {paper_backbone}")
        if count is not None and n_labeled not in ("?", str(count)):
            differs.append(f"ours: {n_labeled} labelled cases, paper {count}")
        if "+" in str(r.label_setting):
            differs.append(f"paper: {r.label_setting}" + (f" ({r.note})" if pd.notna(r.note) and r.note else ""))
        if "single-series" in str(r.label_setting):
            differs.append("paper: single-series input")
        out.append(Published(paper=r.paper, table=str(r.table), value=float(r.value), std=float(r.std) if pd.notna(r.std) else float("nan"),
                             dataset=str(r.dataset), setting=str(r.label_setting), note="" if pd.isna(r.note) else str(r.note),
                             protocol="; ".join(differs)))
    return out
