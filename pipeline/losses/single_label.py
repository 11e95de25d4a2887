"""Single-label (softmax) form of the robust asymmetric loss.

The RAL branches (Park et al., "Robust Asymmetric Loss for Multi-Label Long-Tailed Learning", arXiv 2308.05542)
are applied to softmax probabilities with one-hot targets: the target class takes the positive term and every
other class the negative term. The arithmetic is the shared :func:`~pipeline.losses._mechanism.branch_losses`;
this module only supplies softmax probabilities and their logarithms in a numerically careful form.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._common import (
    as_class_vector,
    check_ignore_value,
    check_reduction,
    compute_dtype,
)
from ._mechanism import AsymmetricTerms, branch_losses, shifted_negative
from .multilabel import ral_terms

logger = logging.getLogger(__name__)


def _one_hot_targets(
    targets: torch.Tensor, num_classes: int, ignore_index: int, ignore_value: float | None, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(one_hot, counted_rows)`` from class indices (B,) or one-hot targets (B, C).

    Raises:
        ValueError: on a class index outside [0, C) that is not ``ignore_index``, or a counted one-hot row that is
            not exactly one 1 among 0s.
    """
    if targets.dim() == 1:
        if targets.is_floating_point() or targets.dtype == torch.bool:
            raise ValueError(f"1-D single-label targets must be integer class indices, got dtype {targets.dtype}.")
        counted = targets != ignore_index
        indices = targets[counted]
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_classes):
            bad = indices[(indices < 0) | (indices >= num_classes)].unique()[:5].tolist()
            raise ValueError(
                f"class indices must be in [0, {num_classes}) or ignore_index={ignore_index}, found {bad}."
            )
        one_hot = torch.zeros(targets.shape[0], num_classes, dtype=dtype, device=targets.device)
        one_hot[counted] = F.one_hot(indices.long(), num_classes).to(dtype)
        return one_hot, counted

    masked = torch.isnan(targets) if targets.is_floating_point() else torch.zeros_like(targets, dtype=torch.bool)
    if ignore_value is not None:
        masked = masked | (targets == ignore_value)
    counted = ~masked.any(dim=1)
    rows = targets[counted]
    is_binary = bool(((rows == 0) | (rows == 1)).all())
    if not is_binary or bool(((rows == 1).sum(dim=1) != 1).any()):
        raise ValueError(
            "one-hot single-label targets need exactly one 1 and otherwise 0 in every counted row (rows holding NaN"
            f" or the ignore value {ignore_value} are left out); got rows such as {rows[:2].tolist()}."
        )
    one_hot = torch.where(counted[:, None], targets, torch.zeros_like(targets)).to(dtype)
    return one_hot, counted


def softmax_branch_losses(logits: torch.Tensor, terms: AsymmetricTerms) -> tuple[torch.Tensor, torch.Tensor]:
    """L+ and L- of every class from softmax probabilities (autograd-differentiable).

    ``log(1 - p_c)`` is ``log1p(-p_c)`` except for the most probable class of each row, the only one that can
    have p > 1/2, where it is ``logsumexp`` over the other classes minus ``logsumexp`` over all: accurate when
    that class is confidently predicted.

    Args:
        logits: (B, C) logits in the compute dtype, C >= 2.
        terms: the member of the family (margin must be 0).

    Returns:
        ``(loss_pos, loss_neg)``, each (B, C).
    """
    log_probs = F.log_softmax(logits, dim=1)
    probs = log_probs.exp()
    top = probs.argmax(dim=1, keepdim=True)
    others = logits.scatter(1, top, float("-inf"))
    log_rest_top = torch.logsumexp(others, dim=1, keepdim=True) - torch.logsumexp(logits, dim=1, keepdim=True)
    # The top class is excluded before log1p too: where p rounds to 1, log1p(-p) has an infinite derivative that
    # the scatter would multiply by zero, giving NaN.
    log_one_minus = torch.log1p(-probs.scatter(1, top, 0.0)).scatter(1, top, log_rest_top)
    one_minus = log_one_minus.exp()
    p_m, q, log_q = shifted_negative(probs, one_minus, log_one_minus, terms.clip)
    return branch_losses(log_probs, one_minus, probs, p_m, q, log_q, terms)


def single_label_robust_asymmetric_loss(
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
    weight: torch.Tensor | Sequence[float] | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
    ignore_value: float | None = -1.0,
) -> torch.Tensor:
    """Softmax RAL; see :class:`SingleLabelRobustAsymmetricLoss` for the formula and arguments."""
    check_reduction(reduction)
    ignore_value = check_ignore_value(ignore_value)
    terms = ral_terms(gamma_pos, gamma_neg, clip, epsilon_pos, epsilon_pos_pow, epsilon_neg, lamb, hill)
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}.")
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape (B, C) with C >= 2, got {tuple(logits.shape)}.")
    batch, num_classes = logits.shape
    if targets.shape not in ((batch,), (batch, num_classes)):
        raise ValueError(
            f"targets must be class indices of shape ({batch},) or one-hot of shape ({batch}, {num_classes}), "
            f"got {tuple(targets.shape)}."
        )
    dtype = compute_dtype(logits)
    one_hot, counted = _one_hot_targets(targets, num_classes, ignore_index, ignore_value, dtype)
    row_weight = counted.to(dtype)[:, None]
    pos_weight = one_hot * row_weight
    neg_weight = row_weight - pos_weight
    if weight is not None:
        weight = as_class_vector("weight", weight).to(device=logits.device, dtype=dtype)
        if weight.shape != (num_classes,):
            raise ValueError(f"weight must have shape ({num_classes},), got {tuple(weight.shape)}.")
        pos_weight = pos_weight * weight
        neg_weight = neg_weight * weight

    loss_pos, loss_neg = softmax_branch_losses(logits.to(dtype), terms)
    per_sample = (pos_weight * loss_pos + neg_weight * loss_neg).sum(dim=1)
    if reduction == "none":
        return per_sample
    total = per_sample.sum()
    if reduction == "sum":
        return total
    count = int(counted.sum())
    return total / count if count > 0 else total * 0.0


class SingleLabelRobustAsymmetricLoss(nn.Module):
    """Robust asymmetric loss on softmax probabilities for single-label classification.

    With ``p_c = softmax(x)_c``, ``p_m = max(p_c - m, 0)``, ``q = 1 - p_m`` and the target class ``k``::

        L+(p_k) = -(1 - p_k)^gamma+ * [ log p_k + eps1 (1 - p_k) + (eps2 / 2) (1 - p_k)^2 ]
        L-(p_c) = -p_m^gamma- * [ log q + eps- q ] * (lambda - p_c) * p_c^2 * (lambda - q)     (c != k)

        loss per sample = weight_k L+(p_k) + sum_{c != k} weight_c L-(p_c)

    ``hill=False`` drops the factor ``(lambda - p_c) p_c^2 (lambda - q)``. ``log p`` is ``log_softmax``, and
    ``log(1 - p)`` is computed without cancellation for a confidently predicted class. Computed in float32 for
    half-precision logits. The gradient comes from autograd.

    Args:
        gamma_pos, gamma_neg, clip, epsilon_pos, epsilon_pos_pow, epsilon_neg, lamb, hill: as in
            :class:`~pipeline.losses.RobustAsymmetricLoss` (same defaults).
        weight: optional (C,) per-class weight.
        reduction: "none" (per-sample loss of shape (B,), 0 for rows left out), "mean" (over counted samples) or
            "sum".
        ignore_index: class index of a sample to leave out, for integer targets.
        ignore_value: for one-hot targets, a row holding this value (or NaN) is left out.

    Forward takes ``logits`` (B, C) and ``targets`` as class indices (B,) or one-hot (B, C).
    """

    short_name = "ral_softmax"

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
        weight: torch.Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
        ignore_value: float | None = -1.0,
    ) -> None:
        super().__init__()
        # Building the terms validates every setting at construction time.
        ral_terms(gamma_pos, gamma_neg, clip, epsilon_pos, epsilon_pos_pow, epsilon_neg, lamb, hill)
        self.settings = dict(
            gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, epsilon_pos=epsilon_pos,
            epsilon_pos_pow=epsilon_pos_pow, epsilon_neg=epsilon_neg, lamb=lamb, hill=hill,
        )  # fmt: skip
        self.reduction = check_reduction(reduction)
        self.ignore_index = int(ignore_index)
        self.ignore_value = check_ignore_value(ignore_value)
        self.register_buffer("weight", as_class_vector("weight", weight), persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (B, C) against class indices (B,) or one-hot targets (B, C)."""
        return single_label_robust_asymmetric_loss(
            logits, targets, **self.settings, weight=self.weight, reduction=self.reduction,
            ignore_index=self.ignore_index, ignore_value=self.ignore_value,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{self.settings}, reduction={self.reduction!r}"
