"""Task kinds: what segmentation, classification and synthesis each bring to fine-tuning and evaluation.

A dataset names its kind (``Task.kind``, a string); ``kind_of(task)`` is the kind that runs it (explicit imports
below register the built-in ones).
"""
from benchmark.kinds.base import KINDS, NetworkPlanning, TaskKind, get_kind, kind_of, register_kind, resolve_finetune_loss, resolve_tta  # noqa: F401
from benchmark.kinds.classification import CLASSIFICATION, ClassificationKind, ClassifierNet  # noqa: F401
from benchmark.kinds.segmentation import SEGMENTATION, SegmentationKind  # noqa: F401
from benchmark.kinds.synthesis import SYNTHESIS, SynthesisKind  # noqa: F401
