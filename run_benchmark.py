#!/usr/bin/env python
"""Entry point: ``python run_benchmark.py --methods csi,dae,csm --tasks brats,btcv`` (see README)."""
import sys

from benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
