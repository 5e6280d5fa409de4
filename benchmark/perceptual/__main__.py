"""``python -m benchmark.perceptual``: see ``benchmark.perceptual.cli``."""
import sys

from benchmark.perceptual.cli import main

sys.exit(main())
