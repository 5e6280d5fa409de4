"""Task kinds: what segmentation, classification and synthesis each bring to fine-tuning and evaluation."""
from tasks.kinds.base import FinetuneSettings, MetricInfo, MetricRow, TaskKind  # noqa: F401
from tasks.kinds.classification import CLASSIFICATION, ClassificationKind  # noqa: F401
from tasks.kinds.segmentation import SEGMENTATION, SegmentationKind  # noqa: F401
from tasks.kinds.synthesis import SYNTHESIS, SynthesisKind  # noqa: F401
