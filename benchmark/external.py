"""Checkpoints made elsewhere as leaderboard rows (``--pretrained NAME=PATH[:backbone=B]``): read once by the planner
(hashed, its backbone found, its keys mapped, its fit to every task's network checked before any compute) and again by
the worker (hash checked, the same mapping), which fine-tunes from it as scratch trains from its initialisation.

What a file may hold (``benchmark.backbones.transfer.read_external``): a plain state dict, ``{"state_dict": ...}``,
``{"model": ...}``, ``{"network_weights": ...}``, with DDP's ``module.`` or an SSL wrapper's ``backbone.`` before its
keys; MONAI's Swin-UNETR self-supervised weights (``model_swinvit.pt``) for ``swin_unetr``; or a file of this suite's
own pretraining cache (``<cache>/pretrained/<key>.pt``), whose Job names its backbone and method. Files are read with
``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary pickled code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmark import storage
from benchmark.backbones import BACKBONES, list_backbones
from benchmark.backbones.transfer import ExternalState, TransferError, external_model, read_external
from benchmark.errors import BenchmarkInputError
from benchmark.job import ExternalCheckpoint, Job
from benchmark.methods import METHODS, get_method
from benchmark.profiles import Profile


@dataclass(frozen=True)
class PretrainedEntry:
    """An external checkpoint to compare (``--pretrained NAME=PATH[:backbone=B]``): its row, its file, its backbone
    (None: from the file, else ``--backbone``, else the one backbone its weights fit best)."""

    name: str
    location: str  # a local path (absolute) or a storage URI
    backbone: str | None = None


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checkpoint read by the planner: what every task's Job of its row shares."""

    entry: PretrainedEntry
    sha256: str
    backbone: str
    weights: ExternalState
    path: str  # where workers read it
    encoder_only: bool


def load(location: str, *, what: str) -> Any:
    """``torch.load(location, weights_only=True)`` on CPU; a file that is not one is a ``BenchmarkInputError`` naming it."""
    try:
        return storage.load_torch(location, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BenchmarkInputError(f"{what}: no file {location}") from None
    except Exception as exc:  # noqa: BLE001 - pickle, zip and weights-only errors alike: the message names the file
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise BenchmarkInputError(f"{what}: {location} cannot be read as a weights-only torch file ({type(exc).__name__}: {first}); "
                                  "expected a state dict saved with torch.save (a checkpoint that also pickles objects, e.g. its "
                                  "arguments, can be re-saved as torch.save(ckpt['state_dict'], path))") from None


def resolve(entry: PretrainedEntry, *, profile: Profile, backbone: str | None, storage_root: str) -> ResolvedCheckpoint:
    """Read ``entry``'s file once: its hash, its backbone (``entry.backbone``, else the suite Job's that made it, else
    ``backbone`` (--backbone), else the registered backbone most of its tensors fit by name and shape), its weights
    mapped onto that backbone, and where the workers read it (on a remote ``storage_root``: ``external/<sha256>.pt``
    there, copied by the run layer, ``publish``)."""
    what = f"--pretrained {entry.name}={entry.location}"
    sha = storage.sha256(entry.location)
    obj = load(entry.location, what=what)
    suite_job = obj.get("job") if isinstance(obj, dict) and isinstance(obj.get("job"), dict) and "backbone" in obj else None
    chosen = entry.backbone or (suite_job or {}).get("backbone") or backbone
    if chosen is None:
        chosen = _best_fit(obj, profile=profile, what=what)
    if chosen not in BACKBONES:
        raise BenchmarkInputError(f"{what}: unknown backbone {chosen!r}; expected one of: {', '.join(list_backbones())}")
    try:
        weights = read_external(obj, chosen, size=profile.backbone_size, roi=profile.rois[chosen])
    except TransferError as exc:
        raise BenchmarkInputError(f"{what}: {exc}") from None
    method = (suite_job or {}).get("method")
    encoder_only = bool(method in METHODS and get_method(method).transfer == "encoder")
    path = entry.location
    if storage.is_uri(storage_root) and not storage.is_uri(entry.location):  # workers on other nodes read the storage
        path = storage.join(storage_root, "external", f"{sha}.pt")
    return ResolvedCheckpoint(entry=entry, sha256=sha, backbone=chosen, weights=weights, path=path, encoder_only=encoder_only)


def _best_fit(obj: Any, *, profile: Profile, what: str) -> str:
    """The backbone that names most of the checkpoint's tensors (after ``read_external``'s mapping); one, or an error.
    Names, not shapes: a checkpoint of the right family at another width is then reported by the fit check with the
    mismatched shapes, rather than as "no backbone"."""
    scores = {}
    for name in list_backbones():
        roi = profile.rois.get(name)
        if roi is None:
            continue
        try:
            weights = read_external(obj, name, size=profile.backbone_size, roi=roi)
        except TransferError as exc:
            raise BenchmarkInputError(f"{what}: {exc}") from None
        scores[name] = len(weights.state) - len(weights.unmatched)
    best = max(scores.values(), default=0)
    winners = [name for name, score in scores.items() if score == best]
    if best == 0 or len(winners) > 1:
        found = ", ".join(f"{n}: {s}" for n, s in sorted(scores.items(), key=lambda x: -x[1]))
        raise BenchmarkInputError(f"{what}: cannot tell which backbone it is for (tensors named as each backbone names them: "
                                  f"{found}); expected NAME=PATH:backbone=B with B one of {', '.join(list_backbones())}")
    return winners[0]


def for_task(resolved: ResolvedCheckpoint, task, *, profile: Profile) -> ExternalCheckpoint:
    """What the checkpoint gives ``task``'s fine-tuning network (the fit check: a ``BenchmarkInputError`` naming the
    file, the first mismatched keys and both shapes, before any compute)."""
    entry = resolved.entry
    try:
        _, report = external_model(resolved.backbone, resolved.weights, task=task, size=profile.backbone_size,
                                   roi=profile.rois[resolved.backbone], encoder_only=resolved.encoder_only)
    except TransferError as exc:
        raise BenchmarkInputError(f"--pretrained {entry.name}={entry.location}: {exc}") from None
    return ExternalCheckpoint(name=entry.name, source=entry.location, path=resolved.path, sha256=resolved.sha256,
                              layout=resolved.weights.layout, transfer=report, encoder_only=resolved.encoder_only)


def publish(jobs: list[Job]) -> list[str]:
    """Copy each external checkpoint to where its Jobs' workers read it (``ExternalCheckpoint.path`` on a remote
    storage), once; returns the copies made."""
    made = []
    for spec in {job.external.path: job.external for job in jobs if job.external is not None}.values():
        if spec.path != spec.source and not storage.exists(spec.path):
            storage.copy(spec.source, spec.path)
            made.append(spec.path)
    return made


def weights_of(job: Job) -> ExternalState:
    """The worker's side: the Job's checkpoint, checked against the planner's hash and mapped onto its backbone."""
    spec = job.external
    found = storage.sha256(spec.path)
    if found != spec.sha256:
        raise BenchmarkInputError(f"--pretrained {spec.name}: {spec.path} changed since the run was planned (sha256 {found[:12]}..., "
                                  f"planned {spec.sha256[:12]}...); run the command again to plan with the new file")
    obj = load(spec.path, what=f"--pretrained {spec.name}")
    return read_external(obj, job.backbone, size=job.backbone_size, roi=job.roi)

