"""Image-to-image synthesis tasks (CoPer paper III.C, IV.B): translate source series into target series.

A synthesis task wraps a multi-series task (its layout reader, normalisation, synthetic writer, split rules
and labels stay the base task's) and names which series are the generator's input and which its target:

* ``brats_synthesis``: FLAIR + T1 -> T2 on the ``brats`` data (CoPer IV.B: "for brain tumor patients, our
  target is to generate T2 images by using FLAIR and T1 as the input");
* ``synthesis:TASK:SRC1+SRC2->TGT``: the same on any registered multi-series task (e.g.
  ``synthesis:wmh:t1->flair``), built from the ref without registration, as ``nnunet:PATH`` is.

Every case is loaded with ALL of the base task's series (``channels``) so that the Dice-on-synthetic
evaluation (Table III) can feed the base task's segmentation model the real case with its target series
replaced by the synthetic one; the kind (``benchmark/kinds/synthesis.py``) picks the source and target
channels (``source_index`` / ``target_index``). The split (test and validation cases) follows the base
task's rules (``test_fraction``, ``validation``, ``split_seed``), so the test cases are the base task's.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from benchmark.errors import BenchmarkInputError
from tasks.base import Case, Task, Volume, get_task, register_task, register_task_prefix

SYNTHESIS_PREFIX = "synthesis:"  # --tasks synthesis:TASK:SRC1+SRC2->TGT
REF_FORMAT = "synthesis:TASK:SRC1+SRC2->TGT (e.g. synthesis:brats:flair+t1->t2)"
# CoPer Fig. 8 / appendix E: the best lambda1 (pixel-wise vs perceptual loss) per target series.
PAPER_LAMBDA1 = {"t2": 0.70, "flair": 0.55}
DEFAULT_LAMBDA1 = 0.70


class SynthesisTask(Task):
    """A base task's cases, translated from its ``sources`` series to its ``targets`` series (module docstring)."""

    kind = "synthesis"

    def __init__(self, base: Task, sources: tuple[str, ...], targets: tuple[str, ...], *, name: str | None = None) -> None:
        self.base = base
        series = tuple(base.channels)
        lowered = [c.lower() for c in series]
        if len(series) < 2:
            raise BenchmarkInputError(f"task {base.name!r} has a single series {list(series)}; synthesis needs a multi-series task "
                                      f"(expected {REF_FORMAT})")
        unknown = [s for s in (*sources, *targets) if s.lower() not in lowered]
        if unknown:
            raise BenchmarkInputError(f"task {base.name!r} has no series {unknown}; its series are {list(series)}")
        if not sources or not targets:
            raise BenchmarkInputError(f"synthesis on task {base.name!r}: expected at least one source and one target series, got "
                                      f"{list(sources)} -> {list(targets)}")
        overlap = sorted({s.lower() for s in sources} & {t.lower() for t in targets})
        if overlap:
            raise BenchmarkInputError(f"synthesis on task {base.name!r}: series {overlap} are both source and target; expected disjoint sets")
        self.source_index = tuple(lowered.index(s.lower()) for s in sources)
        self.target_index = tuple(lowered.index(t.lower()) for t in targets)
        self.sources = tuple(series[i] for i in self.source_index)
        self.targets = tuple(series[i] for i in self.target_index)
        self._name = name or f"{SYNTHESIS_PREFIX}{base.name}:{'+'.join(self.sources)}->{'+'.join(self.targets)}"
        # What the split, the data and the profiles read: the base task's (same cases, same test set).
        self.channels = series
        self.description = f"{'+'.join(self.sources)} -> {'+'.join(self.targets)} synthesis on {base.name}: {base.description}"
        for attr in ("synthetic_cases", "synthetic_shape", "test_fraction", "validation", "split_seed", "inplane", "default_data_root"):
            setattr(self, attr, getattr(base, attr))
        self.synthetic_modules = (*getattr(base, "synthetic_modules", ()), type(base).__module__)

    # ---- identity ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def ref(self) -> str:
        return self._name  # brats_synthesis, or synthesis:TASK:SRC->TGT (get_task rebuilds both)

    @property
    def num_outputs(self) -> int:
        return len(self.targets)

    @property
    def label_task(self) -> Task | None:
        """The base task when it has label maps (Dice of its segmentation model on synthetic images), else None."""
        return self.base if hasattr(self.base, "label_to_regions") else None

    @property
    def paper_lambda1(self) -> float:
        """CoPer Fig. 8: lambda1 = 0.70 for T2 (brain tumour), 0.55 for FLAIR (MS); 0.70 for other targets."""
        return PAPER_LAMBDA1.get(self.targets[0].lower(), DEFAULT_LAMBDA1)

    # ---- the base task's data -------------------------------------------------------------------
    def find_cases(self, root: Path) -> list[Case]:
        return self.base.find_cases(root)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        return self.base.normalize(image)

    def write_synthetic(self, root: Path, *, n_cases: int, shape: tuple[int, int, int], seed: int) -> None:
        self.base.write_synthetic(root, n_cases=n_cases, shape=shape, seed=seed)

    def check_cases(self, cases: list[Case], *, root: Path) -> None:
        self.base.check_cases(cases, root=root)

    def load(self, case: Case) -> Volume:
        return self.base.load(case)

    def layout_help(self) -> str:
        return self.base.layout_help()

    @classmethod
    def from_ref(cls, ref: str) -> "SynthesisTask":
        """``synthesis:TASK:SRC1+SRC2->TGT`` -> the task; errors name the ref, the task and its series."""
        match = re.fullmatch(rf"{SYNTHESIS_PREFIX}([^:]+):([^:>]+)->([^:>]+)", ref.strip())
        if not match:
            raise BenchmarkInputError(f"--tasks {ref!r}: expected {REF_FORMAT}")
        base_name, sources, targets = match.groups()
        if base_name.startswith(SYNTHESIS_PREFIX.rstrip(":")) or base_name == "brats_synthesis":
            raise BenchmarkInputError(f"--tasks {ref!r}: the base task must be a registered multi-series task, not a synthesis task")
        base = get_task(base_name)
        if isinstance(base, SynthesisTask):
            raise BenchmarkInputError(f"--tasks {ref!r}: the base task must not itself be a synthesis task")
        split = lambda text: tuple(s.strip() for s in text.split("+") if s.strip())  # noqa: E731
        return cls(base, split(sources), split(targets))


@register_task_prefix(SYNTHESIS_PREFIX, usage="synthesis:TASK:SRC1+SRC2->TGT", kind="synthesis",
                      help="SRC series -> TGT series on any multi-series task, e.g. synthesis:wmh:t1->flair")
def synthesis_task(ref: str) -> SynthesisTask:
    return SynthesisTask.from_ref(ref)


@register_task("brats_synthesis")
class BraTSSynthesis(SynthesisTask):
    """FLAIR + T1 -> T2 on BraTS (CoPer IV.B, Table III); the brats task's data, split and labels."""

    description = "FLAIR + T1 -> T2 synthesis on BraTS subject folders (the brats task's layout)"
    channels = ("t1", "t1ce", "t2", "flair")  # class-level for --list; the instance's come from brats

    def __init__(self) -> None:
        super().__init__(get_task("brats"), ("flair", "t1"), ("t2",), name="brats_synthesis")
