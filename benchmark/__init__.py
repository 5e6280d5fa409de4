"""medssl-bench: pretrain SSL objectives, fine-tune on medical segmentation tasks, compare.

Importing this package is cheap; heavy modules (torch, monai, ray) load on use.
"""
__version__ = "0.1.0"
