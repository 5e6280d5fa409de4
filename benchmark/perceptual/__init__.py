"""CoPer perceptual metric, loss and 2AFC / expert-agreement evaluation (Li et al., CoPer paper III.B-C, IV.A).

``python -m benchmark.perceptual distance A.nii.gz B.nii.gz`` / ``twoafc [ROOT]``; see ``cli.py``.
"""
from benchmark.perceptual.metric import (  # noqa: F401
    CoPerLoss, FeatureExtractor, coper_distance, learn_weights, load_extractor, random_extractor, triplet_distances,
)
from benchmark.perceptual.twoafc import Triplet, expert_agreement, read_ratings, read_triplets, twoafc_score  # noqa: F401
