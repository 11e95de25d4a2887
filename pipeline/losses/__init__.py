"""Losses for multi-label, long-tailed classification: the asymmetric family and its single-label form.

BCE, focal, ASL, Hill, Poly-1, APL and RAL are settings of one mechanism (:mod:`pipeline.losses._mechanism`);
:mod:`pipeline.losses.multilabel` names the papers and gives each a function and an ``nn.Module``.
:func:`build_loss` builds any of them from a short name.
"""

from ._mechanism import AsymmetricTerms
from .multilabel import (
    AsymmetricFamilyLoss,
    AsymmetricLoss,
    AsymmetricPolynomialLoss,
    BinaryCrossEntropyLoss,
    FocalLoss,
    HillLoss,
    PolyLoss,
    RobustAsymmetricLoss,
    asl_terms,
    asymmetric_family_loss,
    asymmetric_loss,
    asymmetric_polynomial_loss,
    bce_terms,
    binary_cross_entropy_loss,
    focal_loss,
    focal_terms,
    hill_loss,
    hill_terms,
    poly_loss,
    poly_terms,
    ral_terms,
    robust_asymmetric_loss,
)
from .registry import LOSSES, available_losses, build_loss
from .single_label import SingleLabelRobustAsymmetricLoss, single_label_robust_asymmetric_loss

__all__ = [
    "LOSSES",
    "AsymmetricFamilyLoss",
    "AsymmetricLoss",
    "AsymmetricPolynomialLoss",
    "AsymmetricTerms",
    "BinaryCrossEntropyLoss",
    "FocalLoss",
    "HillLoss",
    "PolyLoss",
    "RobustAsymmetricLoss",
    "SingleLabelRobustAsymmetricLoss",
    "asl_terms",
    "asymmetric_family_loss",
    "asymmetric_loss",
    "asymmetric_polynomial_loss",
    "available_losses",
    "bce_terms",
    "binary_cross_entropy_loss",
    "build_loss",
    "focal_loss",
    "focal_terms",
    "hill_loss",
    "hill_terms",
    "poly_loss",
    "poly_terms",
    "ral_terms",
    "robust_asymmetric_loss",
    "single_label_robust_asymmetric_loss",
]
