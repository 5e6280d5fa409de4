"""DINO (Caron et al. 2021) as the CSM paper's baseline: teacher temperature, teacher momentum, head output size and
the number of local views.

The CSM paper tunes none of DINO's settings (IV.A names the method only), so the ranges come from DINO's code
(facebookresearch/dino ``main_dino.py`` help texts and README), whose defaults are the Config's:

* ``teacher_temp`` τ_t ∈ {0.04, 0.05, 0.06, 0.07}: "0.04 works well in most cases ... anything above 0.07 is unstable.
  We recommend starting with the default value of 0.04 and increase this slightly if needed" (``--teacher_temp``).
* ``momentum_teacher`` λ ∈ {0.99, 0.996, 0.9995}: the default 0.996 and the code's advice "a higher value with small
  batches: for example use 0.9995 with batch size of 256" (the CSM batch is 6); 0.99 the other side.
* ``out_dim`` K ∈ {4096, 16384, 65536}: "For complex and large datasets large values (like 65k) work well"
  (``--out_dim``); a medical set is far smaller than ImageNet, so smaller K too.
* ``local_crops_number`` ∈ {2, 6, 8, 10}: the code's default 8, and the 2, 6 and 10 local views DINO's multi-crop
  comparisons use.
* Not searched: the crop scales and sizes, the student temperature (0.1) and the centre momentum (0.9), which the
  code gives as fixed; the pretraining recipe (``recipe``: DINO's optimiser over the CSM paper's length, IV.A).
"""
from __future__ import annotations

TEACHER_TEMPS = [0.04, 0.05, 0.06, 0.07]
MOMENTA = [0.99, 0.996, 0.9995]
OUT_DIMS = [4096, 16384, 65536]
LOCAL_CROPS = [2, 6, 8, 10]


def space(trial) -> dict:
    return {
        "teacher_temp": trial.suggest_categorical("teacher_temp", TEACHER_TEMPS),
        "momentum_teacher": trial.suggest_categorical("momentum_teacher", MOMENTA),
        "out_dim": trial.suggest_categorical("out_dim", OUT_DIMS),
        "local_crops_number": trial.suggest_categorical("local_crops_number", LOCAL_CROPS),
    }
