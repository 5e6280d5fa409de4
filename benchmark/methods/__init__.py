"""SSL objectives: one file each, registered by name (explicit imports below)."""
from benchmark.methods.base import (  # noqa: F401
    METHOD_ALIASES, METHODS, DataSpec, PretextTask, Recipe, get_method, list_methods, plugin_problem, register_method,
    resolve_method_alias,
)
from benchmark.methods import (  # noqa: F401  (registration)
    contrastive,
    csi,
    csm,
    dae,
    ddp,
    denoising_ae,
    dino,
    dsi,
    inpainting,
    intensity_shift,
    ladp,
    mae,
    mae3d,
    pixel_shuffle,
    restart,
    rotation,
    scratch,
    simsiam,
    super_resolution,
    swav,
    swin_unetr_ssl,
    synthesis_losses,
    wsi,
)
from benchmark.plugins import GROUPS, load_plugins  # noqa: E402

load_plugins(GROUPS["method"], METHODS, check=plugin_problem)  # separately installed methods (entry points), after the suite's own
