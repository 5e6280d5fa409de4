"""Case-level classification: Prostate158 and CSV-manifest readers, AUC / accuracy, plan n/a rules, run_job, report."""
from __future__ import annotations

import dataclasses
import gzip
import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import tasks.mri_cls  # noqa: F401  (registration)
import tasks.prostate158  # noqa: F401
from benchmark.datasources import resolve_task_data
from benchmark.errors import BenchmarkInputError
from benchmark.cli import parse_fractions
from benchmark.plan import MethodEntry, build_plan
from benchmark.profiles import SMOKE
from benchmark.train import Hooks, evaluate, run_job
from tasks import Case, Volume, get_task, list_tasks
from benchmark.kinds import CLASSIFICATION, SEGMENTATION, kind_of
from benchmark.records import FinetuneSettings

SET = None  # case id of set-level rows (benchmark.records.MetricRow)
from tasks.nifti import load_nifti, save_nifti

T2_SHAPE = (32, 32, 16)  # Prostate158 T2 grid (DWI / ADC: 16 x 16 x 16)
BREAST_SHAPE = (24, 24, 12)
N_CASES = 8


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    out = {"prostate158": tmp_path_factory.mktemp("prostate158"), "mri_cls": tmp_path_factory.mktemp("mri_cls")}
    get_task("prostate158").write_synthetic(out["prostate158"], n_cases=N_CASES, shape=T2_SHAPE, seed=0)
    get_task("mri_cls").write_synthetic(out["mri_cls"], n_cases=N_CASES, shape=BREAST_SHAPE, seed=0)
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _resolve(name: str, root: Path, tmp_path: Path):
    return resolve_task_data(get_task(name), data_root=root, cache_dir=tmp_path / "cache")


def test_registered_with_kind():
    assert {"prostate158", "mri_cls"} <= set(list_tasks())
    assert kind_of(get_task("prostate158")) is CLASSIFICATION and kind_of(get_task("brats")) is SEGMENTATION


# ---- Prostate158 layout ------------------------------------------------------------------------------------
def test_prostate158_synthetic_is_the_release_layout(roots):
    """train.csv + valid.csv with the release's columns, paths relative to ROOT, case folders train/<ID>/."""
    root = roots["prostate158"]
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    valid = pd.read_csv(root / "valid.csv", dtype=str, keep_default_na=False)
    assert list(train.columns)[:7] == ["ID", "t2", "adc", "dwi", "t2_anatomy_reader1", "t2_tumor_reader1", "adc_tumor_reader1"]
    assert len(train) + len(valid) == N_CASES and len(valid) >= 1
    assert train["t2"].iloc[0] == "train/020/t2.nii.gz" and train["ID"].iloc[0] == "20"
    assert (train["adc_tumor_reader1"] == "").any() and (train["adc_tumor_reader1"] != "").any()  # no tumour: empty cell


def test_prostate158_round_trip_targets_and_channels(roots):
    """Targets are what was written (tumour cell filled <=> lesion), both classes; series in t2, dwi, adc order."""
    root = roots["prostate158"]
    table = pd.concat([pd.read_csv(root / n, dtype=str, keep_default_na=False) for n in ("train.csv", "valid.csv")])
    written = {f"train-{int(i):03d}": int(bool(cell)) for i, cell in zip(table["ID"], table["adc_tumor_reader1"])}
    task = get_task("prostate158")
    cases = task.find_cases(root)
    assert {c.case_id: c.target for c in cases} == written
    assert set(written.values()) == {0, 1}
    assert [p.name for p in cases[0].images] == ["t2.nii.gz", "dwi.nii.gz", "adc.nii.gz"]
    assert cases[0].label.name == "t2_anatomy_reader1.nii.gz"
    task.check_cases(cases, root=root)


def test_prostate158_dwi_adc_resampled_to_the_t2_grid_by_their_headers(roots):
    """DWI / ADC (half in-plane resolution, stored with flipped x / y) land on the T2 grid where the lesion is:
    inside the T2-grid tumour mask DWI is bright and ADC dark, relative to the rest of the gland."""
    root = roots["prostate158"]
    task = get_task("prostate158")
    case = next(c for c in task.find_cases(root) if c.target == 1)
    dwi_raw = nib.load(str(case.images[1]))
    assert dwi_raw.shape == (16, 16, 16) and dwi_raw.affine[0, 0] < 0  # coarser and LPS-like on disk
    whole = task.load(Case(case_id=case.case_id, images=case.images, label=None, target=case.target))  # no gland crop
    assert whole.image.shape == (3, *T2_SHAPE) and whole.target == 1
    assert whole.spacing == pytest.approx((4.0, 4.0, 6.0))  # 128 x 128 x 96 mm field of view on 32 x 32 x 16 voxels
    lesion = load_nifti(case.images[0].parent / "t2_tumor_reader1.nii.gz")[0] > 0
    gland = load_nifti(case.label)[0] > 0
    rest = gland & ~lesion
    t2, dwi, adc = whole.image
    assert dwi[lesion].mean() > dwi[rest].mean() + 4.0  # z units; about 5 when aligned, below 3.5 when mirrored
    assert adc[lesion].mean() < adc[rest].mean() - 0.5
    assert t2[lesion].mean() < t2[rest].mean()


def test_prostate158_inputs_are_cropped_to_the_gland(roots):
    """With t2_anatomy_reader1 the series are cut to the gland's bounding box plus 10 mm; label zeros, z-scored series."""
    task = get_task("prostate158")
    case = task.find_cases(roots["prostate158"])[0]
    gland = np.argwhere(load_nifti(case.label)[0] > 0)
    margin = np.ceil(10.0 / np.array([4.0, 4.0, 6.0])).astype(int)
    expected = np.minimum(gland.max(0) + 1 + margin, T2_SHAPE) - np.maximum(gland.min(0) - margin, 0)
    volume = task.load(case)
    assert volume.image.shape == (3, *expected) and volume.label is None  # a class per case, no label map
    for x in volume.image:
        inside = x != 0
        assert abs(x[inside].mean()) < 1e-4 and x[inside].std() == pytest.approx(1.0, abs=1e-3)


# ---- mri_cls layout ----------------------------------------------------------------------------------------
def test_mri_cls_round_trip(roots):
    """Channels from the header, classes sorted (benign 0, malignant 1), T2w resampled onto the T1ce grid."""
    root = roots["mri_cls"]
    assert (root / "manifest.csv").read_text().splitlines()[0] == "case,t1ce,t2w,label"
    task = get_task("mri_cls")
    cases = task.find_cases(root)
    assert task.channels == ("t1ce", "t2w") and task.class_names == ("benign", "malignant") and task.num_outputs == 2
    assert [c.target for c in cases] == [i % 2 for i in range(N_CASES)]
    task.check_cases(cases, root=root)
    volume = task.load(cases[1])
    assert volume.image.shape == (2, *BREAST_SHAPE) and volume.target == 1 and volume.spacing == pytest.approx((1.0, 1.0, 2.0))


def _manifest(root: Path, lines: list[str]) -> Path:
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def _rows(root: Path) -> list[str]:
    return (root / "manifest.csv").read_text().splitlines()


def test_mri_cls_integer_labels_map_in_numeric_order(roots, tmp_path):
    root = _copy(roots["mri_cls"], tmp_path / "data")
    lines = _rows(root)
    _manifest(root, [lines[0]] + [line.rsplit(",", 1)[0] + ("," + ("10" if i % 2 else "2")) for i, line in enumerate(lines[1:])])
    task = get_task("mri_cls")
    cases = task.find_cases(root)
    assert task.class_names == ("2", "10") and [c.target for c in cases] == [i % 2 for i in range(N_CASES)]


def test_mri_cls_classes_file_sets_the_order_and_rejects_unknown_labels(roots, tmp_path):
    root = _copy(roots["mri_cls"], tmp_path / "data")
    (root / "classes.txt").write_text("malignant\nbenign\n")
    task = get_task("mri_cls")
    assert task.class_names == () and [c.target for c in task.find_cases(root)][:2] == [1, 0]
    assert task.class_names == ("malignant", "benign")
    lines = _rows(root)
    manifest = _manifest(root, lines[:3] + [lines[3].rsplit(",", 1)[0] + ",malignent"] + lines[4:])
    with pytest.raises(BenchmarkInputError) as info:
        task.find_cases(root)
    assert f"{manifest} line 4" in str(info.value) and "'malignent'" in str(info.value) and "benign" in str(info.value)


def test_mri_cls_single_class_is_an_error(roots, tmp_path):
    root = _copy(roots["mri_cls"], tmp_path / "data")
    lines = _rows(root)
    manifest = _manifest(root, [lines[0]] + [line.rsplit(",", 1)[0] + ",benign" for line in lines[1:]])
    with pytest.raises(BenchmarkInputError, match="at least two classes") as info:
        get_task("mri_cls").find_cases(root)
    assert str(manifest) in str(info.value)


# ---- bad input -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("header, column", [("case,t1ce,t2w,diagnosis", "label"), ("id,t1ce,t2w,label", "case")])
def test_manifest_without_a_required_column(header, column, roots, tmp_path):
    root = _copy(roots["mri_cls"], tmp_path / "data")
    manifest = _manifest(root, [header] + _rows(root)[1:])
    with pytest.raises(BenchmarkInputError) as info:
        get_task("mri_cls").find_cases(root)
    assert str(manifest) in str(info.value) and f"no column {column!r}" in str(info.value)


def test_manifest_row_with_a_missing_value(roots, tmp_path):
    """A row one value short, or with an empty series cell, names the manifest, the line and (for the cell) the column."""
    root = _copy(roots["mri_cls"], tmp_path / "data")
    lines = _rows(root)
    manifest = _manifest(root, lines[:2] + [lines[2].rsplit(",", 1)[0]] + lines[3:])
    with pytest.raises(BenchmarkInputError) as info:
        get_task("mri_cls").find_cases(root)
    assert f"{manifest} line 3" in str(info.value) and "one value per column" in str(info.value)
    case, _t1ce, t2w, label = lines[2].split(",")
    _manifest(root, lines[:2] + [f"{case},,{t2w},{label}"] + lines[3:])
    with pytest.raises(BenchmarkInputError) as info:
        get_task("mri_cls").find_cases(root)
    assert f"{manifest} line 3" in str(info.value) and "'t1ce'" in str(info.value)


def test_missing_series_file_is_named(roots, tmp_path):
    root = _copy(roots["mri_cls"], tmp_path / "data")
    missing = root / "images" / "Breast_003_t2w.nii.gz"
    missing.unlink()
    with pytest.raises(BenchmarkInputError) as info:
        _resolve("mri_cls", root, tmp_path)
    assert str(missing) in str(info.value) and "line 5" in str(info.value)
    root = _copy(roots["prostate158"], tmp_path / "p158")
    missing = root / "train" / "021" / "dwi.nii.gz"
    missing.unlink()
    with pytest.raises(BenchmarkInputError) as info:
        _resolve("prostate158", root, tmp_path)
    assert str(missing) in str(info.value) and "'dwi'" in str(info.value)


def test_prostate158_csv_without_a_series_column(roots, tmp_path):
    root = _copy(roots["prostate158"], tmp_path / "data")
    table = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False).drop(columns=["adc"])
    table.to_csv(root / "train.csv", index=False)
    with pytest.raises(BenchmarkInputError) as info:
        get_task("prostate158").find_cases(root)
    assert str(root / "train.csv") in str(info.value) and "no column 'adc'" in str(info.value)


def test_prostate158_unknown_tumour_label_value(roots, tmp_path):
    root = _copy(roots["prostate158"], tmp_path / "data")
    mask_path = root / "train" / "020" / "adc_tumor_reader1.nii.gz"
    mask, _ = load_nifti(mask_path)
    raw = nib.load(str(mask_path))
    data = np.asarray(raw.dataobj).copy()
    data[data > 0] = 2
    save_nifti(data, mask_path, affine=raw.affine)
    assert mask.any()
    with pytest.raises(BenchmarkInputError) as info:
        _resolve("prostate158", root, tmp_path)
    assert str(mask_path) in str(info.value) and "[2]" in str(info.value) and "[0, 1]" in str(info.value)


def test_prostate158_empty_tumour_mask_is_class_0(roots, tmp_path):
    """A filled tumour cell whose mask has no voxel (the release's empty.nii.gz) is no lesion."""
    root = _copy(roots["prostate158"], tmp_path / "data")
    mask_path = root / "train" / "020" / "adc_tumor_reader1.nii.gz"
    raw = nib.load(str(mask_path))
    save_nifti(np.zeros(raw.shape, dtype=np.uint8), mask_path, affine=raw.affine)
    cases = {c.case_id: c.target for c in get_task("prostate158").find_cases(root)}
    assert cases["train-020"] == 0


def test_series_outside_the_first_series_field_of_view(roots, tmp_path):
    """A header that puts the ADC 1 m away from the T2 is refused before training, naming both files."""
    root = _copy(roots["prostate158"], tmp_path / "data")
    path = root / "train" / "022" / "adc.nii.gz"
    raw = nib.load(str(path))
    moved = raw.affine.copy()
    moved[:3, 3] += 1000.0
    save_nifti(np.asarray(raw.dataobj), path, affine=moved)
    with pytest.raises(BenchmarkInputError, match="does not overlap") as info:
        _resolve("prostate158", root, tmp_path)
    assert str(path) in str(info.value) and str(root / "train" / "022" / "t2.nii.gz") in str(info.value)


@pytest.mark.parametrize("name, relative", [("prostate158", "train/023/adc.nii.gz"), ("mri_cls", "images/Breast_002_t1ce.nii.gz")])
def test_nan_intensity_stops_before_training(name, relative, roots, tmp_path):
    root = _copy(roots[name], tmp_path / "data")
    path = root / relative
    raw = nib.load(str(path))
    data = np.asarray(raw.dataobj, dtype=np.float32).copy()
    data[1, 1, 1] = np.nan
    save_nifti(data, path, affine=raw.affine)
    with pytest.raises(BenchmarkInputError, match="NaN") as info:
        _resolve(name, root, tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name, relative", [("prostate158", "train/024/t2.nii.gz"), ("mri_cls", "images/Breast_004_t2w.nii.gz")])
def test_truncated_file_stops_before_training(name, relative, roots, tmp_path):
    root = _copy(roots[name], tmp_path / "data")
    path = root / relative
    payload = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(payload)[: len(gzip.compress(payload)) // 2])
    with pytest.raises(BenchmarkInputError) as info:
        _resolve(name, root, tmp_path)
    assert str(path) in str(info.value) and "could not be read" in str(info.value)


@pytest.mark.parametrize("name", ["prostate158", "mri_cls"])
def test_empty_or_foreign_data_root(name, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BenchmarkInputError, match="empty") as info:
        _resolve(name, empty, tmp_path)
    assert str(empty) in str(info.value)
    (empty / "notes.txt").write_text("not a dataset")
    with pytest.raises(BenchmarkInputError) as info:
        _resolve(name, empty, tmp_path)
    assert str(empty) in str(info.value) and ("train.csv" if name == "prostate158" else "manifest.csv") in str(info.value)


# ---- metrics -------------------------------------------------------------------------------------------------
def _probs(positive) -> np.ndarray:
    p = np.asarray(positive, dtype=float)
    return np.stack([1 - p, p], axis=1)


def test_auc_and_accuracy_hand_computed():
    """probs [0.9, 0.8, 0.3, 0.1], classes [1, 0, 1, 0]: of the 4 (positive, negative) pairs, 3 are ranked right
    (0.9>0.8, 0.9>0.1, 0.3>0.1; not 0.3>0.8) -> AUC 0.75; argmax right for 0.9 and 0.1 only -> accuracy 0.5."""
    task = get_task("prostate158")
    out = task.set_metrics(_probs([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0]))
    assert out["auc"] == pytest.approx(0.75) and out["accuracy"] == pytest.approx(0.5)
    assert task.case_metrics(np.array([0.2, 0.8]), 1) == {"prob_positive": 0.8, "correct": 1.0, "target": 1.0}
    assert task.case_metrics(np.array([0.6, 0.4]), 1)["correct"] == 0.0


def test_multiclass_auc_is_one_vs_rest_macro():
    """Three classes, classes [0, 1, 2, 0]. Class 0: both its cases (0.7, 0.8) above both others (0.1, 0.3) -> 1;
    class 1: its case (0.4) above all three others (0.2, 0.3, 0.0) -> 1; class 2: its case (0.4) above 0.1 and
    0.2 but below 0.5 -> 2/3. Macro mean (1 + 1 + 2/3) / 3 = 8/9."""
    task = get_task("mri_cls")
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.4, 0.5], [0.3, 0.3, 0.4]])
    probs_2 = np.array([[0.8, 0.0, 0.2]])
    out = task.set_metrics(np.concatenate([probs, probs_2]), np.array([0, 1, 2, 0]))
    assert out["auc"] == pytest.approx(8 / 9)
    assert task.case_metrics(probs[0], 0) == {"correct": 1.0, "target": 0.0, "prob_0": 0.7, "prob_1": 0.2, "prob_2": 0.1}


class _Fixed(nn.Module):
    """Logits from a lookup by the image's first voxel (a stand-in for a trained ClassifierNet)."""

    def forward(self, x):
        p = x.reshape(x.shape[0], -1)[:, 0].clamp(1e-4, 1 - 1e-4)
        return torch.stack([torch.log(1 - p), torch.log(p)], dim=1)


def test_evaluate_classifier_rows_and_single_class_nan():
    """Per-case prob_positive / correct / target rows and set rows (auc, accuracy); a one-class test set: NaN AUC, logged."""
    task = get_task("prostate158")
    volumes = [Volume(case_id=f"c{i}", image=np.full((3, 2, 2, 2), p, np.float32), label=None, target=t)
               for i, (p, t) in enumerate(zip([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0]))]
    logs: list[str] = []
    rows = evaluate(_Fixed(), task, volumes, roi=(2, 2, 2), device="cpu", log=logs.append)
    table = {(r.case_id, r.metric): r.value for r in rows}
    assert table[("c0", "prob_positive")] == pytest.approx(0.9) and table[("c1", "correct")] == 0.0
    assert table[(SET, "auc")] == pytest.approx(0.75) and table[(SET, "accuracy")] == pytest.approx(0.5)
    assert {r.scope for r in rows if r.metric in ("auc", "accuracy")} == {"set"}
    assert not logs
    one_class = [dataclasses.replace(v, target=1) for v in volumes]
    rows = evaluate(_Fixed(), task, one_class, roi=(2, 2, 2), device="cpu", log=logs.append)
    assert math.isnan({(r.case_id, r.metric): r.value for r in rows}[(SET, "auc")])
    assert len(logs) == 1 and "AUC undefined" in logs[0] and "lesion" in logs[0]


# ---- plan, run_job -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plans(roots, tmp_path_factory):
    """Plans with 2-step stages on the tiny synthetic sets (vit crop 32 x 32 x 16)."""
    tmp = tmp_path_factory.mktemp("plans")
    few = lambda recipe: dataclasses.replace(recipe, steps=2, batch_size=2)  # noqa: E731
    profile = dataclasses.replace(
        SMOKE, name="unit", volume_size=T2_SHAPE, rois={**SMOKE.rois, "vit": T2_SHAPE, "swin_unetr": (32, 32, 32)},
        finetune_recipes={k: few(v) for k, v in SMOKE.finetune_recipes.items()},
        smoke_pretrain={k: few(v) for k, v in SMOKE.smoke_pretrain.items()},
    )
    out = {}
    for name, methods in (("prostate158", ["csm", "csi", "ladp"]), ("mri_cls", ["mae3d"])):
        td = resolve_task_data(get_task(name), data_root=roots[name], cache_dir=tmp / "cache")
        out[name] = build_plan(methods=[MethodEntry(m) for m in methods], task_data=[td], fractions=parse_fractions("100%,50%"), seeds=[0], profile=profile,
                               cache_dir=tmp / "cache")
    return out


def test_plan_2d_and_label_aware_methods_are_na_with_reason(plans):
    """CSI (2D U-Net) and LADP (label-aware, 2D) are n/a on Prostate158 with the reason; scratch runs on vit only."""
    groups = {(g.method, g.backbone): g for g in plans["prostate158"].jobs}
    assert "2D" in groups[("csi", "unet2d")].na_reason and "classifies whole volumes" in groups[("csi", "unet2d")].na_reason
    ladp = next(g for (m, _), g in groups.items() if m == "ladp")
    assert ladp.na_reason
    assert groups[("csm", "vit")].na_reason is None and groups[("scratch", "vit")].na_reason is None
    assert [b for m, b in groups if m == "scratch"] == ["vit"]


def test_plan_finetune_aug_is_na_on_classification(roots, tmp_path):
    td = resolve_task_data(get_task("mri_cls"), data_root=roots["mri_cls"], cache_dir=tmp_path / "cache")
    plan = build_plan(methods=[MethodEntry("scratch")], task_data=[td], fractions=parse_fractions("100%"), seeds=[0], profile=SMOKE,
                      cache_dir=tmp_path / "cache", backbone="vit", finetune=FinetuneSettings(augmentation="mixup"))
    assert all(g.na_reason and "mixup" in g.na_reason for g in plan.jobs)


@pytest.mark.parametrize("name, method", [("prostate158", "csm"), ("mri_cls", "mae3d")])
def test_run_job_classification_rows(name, method, plans, monkeypatch):
    """Pretrain (2 steps) on training cases only, fine-tune each fraction on its labelled cases only, and write per-case
    prob_positive / correct / target rows plus set-level auc / accuracy rows."""
    import benchmark.train as train

    job = next(g for g in plans[name].jobs if g.method == method)
    seen: dict[str, list] = {"pretrain": [], "finetune": []}
    real_pretrain, real_finetune = train.pretrain, train.finetune
    monkeypatch.setattr(train, "pretrain", lambda m, volumes, **kw: seen["pretrain"].append([v.case_id for v in volumes]) or real_pretrain(m, volumes, **kw))
    monkeypatch.setattr(train, "finetune",
                        lambda model, task, volumes, **kw: seen["finetune"].append([v.case_id for v in volumes]) or real_finetune(model, task, volumes, **kw))
    results = run_job(job, Hooks(log=lambda _msg: None))

    test_ids = set(job.test_ids)
    assert [sorted(ids) for ids in seen["pretrain"]] == [sorted(job.train_ids + job.val_ids)] and not test_ids & set(seen["pretrain"][0])
    assert [sorted(ids) for ids in seen["finetune"]] == [sorted(c.labeled_ids) for c in job.cells]
    assert all(not test_ids & set(ids) for ids in seen["finetune"])
    assert [r.cell_id for r in results] == [c.cell_id for c in job.cells]
    for result in results:
        assert math.isfinite(result.final_finetune_loss)
        per_case = {(r.case_id, r.metric): r.value for r in result.rows}
        assert {case for case, _ in per_case} == test_ids | {SET}
        for case in test_ids:
            assert 0.0 <= per_case[(case, "prob_positive")] <= 1.0 and per_case[(case, "correct")] in (0.0, 1.0)
        targets = {per_case[(case, "target")] for case in test_ids}
        auc = per_case[(SET, "auc")]
        assert (0.0 <= auc <= 1.0) if targets == {0.0, 1.0} else math.isnan(auc)
        correct = np.mean([per_case[(case, "correct")] for case in test_ids])
        assert per_case[(SET, "accuracy")] == pytest.approx(correct)


def test_synthetic_default_split_tests_both_classes(roots, tmp_path):
    """The fixed hold-out split (seed 0) of the built-in sets holds both classes, so the default run has an AUC."""
    from benchmark.plan import split_cases

    for name in ("prostate158", "mri_cls"):
        task = get_task(name)
        root = tmp_path / name
        task.write_synthetic(root, n_cases=task.synthetic_cases, shape=BREAST_SHAPE if name == "mri_cls" else T2_SHAPE, seed=2024)
        targets = {c.case_id: c.target for c in task.find_cases(root)}
        _, test = split_cases(list(targets), test_fraction=task.test_fraction, split_seed=task.split_seed)
        assert {targets[c] for c in test} == {0, 1}, name


# ---- report ---------------------------------------------------------------------------------------------------
def test_leaderboard_uses_auc_for_classification_and_pairs_it_over_splits(tmp_path):
    """AUC is one value per test set: averaged over splits, and compared with scratch paired over the splits."""
    from scipy.stats import wilcoxon

    from reports.leaderboard import leaderboard_tables, paired_tables, write_leaderboard

    rows, cells = [], []
    for method, aucs in (("csm", [0.8, 0.6]), ("scratch", [0.5, 0.7])):
        for seed, auc in enumerate(aucs):
            cid = f"{method}|{seed}"
            cells.append({"cell_id": cid, "method": method, "backbone": "vit", "task": "prostate158", "fraction": "100%", "n_labeled": 6,
                          "seed": seed, "fold": 0, "status": "done", "reason": "", "label_aware": False, "config_id": "x"})
            base = {"method": method, "backbone": "vit", "task": "prostate158", "fraction": "100%", "n_labeled": 6, "seed": seed,
                    "fold": 0, "cell_id": cid}
            rows += [{**base, "case_id": "__set__", "metric": "auc", "value": auc}, {**base, "case_id": "__set__", "metric": "accuracy", "value": 0.5}]
            rows += [{**base, "case_id": f"c{i}", "metric": "prob_positive", "value": 0.5} for i in range(3)]
    results, cells = pd.DataFrame(rows), pd.DataFrame(cells)
    table = leaderboard_tables(results, cells)["prostate158"]
    assert table.loc["csm (vit)"].iloc[0] == "0.700 (0.141)" and table.loc["scratch (vit)"].iloc[0] == "0.600 (0.141)"
    assert paired_tables(results, cells)["prostate158"].iloc[0, 0] == f"Δ +0.100 (p={wilcoxon([0.3, -0.1]).pvalue:.2g}, n=2)"
    results.to_csv(tmp_path / "results.csv", index=False)
    cells.to_csv(tmp_path / "cells.csv", index=False)
    md = write_leaderboard(tmp_path, title="t")[0].read_text()
    assert "Metric `auc`" in md and "paired over matched splits" in md and "prob_positive" not in md


@pytest.mark.parametrize("backbone, roi", [("vit", (32, 32, 16)), ("swin_unetr", (32, 32, 32))])
def test_classifier_net_pools_backbone_features(backbone, roi):
    """ClassifierNet: [B, C, *roi] -> logits [B, K]; the loss reaches the head and the backbone's encoder."""
    from benchmark.backbones import SMOKE_SIZE, build_backbone
    from benchmark.kinds.classification import ClassifierNet

    torch.manual_seed(0)
    net = ClassifierNet(build_backbone(backbone, in_channels=3, out_channels=2, size=SMOKE_SIZE, roi=roi), backbone_name=backbone, num_classes=2)
    logits = net(torch.randn(2, 3, *roi))
    assert logits.shape == (2, 2)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    encoder = net.backbone.encoder.patch_embed if backbone == "vit" else net.backbone.net.swinViT.patch_embed.proj
    assert net.head.weight.grad.abs().sum() > 0 and encoder.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unet2d"):
        ClassifierNet(build_backbone("unet2d", in_channels=3, out_channels=2, size=SMOKE_SIZE, roi=(32, 32)), backbone_name="unet2d", num_classes=2)
