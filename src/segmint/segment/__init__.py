"""Segmentation: feature transforms, the algorithm registry, model selection, the Segmenter.

See ``segmenter.py`` for the estimator, ``algorithms.py`` for the registry (one place to
add an algorithm), ``selection.py`` for the metrics and the documented selection rule,
and ``transforms.py`` for the fitted feature transform.
"""

from segmint.segment.algorithms import (
    ALGORITHMS,
    NOISE,
    Algorithm,
    NearestAssigner,
    OpticsAssigner,
    ReachabilityAssigner,
    default_sample_size,
    get_algorithm,
    register_algorithm,
)
from segmint.segment.segmenter import DEFAULT_SEARCH, Segmenter
from segmint.segment.selection import SelectionRule, choose, score_labels, stability
from segmint.segment.transforms import DEFAULT_FEATURES, CustomerTransform

__all__ = [
    "ALGORITHMS",
    "DEFAULT_FEATURES",
    "DEFAULT_SEARCH",
    "NOISE",
    "Algorithm",
    "CustomerTransform",
    "NearestAssigner",
    "OpticsAssigner",
    "ReachabilityAssigner",
    "Segmenter",
    "SelectionRule",
    "choose",
    "default_sample_size",
    "get_algorithm",
    "register_algorithm",
    "score_labels",
    "stability",
]
