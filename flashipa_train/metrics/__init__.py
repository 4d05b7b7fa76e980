"""Structure metrics of generated backbones that need no external model weights (issue 7).

Inputs are backbones [L, 4, 3] (N, CA, C, O) as numpy arrays or torch tensors, dicts as
`flashipa_train.data.example_store.load_example` returns, or `Backbone`s; see `backbone_input`.
"""

from flashipa_train.metrics.atom_array import backbone_to_atom_array
from flashipa_train.metrics.backbone_input import Backbone, as_backbone
from flashipa_train.metrics.clashes import CLASH_DISTANCE, ca_clash_pairs, clashes_per_100_residues
from flashipa_train.metrics.compactness import ca_radius_of_gyration, expected_radius_of_gyration, rg_ratio
from flashipa_train.metrics.designability import designability
from flashipa_train.metrics.local_geometry import bond_deviations, ca_ca_distance_stats, consecutive_ca_distances
from flashipa_train.metrics.sample_metrics import backbone_metrics, sample_metrics, summarize
from flashipa_train.metrics.secondary_structure import sse_fractions, sse_labels
from flashipa_train.metrics.structure_sources import iter_backbones
from flashipa_train.metrics.tm_score import (
    aligned_tm_score,
    diversity_by_length,
    novelty,
    pairwise_tm_diversity,
    pairwise_tm_scores,
    structural_tm_score,
    tm_score,
)
from flashipa_train.metrics.training_set import metrics_of_training_set

__all__ = [
    "Backbone",
    "CLASH_DISTANCE",
    "aligned_tm_score",
    "as_backbone",
    "backbone_metrics",
    "backbone_to_atom_array",
    "bond_deviations",
    "ca_ca_distance_stats",
    "ca_clash_pairs",
    "ca_radius_of_gyration",
    "clashes_per_100_residues",
    "consecutive_ca_distances",
    "designability",
    "diversity_by_length",
    "expected_radius_of_gyration",
    "iter_backbones",
    "metrics_of_training_set",
    "novelty",
    "pairwise_tm_diversity",
    "pairwise_tm_scores",
    "rg_ratio",
    "sample_metrics",
    "sse_fractions",
    "sse_labels",
    "structural_tm_score",
    "summarize",
    "tm_score",
]
