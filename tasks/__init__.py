"""Downstream tasks: one file per dataset, registered by name or by reference prefix (explicit imports below)."""
from benchmark.plugins import GROUPS, load_plugins
from tasks.base import TASKS, Case, SegmentationTask, Task, Volume, get_task, list_tasks, plugin_problem, register_task  # noqa: F401
from tasks import brats, btcv, feta, hie, mri_cls, msd_brain, nnunet, prostate158, wmh  # noqa: F401  (registration)
from tasks import synthesis  # noqa: F401,E402  (registration; wraps the tasks above)

load_plugins(GROUPS["task"], TASKS, check=plugin_problem)  # separately installed datasets (entry points), after the suite's own
