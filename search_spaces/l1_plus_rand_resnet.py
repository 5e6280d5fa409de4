"""``l1+rand_resnet``: the weight ``lambda1`` of L1 against the CoPer loss (eq. 5), searched as CoPer Fig. 8 does
(see ``search_spaces/_synthesis.py`` for the grid and its sources)."""
from __future__ import annotations

from search_spaces._synthesis import space  # noqa: F401
