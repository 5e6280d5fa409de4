"""The five papers' published numbers (``reports/data/paper_results.csv``, a copy of
``shared/reference/paper_results.csv`` with the rows this module maps) matched to our rows: task, method
(+ ablation switches, fine-tuning augmentation; ``METHODS``, one line per paper row name), metric and label
setting. A match never means the protocols agree: each carries a note saying where ours differs (data,
profile, backbone, labelled cases), and a paper's scale where ours may differ (``SCALE_NOTES``).

Rows attach only to the setting they report (``matches``): a paper's scratch row beside scratch of its own
backbone (CSM's "Unetr" beside ``scratch (unetr)``, its "ViT" beside ``scratch (vit)``); LADP Table 1's
"DAE [16]" (Vincent et al. 2008) beside ``denoising_ae``, never the Disruptive AE ``dae``; CSM's single-series
rows (Tables II-IV) only beside a cell whose input is one series, its multi-series rows never beside one; a row
on a paper's in-house cohort (CSM Table III, Breast2023) only where the user names the task's data as that
cohort (``--paper-dataset mri_cls=Breast2023``): ``mri_cls`` reads any in-house MRI set."""
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


@dataclass(frozen=True)
class Target:
    """Our configuration that a paper's row reports: method, its hyperparameter overrides (an ablation), the
    fine-tuning augmentation, and the backbone the row ran on where it is not the paper's main one (``PAPERS``)."""

    method: str
    overrides: tuple[tuple[str, str], ...] = ()
    finetune_aug: str = "none"
    backbone: str | None = None


# Paper method name -> our configuration, one line per row name; a name absent here is our method of the same name on
# the paper's main backbone. "paper:method" keys are read first (one paper's name meaning another method).
METHODS: dict[str, Target] = {
    # scratch rows: the baseline of their own backbone only
    "unetr_scratch": Target("scratch", backbone="unetr"),  # CSM Tables I-II "Unetr [6]", DAE Table 2 "UNETR": supervised UNETR
    "vit_scratch": Target("scratch", backbone="vit"),  # CSM Tables III-IV "ViT [9]"
    "carvemix": Target("scratch", finetune_aug="carvemix"),  # LADP Table 1: CarveMix fine-tuning, no pretraining
    # baselines the papers compare against
    "denoising_ae": Target("denoising_ae"),  # LADP Table 1 "DAE [16]": Vincent et al. 2008's denoising autoencoder
    "label_aware_denoising:dae": Target("denoising_ae"),  # (older copies of the table): never our Disruptive AE ``dae``
    "dino": Target("dino"),  # CSM Tables I-IV "Dino [3]" on the paper's ViT-B/16
    # ablations
    "csm_mask50": Target("csm", (("mask_ratio", "0.5"),)),
    "csm_same_position_mask": Target("csm", (("same_position_masks", "true"),)),
    "csm_no_series_mask": Target("csm", (("series_masking", "false"),)),
    "dae_noise_only": Target("dae", (("downsampling", "false"), ("local_masking", "false"))),
    "dae_downsample_only": Target("dae", (("noise", "false"), ("local_masking", "false"))),
    "dae_local_mask_only": Target("dae", (("noise", "false"), ("downsampling", "false"))),
    # CoPer Table III's loss rows -> our synthesis loss methods (benchmark/methods/synthesis_losses.py)
    # (``l1+coper`` with its loss network as Config fields; the defaults, swav and vgg16_unet, are not overrides; CoPer's "VGG" is VGG-16, Table II)
    "l1": Target("l1", backbone="vgg16_unet"),
    "coper_swav_vgg": Target("l1+coper", backbone="vgg16_unet"),
    "coper_swav_resnet": Target("l1+coper", (("loss_backbone", "resnet_unet"),), backbone="resnet_unet"),
    "coper_simsiam_vgg": Target("l1+coper", (("loss_network", "simsiam"),), backbone="vgg16_unet"),
    "coper_simsiam_resnet": Target("l1+coper", (("loss_network", "simsiam"), ("loss_backbone", "resnet_unet")), backbone="resnet_unet"),
    "rand_vgg": Target("l1+coper", (("loss_network", "rand"),), backbone="vgg16_unet"),
    "rand_resnet": Target("l1+coper", (("loss_network", "rand"), ("loss_backbone", "resnet_unet")), backbone="resnet_unet"),
}

# How a paper computed a metric where ours may differ in scale: appended to the row's note wherever it is shown.
SCALE_NOTES = {
    ("coper_perceptual_metric", "psnr"): "paper's scale: PSNR of each 2D slice (224 × 224) with intensities rescaled to the 8-bit "
                                         "range [0, 255] (peak 255), averaged over the validation slices (CoPer IV.A, Table III)",
    ("coper_perceptual_metric", "ssim"): "paper's scale: SSIM of each 2D slice (224 × 224) in the 8-bit range [0, 255] "
                                         "(data range 255), averaged over the validation slices (CoPer IV.A, Table III)",
}
IN_HOUSE_MARK = "in-house"  # a paper dataset named "... (in-house)": only the user can say their data is that cohort


def target(paper: str, method: str) -> Target:
    """Our configuration for a paper's row name (``METHODS``; default: our method of that name)."""
    return METHODS.get(f"{paper}:{method}") or METHODS.get(method) or Target(method)


def series_setting(label_setting: str) -> str | None:
    """"single" / "multi" for the CSM paper's "100% single-series" / "100% multi-series" settings, else None."""
    text = str(label_setting).lower()
    return "single" if "single-series" in text else ("multi" if "multi-series" in text else None)


def our_series(config: dict | None) -> str | None:
    """"single" / "multi" from a cell's resolved configuration (``in_channels``: the task's input series), None if unknown."""
    channels = (config or {}).get("in_channels")
    try:
        channels = int(channels)
    except (TypeError, ValueError):
        return None
    return None if channels < 1 else ("single" if channels == 1 else "multi")


def in_house_name(dataset: str) -> str | None:
    """"Breast2023" for "Breast2023 (in-house)"; None for a public dataset."""
    dataset = str(dataset)
    return dataset.split("(")[0].strip() if IN_HOUSE_MARK in dataset.lower() else None


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
            table: pd.DataFrame | None = None, config: dict | None = None, paper_datasets: dict[str, str] | None = None) -> list[Published]:
    """Published values for one of our cells (row x fraction) of ``task``/``metric``.

    Attachment rules besides task, metric, method (``METHODS``) and label share: a paper's scratch row only beside
    scratch of its own backbone; a single-series row (CSM Table II) only beside a cell whose input is one series
    (``config["in_channels"] == 1``) and a multi-series row never beside one; a row on an in-house cohort (CSM
    Breast2023) only when the user named our task's data as that cohort (``paper_datasets``, ``--paper-dataset
    mri_cls=Breast2023``)."""
    table = paper_results() if table is None else table
    paper_datasets = {k: _norm(v) for k, v in (paper_datasets or {}).items()}
    ours_series = our_series(config)
    out = []
    for r in table.itertuples():
        if TASKS.get(r.task) != task:
            continue
        if _norm(METRICS.get(r.metric, r.metric)) != _norm(metric):
            continue
        goal = target(r.paper, r.method)
        if goal.method != row.method or goal.finetune_aug != row.finetune_aug or float(row.missing_series):
            continue
        if {k: _norm(v) for k, v in goal.overrides} != {k: _norm(v) for k, v in row.overrides.items()}:
            continue
        share, count = _setting_share(str(r.label_setting))
        ours_share, ours_count = _our_share(fraction)
        if not ((ours_share is not None and share is not None and abs(ours_share - share) < 1e-6)
                or (ours_count is not None and count is not None and ours_count == count)):
            continue
        paper_backbone = goal.backbone or PAPERS.get(r.paper, ("", "", ""))[1]
        if row.method == "scratch" and paper_backbone and row.backbone != paper_backbone:
            continue  # a paper's "from scratch" row is the baseline of its own backbone only
        series = series_setting(str(r.label_setting))
        if (series == "single" and ours_series != "single") or (series == "multi" and ours_series == "single"):
            continue  # CSM Tables II-IV: single-series input only beside single-series cells, and vice versa
        cohort = in_house_name(str(r.dataset))
        if cohort is not None and paper_datasets.get(task) != _norm(cohort):
            continue  # an in-house cohort: only with the user's say-so (--paper-dataset TASK=NAME)
        differs = []
        if synthetic:
            differs.append(f"ours: built-in synthetic data, not {r.dataset}")
        elif cohort is not None:
            differs.append(f"ours: the data named {cohort} with --paper-dataset; the paper's in-house cohort itself is not public")
        if profiles and "paper" not in profiles:
            differs.append(f"ours: profile {'/'.join(profiles)}, not the paper's recipe")
        if paper_backbone and row.backbone != paper_backbone:
            differs.append(f"ours: backbone {row.backbone}, paper {paper_backbone}")
        if count is not None and n_labeled not in ("?", str(count)):
            differs.append(f"ours: {n_labeled} labelled cases, paper {count}")
        if "+" in str(r.label_setting):
            differs.append(f"paper: {r.label_setting}" + (f" ({r.note})" if pd.notna(r.note) and r.note else ""))
        if series == "single":
            differs.append("paper: single-series input")
        note = "" if pd.isna(r.note) else str(r.note)
        scale = SCALE_NOTES.get((str(r.paper), _norm(r.metric)))
        if scale:
            note = f"{note}; {scale}" if note else scale
        out.append(Published(paper=r.paper, table=str(r.table), value=float(r.value), std=float(r.std) if pd.notna(r.std) else float("nan"),
                             dataset=str(r.dataset), setting=str(r.label_setting), note=note, protocol="; ".join(differs)))
    return out
