"""Multi-label losses for long-tailed classification, all settings of one asymmetric mechanism.

Papers, by title and arXiv id:

- Focal loss: Lin et al., "Focal Loss for Dense Object Detection", arXiv 1708.02002.
- ASL: Ridnik et al., "Asymmetric Loss For Multi-Label Classification", arXiv 2009.14119.
- Hill: Zhang et al., "Simple and Robust Loss Design for Multi-Label Learning with Missing Labels",
  arXiv 2112.07368.
- Poly-1: Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions",
  arXiv 2204.12511.
- APL: Huang et al., "Asymmetric Polynomial Loss for Multi-Label Classification", arXiv 2304.05361.
- RAL: Park et al., "Robust Asymmetric Loss for Multi-Label Long-Tailed Learning", arXiv 2308.05542.

Every loss here is :func:`asymmetric_family_loss` with an :class:`~pipeline.losses._mechanism.AsymmetricTerms`
setting (the shared formula is in that module's docstring): no loss has its own copy of the arithmetic. Each
comes as a function and as an ``nn.Module`` with the project-wide arguments ``reduction`` ("none", "mean",
"sum"), ``weight`` (a (C,) per-class weight), ``ignore_value`` (target value that is not counted, -1.0 by
default; NaN targets are never counted) and ``fast`` (closed-form gradient, see below).

Inputs are ``logits`` and ``targets`` of shape (B, C); targets hold 1.0, 0.0, NaN or the ignore value. An element
that is not counted gets a zero loss and a zero gradient; ``"mean"`` divides the sum by the number of counted
elements (0 when there is none, with a zero gradient). The bundles use ``"mean"``. The loss is computed in
float32 for half-precision logits (float64 for float64 logits), including under ``torch.autocast``.

With ``fast=True`` (default) the loss and its closed-form derivative are computed together in one
``torch.autograd.Function``, which makes the backward pass a single multiplication; ``fast=False`` states the
same formula with autograd-differentiable operations (slower, supports higher-order derivatives). When no gradient
is wanted (evaluation, ``torch.no_grad``) the composed computation is used either way, being the cheaper one then.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from ._common import (
    as_class_vector,
    binary_targets,
    check_finite,
    check_ignore_value,
    check_logits_targets,
    check_non_negative,
    check_reduction,
    compute_dtype,
    reduction_scale,
)
from ._mechanism import AsymmetricTerms, composed_loss, fast_loss

logger = logging.getLogger(__name__)

ClassVector = torch.Tensor | Sequence[float] | None


def asymmetric_family_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    terms: AsymmetricTerms,
    *,
    weight: ClassVector = None,
    pos_scale: torch.Tensor | Sequence[float] | float | None = None,
    neg_scale: float | None = None,
    reduction: str = "mean",
    ignore_value: float | None = -1.0,
    fast: bool = True,
) -> torch.Tensor:
    """Any member of the asymmetric family, selected by ``terms``.

    Args:
        logits: (B, C) logits, any floating dtype.
        targets: (B, C) targets: 1.0, 0.0, NaN or ``ignore_value``.
        terms: the member of the family.
        weight: optional (C,) per-class weight of both branches.
        pos_scale: optional scalar or (C,) extra weight of the positive branch.
        neg_scale: optional scalar extra weight of the negative branch.
        reduction: "none" (element-wise, zero where not counted), "mean" (over counted elements) or "sum".
        ignore_value: target value that is not counted; ``None`` counts every non-NaN target.
        fast: use the closed-form gradient (:func:`~pipeline.losses._mechanism.fast_loss`).

    Returns:
        The loss: a scalar, or (B, C) for ``"none"``; float32 for half-precision logits.

    Raises:
        ValueError: on mismatched shapes, targets other than 0/1/NaN/ignore value, an unknown reduction or a
            class vector without one entry per class.
    """
    check_reduction(reduction)
    ignore_value = check_ignore_value(ignore_value)
    check_logits_targets(logits, targets)
    weight = weight if weight is None or isinstance(weight, torch.Tensor) else as_class_vector("weight", weight)
    if pos_scale is not None and not isinstance(pos_scale, (torch.Tensor, float, int)):
        pos_scale = as_class_vector("pos_weight", pos_scale)
    prepared = binary_targets(
        targets,
        compute_dtype(logits),
        ignore_value=ignore_value,
        weight=weight,
        pos_scale=pos_scale,
        neg_scale=neg_scale,
    )
    scale = reduction_scale(reduction, prepared.count)
    if fast:
        return fast_loss(
            logits, prepared.is_pos, prepared.is_neg, prepared.pos_weight, prepared.neg_weight, terms, scale
        )
    return composed_loss(logits, prepared.pos_weight, prepared.neg_weight, terms, scale)


# ----------------------------------------------------------------------------------------------------------------
# Settings of the family.


def bce_terms() -> AsymmetricTerms:
    """Binary cross-entropy: every extra term off."""
    return AsymmetricTerms()


def focal_terms(gamma: float = 2.0) -> AsymmetricTerms:
    """Focal loss: the same focusing exponent gamma on both branches."""
    gamma = check_non_negative("gamma", gamma)
    return AsymmetricTerms(gamma_pos=gamma, gamma_neg=gamma)


def asl_terms(gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05) -> AsymmetricTerms:
    """ASL: separate focusing exponents and the probability margin m for negatives."""
    return AsymmetricTerms(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip)


def hill_terms(lamb: float = 1.5, margin: float = 1.0, gamma: float = 2.0) -> AsymmetricTerms:
    """Hill: focal margin loss for positives, (lambda - p) p^2 for negatives."""
    gamma = check_non_negative("gamma", gamma)
    return AsymmetricTerms(gamma_pos=gamma, margin=margin, neg_log=False, neg_poly=(1.0,), neg_factor="hill", lamb=lamb)


def poly_terms(epsilon: float = 1.0, gamma: float = 0.0) -> AsymmetricTerms:
    """Poly-1: -log p_t + epsilon (1 - p_t) on both branches (with gamma > 0, the focal Poly-1 form)."""
    epsilon = check_finite("epsilon", epsilon)
    gamma = check_non_negative("gamma", gamma)
    return AsymmetricTerms(gamma_pos=gamma, gamma_neg=gamma, pos_poly=(0.0, epsilon), neg_poly=(0.0, epsilon))


def ral_terms(
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    epsilon_pos: float = 1.0,
    epsilon_pos_pow: float = -2.5,
    epsilon_neg: float = 0.0,
    lamb: float = 1.5,
    hill: bool = True,
) -> AsymmetricTerms:
    """RAL (``hill=True``) or APL (``hill=False``) in the reference form.

    The positive base -log p - eps1 (1 - p) - (eps2 / 2) (1 - p)^2 is the polynomial with c_1 = -eps1,
    c_2 = -eps2 / 2; the negative base -log q - eps- q = -log q - eps- + eps- p_m has d_0 = -eps-, d_1 = eps-.
    """
    epsilon_pos = check_finite("epsilon_pos", epsilon_pos)
    epsilon_pos_pow = check_finite("epsilon_pos_pow", epsilon_pos_pow)
    epsilon_neg = check_finite("epsilon_neg", epsilon_neg)
    return AsymmetricTerms(
        gamma_pos=gamma_pos,
        gamma_neg=gamma_neg,
        clip=clip,
        pos_poly=(0.0, -epsilon_pos, -0.5 * epsilon_pos_pow),
        neg_poly=(-epsilon_neg, epsilon_neg),
        neg_factor="ral" if hill else "none",
        lamb=lamb,
    )


def _check_alpha(alpha: float | None) -> float | None:
    if alpha is None:
        return None
    alpha = check_finite("alpha", alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] or None, got {alpha!r}.")
    return alpha


# ----------------------------------------------------------------------------------------------------------------
# Functional forms.


def binary_cross_entropy_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    pos_weight: ClassVector = None,
    weight: ClassVector = None,
    reduction: str = "mean",
    ignore_value: float | None = -1.0,
    fast: bool = True,
) -> torch.Tensor:
    """Binary cross-entropy with logits and masking of unknown labels; see :class:`BinaryCrossEntropyLoss`."""
    return asymmetric_family_loss(
        logits, targets, bce_terms(), weight=weight, pos_scale=pos_weight, reduction=reduction,
        ignore_value=ignore_value, fast=fast,
    )  # fmt: skip


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | None = None,
    weight: ClassVector = None,
    reduction: str = "mean",
    ignore_value: float | None = -1.0,
    fast: bool = True,
) -> torch.Tensor:
    """Sigmoid focal loss; see :class:`FocalLoss`."""
    alpha = _check_alpha(alpha)
    return asymmetric_family_loss(
        logits, targets, focal_terms(gamma), weight=weight,
        pos_scale=alpha, neg_scale=None if alpha is None else 1.0 - alpha,
        reduction=reduction, ignore_value=ignore_value, fast=fast,
    )  # fmt: skip


def asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    weight: ClassVector = None,
    reduction: str = "mean",
    ignore_value: float | None = -1.0,
    fast: bool = True,
) -> torch.Tensor:
    """Asymmetric loss (ASL); see :class:`AsymmetricLoss`."""
    return asymmetric_family_loss(
        logits, targets, asl_terms(gamma_pos, gamma_neg, clip), weight=weight, reduction=reduction,
        ignore_value=ignore_value, fast=fast,
    )  # fmt: skip


def hill_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    lamb: float = 1.5,
    margin: float = 1.0,
    gamma: float = 2.0,
    weight: ClassVector = None,
    reduction: str = "mean",
    ignore_value: float | None = -1.0,
    fast: bool = True,
) -> torch.Tensor:
    """Hill loss; see :class:`HillLoss`."""
    return asymmetric_family_loss(
        logits, targets, hill_terms(lamb, margin, gamma), weight=weight, reduction=reduction,
        ignore_value=ignore_value, fast=fast,
    )  # fmt: skip


def poly_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    epsilon: float = 1.0,
    gamma: float = 0.0,
    weight: ClassVector = None,
    reduction: str = "mean",
    ignore_value: float | None = -1.0,
    fast: bool = True,
) -> torch.Tensor:
    """Poly-1 loss in its binary cross-entropy form; see :class:`PolyLoss`."""
    return asymmetric_family_loss(
        logits, targets, poly_terms(epsilon, gamma), weight=weight, reduction=reduction,
        ignore_value=ignore_value, fast=fast,
    )  # fmt: skip


def asymmetric_polynomial_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    epsilon_pos: float = 1.0,
    epsilon_pos_pow: float = -2.5,
    epsilon_neg: float = 0.0,
    weight: ClassVector = None,
    reduction: str = "mean",
    ignore_value: float | None = -1.0,
    fast: bool = True,
) -> torch.Tensor:
    """Asymmetric polynomial loss (APL); see :class:`AsymmetricPolynomialLoss`."""
    terms = ral_terms(gamma_pos, gamma_neg, clip, epsilon_pos, epsilon_pos_pow, epsilon_neg, hill=False)
    return asymmetric_family_loss(
        logits, targets, terms, weight=weight, reduction=reduction, ignore_value=ignore_value, fast=fast
    )


def robust_asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    epsilon_pos: float = 1.0,
    epsilon_pos_pow: float = -2.5,
    epsilon_neg: float = 0.0,
    lamb: float = 1.5,
    hill: bool = True,
    weight: ClassVector = None,
    reduction: str = "mean",
    ignore_value: float | None = -1.0,
    fast: bool = True,
) -> torch.Tensor:
    """Robust asymmetric loss (RAL); see :class:`RobustAsymmetricLoss`."""
    terms = ral_terms(gamma_pos, gamma_neg, clip, epsilon_pos, epsilon_pos_pow, epsilon_neg, lamb, hill)
    return asymmetric_family_loss(
        logits, targets, terms, weight=weight, reduction=reduction, ignore_value=ignore_value, fast=fast
    )


# ----------------------------------------------------------------------------------------------------------------
# Modules.


class AsymmetricFamilyLoss(nn.Module):
    """Base module: holds an :class:`AsymmetricTerms` setting and the project-wide loss options.

    Args:
        terms: the member of the family.
        reduction: "none", "mean" (over counted elements; what the bundles use) or "sum".
        weight: optional (C,) per-class weight (tensor or list), applied to both branches.
        ignore_value: target value that is not counted (-1.0 by default); ``None`` counts all non-NaN targets.
        fast: compute the gradient in closed form in the forward pass (first derivatives only).
        pos_scale: optional scalar or (C,) extra weight of the positive branch.
        neg_scale: optional scalar extra weight of the negative branch.

    Raises:
        ValueError: for an unknown reduction, an ignore value of 0 or 1, or a malformed class vector.
    """

    short_name: ClassVar[str] = "family"

    def __init__(
        self,
        terms: AsymmetricTerms,
        *,
        reduction: str = "mean",
        weight: ClassVector = None,
        ignore_value: float | None = -1.0,
        fast: bool = True,
        pos_scale: ClassVector | float = None,
        neg_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.terms = terms
        self.reduction = check_reduction(reduction)
        self.ignore_value = check_ignore_value(ignore_value)
        self.fast = bool(fast)
        self.register_buffer("weight", as_class_vector("weight", weight), persistent=False)
        if pos_scale is None or isinstance(pos_scale, (float, int)):
            self.register_buffer("pos_scale", None, persistent=False)
            self._pos_scale_value = pos_scale
        else:
            self.register_buffer("pos_scale", as_class_vector("pos_weight", pos_scale), persistent=False)
            self._pos_scale_value = None
        self.neg_scale = neg_scale

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (B, C) against ``targets`` (B, C); see :func:`asymmetric_family_loss`."""
        pos_scale = self.pos_scale if self.pos_scale is not None else self._pos_scale_value
        return asymmetric_family_loss(
            logits, targets, self.terms, weight=self.weight, pos_scale=pos_scale, neg_scale=self.neg_scale,
            reduction=self.reduction, ignore_value=self.ignore_value, fast=self.fast,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{self.terms}, reduction={self.reduction!r}, ignore_value={self.ignore_value}, fast={self.fast}"


class BinaryCrossEntropyLoss(AsymmetricFamilyLoss):
    """Binary cross-entropy with logits that skips unknown labels.

    ``L+ = -log p``, ``L- = -log(1 - p)``, with ``log p`` computed as logsigmoid. Equal to
    ``torch.nn.BCEWithLogitsLoss`` on fully labelled targets, values and gradients.

    Args:
        pos_weight: optional (C,) weight of the positive term per class (as in ``BCEWithLogitsLoss``).
        reduction: "none", "mean" (over counted elements) or "sum".
        weight: optional (C,) per-class weight of both terms.
        ignore_value: target value that is not counted; NaN targets are never counted.
        fast: closed-form gradient in the forward pass.
    """

    short_name = "bce"

    def __init__(
        self,
        pos_weight: ClassVector = None,
        reduction: str = "mean",
        weight: ClassVector = None,
        ignore_value: float | None = -1.0,
        fast: bool = True,
    ) -> None:
        super().__init__(
            bce_terms(), reduction=reduction, weight=weight, ignore_value=ignore_value, fast=fast,
            pos_scale=as_class_vector("pos_weight", pos_weight),
        )  # fmt: skip


class FocalLoss(AsymmetricFamilyLoss):
    """Sigmoid focal loss (Lin et al., arXiv 1708.02002).

    With ``p_t = p`` for positives and ``1 - p`` for negatives and ``alpha_t = alpha`` / ``1 - alpha``::

        FL = -alpha_t * (1 - p_t)^gamma * log p_t

    Paper defaults (for dense detection) are gamma = 2 and alpha = 0.25; here ``alpha`` defaults to ``None``
    (no class balancing), so that gamma = 0 is binary cross-entropy.

    Args:
        gamma: focusing exponent gamma >= 0.
        alpha: weight of positives in [0, 1] (negatives get 1 - alpha), or ``None``.
        reduction, weight, ignore_value, fast: as in :class:`AsymmetricFamilyLoss`.
    """

    short_name = "focal"

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | None = None,
        reduction: str = "mean",
        weight: ClassVector = None,
        ignore_value: float | None = -1.0,
        fast: bool = True,
    ) -> None:
        alpha = _check_alpha(alpha)
        super().__init__(
            focal_terms(gamma), reduction=reduction, weight=weight, ignore_value=ignore_value, fast=fast,
            pos_scale=alpha, neg_scale=None if alpha is None else 1.0 - alpha,
        )  # fmt: skip


class AsymmetricLoss(AsymmetricFamilyLoss):
    """Asymmetric loss, ASL (Ridnik et al., arXiv 2009.14119).

    With the shifted probability ``p_m = max(p - m, 0)``::

        L+ = -(1 - p)^gamma+ * log p
        L- = -p_m^gamma- * log(1 - p_m)

    Defaults are the paper's recommended setting gamma+ = 0, gamma- = 4, m = 0.05 (the authors' code defaults
    to gamma+ = 1). The focusing factors are part of the graph (gradients flow through them).

    Args:
        gamma_pos: gamma+ >= 0.
        gamma_neg: gamma- >= 0.
        clip: m in [0, 1).
        reduction, weight, ignore_value, fast: as in :class:`AsymmetricFamilyLoss`.
    """

    short_name = "asl"

    def __init__(
        self,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        reduction: str = "mean",
        weight: ClassVector = None,
        ignore_value: float | None = -1.0,
        fast: bool = True,
    ) -> None:
        super().__init__(
            asl_terms(gamma_pos, gamma_neg, clip), reduction=reduction, weight=weight, ignore_value=ignore_value,
            fast=fast,
        )  # fmt: skip


class HillLoss(AsymmetricFamilyLoss):
    """Hill loss (Zhang et al., arXiv 2112.07368).

    Positives use the focal margin loss on the shifted probability ``p~ = sigmoid(x - mu)``; negatives the
    Hill regulariser, which down-weights confident negatives (possibly missing labels)::

        L+ = -(1 - p~)^gamma * log p~
        L- = (lambda - p) * p^2

    Defaults are the paper's: lambda = 1.5, margin mu = 1, gamma = 2.

    Args:
        lamb: lambda >= 1.
        margin: logit margin mu of the positive term.
        gamma: focusing exponent of the positive term, >= 0.
        reduction, weight, ignore_value, fast: as in :class:`AsymmetricFamilyLoss`.
    """

    short_name = "hill"

    def __init__(
        self,
        lamb: float = 1.5,
        margin: float = 1.0,
        gamma: float = 2.0,
        reduction: str = "mean",
        weight: ClassVector = None,
        ignore_value: float | None = -1.0,
        fast: bool = True,
    ) -> None:
        super().__init__(
            hill_terms(lamb, margin, gamma), reduction=reduction, weight=weight, ignore_value=ignore_value,
            fast=fast,
        )  # fmt: skip


class PolyLoss(AsymmetricFamilyLoss):
    """Poly-1 loss in binary cross-entropy form (Leng et al., arXiv 2204.12511).

    Element-wise, with ``p_t = p`` for positives and ``1 - p`` for negatives::

        L = (1 - p_t)^gamma * [ -log p_t + epsilon * (1 - p_t) ]

    gamma = 0 (default) is Poly-1 cross-entropy, ``-log p_t + epsilon (1 - p_t)``; gamma > 0 gives the Poly-1
    focal form ``FL + epsilon (1 - p_t)^(gamma + 1)``. The paper's default is epsilon = 1.

    Args:
        epsilon: coefficient of the first polynomial term.
        gamma: focusing exponent >= 0.
        reduction, weight, ignore_value, fast: as in :class:`AsymmetricFamilyLoss`.
    """

    short_name = "poly"

    def __init__(
        self,
        epsilon: float = 1.0,
        gamma: float = 0.0,
        reduction: str = "mean",
        weight: ClassVector = None,
        ignore_value: float | None = -1.0,
        fast: bool = True,
    ) -> None:
        super().__init__(
            poly_terms(epsilon, gamma), reduction=reduction, weight=weight, ignore_value=ignore_value, fast=fast
        )


class AsymmetricPolynomialLoss(AsymmetricFamilyLoss):
    """Asymmetric polynomial loss, APL (Huang et al., arXiv 2304.05361).

    ASL with Taylor-expansion correction terms, in the form of the authors' code::

        L+ = -(1 - p)^gamma+ * [ log p + eps1 * (1 - p) + (eps2 / 2) * (1 - p)^2 ]
        L- = -p_m^gamma- * [ log q + eps- * q ]          p_m = max(p - m, 0), q = 1 - p_m

    Defaults are the authors': gamma+ = 0, gamma- = 4, m = 0.05, eps1 = 1, eps2 = -2.5, eps- = 0. This is
    :class:`RobustAsymmetricLoss` with the Hill factor switched off.

    Args:
        gamma_pos, gamma_neg, clip, epsilon_pos, epsilon_pos_pow, epsilon_neg: gamma+, gamma-, m, eps1, eps2,
            eps-.
        reduction, weight, ignore_value, fast: as in :class:`AsymmetricFamilyLoss`.
    """

    short_name = "apl"

    def __init__(
        self,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        epsilon_pos: float = 1.0,
        epsilon_pos_pow: float = -2.5,
        epsilon_neg: float = 0.0,
        reduction: str = "mean",
        weight: ClassVector = None,
        ignore_value: float | None = -1.0,
        fast: bool = True,
    ) -> None:
        terms = ral_terms(gamma_pos, gamma_neg, clip, epsilon_pos, epsilon_pos_pow, epsilon_neg, hill=False)
        super().__init__(terms, reduction=reduction, weight=weight, ignore_value=ignore_value, fast=fast)


class RobustAsymmetricLoss(AsymmetricFamilyLoss):
    """Robust asymmetric loss, RAL (Park et al., arXiv 2308.05542), in the reference form.

    For logit ``x``, ``p = sigmoid(x)``, the shifted probability ``p_m = max(p - m, 0)`` and ``q = 1 - p_m``::

        L+ = -(1 - p)^gamma+ * [ log p + eps1 * (1 - p) + (eps2 / 2) * (1 - p)^2 ]
        L- = -p_m^gamma- * [ log q + eps- * q ] * (lambda - p) * p^2 * (lambda - q)

        loss = y * L+ + (1 - y) * L-

    Defaults: gamma+ = 0, gamma- = 4, m = 0.05, eps1 = 1, eps2 = -2.5, eps- = 0, lambda = 1.5. The focusing
    factors are part of the graph. ``hill=False`` drops the factor ``(lambda - p) p^2 (lambda - q)``, which
    gives APL; with eps1 = eps2 = eps- = 0 as well it is ASL, and with gamma+ = gamma- = m = 0 on top of that
    it is binary cross-entropy.

    Relation to the paper's equation: the paper writes the loss as polynomials,
    ``L+ = y * sum_{k=1..M} alpha_k (1 - p)^(k + gamma+)`` and
    ``L- = (lambda - p) * (1 - y) * sum_{k=1..N} beta_k p_m^(k + gamma-)``. Expanding
    ``-log p = sum_k (1 - p)^k / k`` shows that the reference form, which keeps the full logarithm and adds
    correction terms, is the same family with alpha_1 = 1 - eps1, alpha_2 = (1 - eps2) / 2 and alpha_k = 1/k for
    k >= 3 (with the defaults 0, 1.75, 1/3, 1/4, ...). On the negative side the reference keeps the full
    ``-log q`` and multiplies by ``(lambda - p) * p^2 * (lambda - q)`` rather than by ``(lambda - p)`` alone;
    this implementation follows the reference.

    Where this implementation deliberately differs from the authors' code:

    1. ``log p`` is computed as logsigmoid(x), not ``log(max(p, 1e-8))``: the reference gives a confidently
       wrong positive (logit below about -18.4) exactly zero gradient, so the hardest positives stop learning.
    2. The loss is computed in float32 whatever the input dtype (float64 stays float64); the reference yields
       NaN/inf under fp16 autocast for large logits.
    3. Global autograd state is never switched inside ``forward`` (the parent ASL code toggles it).
    4. Reductions "none", "mean" and "sum" are offered; the reference only returns the sum, which scales with
       batch size and label count. The bundles use "mean" (over counted elements).

    Args:
        gamma_pos: gamma+ >= 0.
        gamma_neg: gamma- >= 0.
        clip: m in [0, 1).
        epsilon_pos: eps1.
        epsilon_pos_pow: eps2.
        epsilon_neg: eps-.
        lamb: lambda >= 1.
        hill: keep the Hill factor ``(lambda - p) p^2 (lambda - q)`` on negatives.
        reduction, weight, ignore_value, fast: as in :class:`AsymmetricFamilyLoss`.
    """

    short_name = "ral"

    def __init__(
        self,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        epsilon_pos: float = 1.0,
        epsilon_pos_pow: float = -2.5,
        epsilon_neg: float = 0.0,
        lamb: float = 1.5,
        hill: bool = True,
        reduction: str = "mean",
        weight: ClassVector = None,
        ignore_value: float | None = -1.0,
        fast: bool = True,
    ) -> None:
        terms = ral_terms(gamma_pos, gamma_neg, clip, epsilon_pos, epsilon_pos_pow, epsilon_neg, lamb, hill)
        super().__init__(terms, reduction=reduction, weight=weight, ignore_value=ignore_value, fast=fast)
