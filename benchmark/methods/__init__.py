"""SSL objectives: one file each, registered by name (explicit imports below)."""
from benchmark.methods.base import METHODS, DataSpec, PretextTask, Recipe, get_method, list_methods, register_method  # noqa: F401
from benchmark.methods import csi, csm, dae, scratch  # noqa: F401  (registration)
