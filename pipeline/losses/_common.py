"""Pieces shared by every loss in this package: argument checks, target masks and weights, reductions.

Targets follow the project's label convention: 1.0 positive, 0.0 negative, and the ignore value (-1.0 by
default) or NaN for an unknown label, which contributes neither loss nor gradient.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of :data:`REDUCTIONS`, else raise ``ValueError``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
    return reduction


def check_finite(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite real number, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}.")
    return float(value)


def check_non_negative(name: str, value: float) -> float:
    """Return ``value`` as a float if it is finite and >= 0, else raise ``ValueError``."""
    value = check_finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}.")
    return value


def check_ignore_value(ignore_value: float | None) -> float | None:
    """Check the target value that marks an unknown label; ``None`` disables it (NaN still masks)."""
    if ignore_value is None:
        return None
    value = check_finite("ignore_value", ignore_value)
    if value in (0.0, 1.0):
        raise ValueError(f"ignore_value must differ from the target values 0 and 1, got {ignore_value!r}.")
    return value


def as_class_vector(name: str, value: torch.Tensor | Sequence[float] | None) -> torch.Tensor | None:
    """Turn a per-class vector given as a tensor or a list (as in a JSON config) into a float tensor.

    Args:
        name: argument name, for error messages.
        value: ``None`` or a 1-D sequence of finite, non-negative numbers, one per class.

    Returns:
        A 1-D float32 tensor (float64 if a float64 tensor was given), or ``None``.

    Raises:
        ValueError: if the vector is not 1-D, is empty, or holds negative or non-finite values.
    """
    if value is None:
        return None
    tensor = value.detach().clone() if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    if tensor.dim() != 1 or tensor.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D vector with one entry per class, got shape {tuple(tensor.shape)}."
        )
    if not bool(torch.isfinite(tensor).all()) or bool((tensor < 0).any()):
        raise ValueError(f"{name} must hold finite values >= 0, got {tensor.tolist()}.")
    return tensor


def compute_dtype(logits: torch.Tensor) -> torch.dtype:
    """The dtype the losses compute in: float32 for half-precision input, float64 for float64 input."""
    return torch.promote_types(logits.dtype, torch.float32)


def check_logits_targets(logits: torch.Tensor, targets: torch.Tensor) -> None:
    """Check that ``logits`` is a floating tensor of at least one dimension with the shape of ``targets``."""
    if not isinstance(logits, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError(
            f"logits and targets must be tensors, got {type(logits).__name__} and {type(targets).__name__}."
        )
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}.")
    if logits.dim() == 0:
        raise ValueError("logits must have at least one dimension (B, C); got a scalar.")
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits and targets must have the same shape (B, C), got {tuple(logits.shape)} and {tuple(targets.shape)}."
        )


@dataclass
class BinaryTargets:
    """Targets of a multi-label loss turned into what the computation needs.

    Attributes:
        is_pos: 1.0 where the target is a counted positive, else 0.0 (compute dtype).
        is_neg: 1.0 where the target is a counted negative, else 0.0.
        pos_weight: per-element weight of the positive branch (0 where not a counted positive).
        neg_weight: per-element weight of the negative branch (0 where not a counted negative).
        count: number of counted elements (neither NaN nor the ignore value), the divisor of ``"mean"``.
    """

    is_pos: torch.Tensor
    is_neg: torch.Tensor
    pos_weight: torch.Tensor
    neg_weight: torch.Tensor
    count: int


def _raise_bad_targets(targets: torch.Tensor, bad: torch.Tensor, ignore_value: float | None) -> None:
    values = torch.unique(targets[bad].detach().to("cpu", torch.float64))[:5].tolist()
    allowed = "0, 1, NaN" + ("" if ignore_value is None else f" or the ignore value {ignore_value}")
    raise ValueError(
        f"targets must be {allowed}; found {int(bad.sum())} other element(s), e.g. {values}. "
        "Soft labels are not supported by these losses."
    )


def binary_targets(
    targets: torch.Tensor,
    dtype: torch.dtype,
    *,
    ignore_value: float | None,
    weight: torch.Tensor | None = None,
    pos_scale: torch.Tensor | float | None = None,
    neg_scale: float | None = None,
) -> BinaryTargets:
    """Check multi-label targets and build the branch masks and weights.

    Args:
        targets: (B, C) tensor of 1.0 (positive), 0.0 (negative), NaN or ``ignore_value`` (not counted).
        dtype: dtype of the returned masks and weights.
        ignore_value: target value that is not counted; ``None`` counts every non-NaN element.
        weight: optional (C,) per-class weight applied to both branches.
        pos_scale: optional scalar or (C,) extra weight of the positive branch (e.g. BCE ``pos_weight``).
        neg_scale: optional scalar extra weight of the negative branch.

    Returns:
        The masks, weights and the number of counted elements.

    Raises:
        ValueError: if a target is neither 0, 1, NaN nor the ignore value, or a weight does not have C entries.
    """
    # NOTE: checking the targets reads two numbers back to the host: one synchronisation per call on a GPU, the
    # price of raising ValueError on bad labels instead of training on them silently.
    y = targets.to(dtype)
    # Fast check without boolean tensors: y (1 - y) is 0 exactly for 0 and 1, and NaN or non-zero otherwise
    # (aminmax propagates NaN).
    low, high = torch.aminmax(y - y * y)
    if low.item() == 0.0 and high.item() == 0.0:
        is_pos, is_neg, count = y, torch.rsub(y, 1.0), y.numel()
    else:
        pos = y == 1
        neg = y == 0
        masked = torch.isnan(y)
        if ignore_value is not None:
            masked = masked | (targets == ignore_value)
        bad = ~(pos | neg | masked)
        if bool(bad.any()):
            _raise_bad_targets(targets, bad, ignore_value)
        is_pos, is_neg = pos.to(dtype), neg.to(dtype)
        count = int(pos.sum() + neg.sum())

    num_classes = targets.shape[-1]
    pos_weight, neg_weight = is_pos, is_neg
    for name, vector in (("weight", weight), ("pos_weight", pos_scale)):
        if isinstance(vector, torch.Tensor) and vector.shape != (num_classes,):
            raise ValueError(
                f"{name} must have one entry per class, shape ({num_classes},), got {tuple(vector.shape)}."
            )
    if weight is not None:
        weight = weight.to(device=targets.device, dtype=dtype)
        pos_weight = pos_weight * weight
        neg_weight = neg_weight * weight
    if isinstance(pos_scale, torch.Tensor):
        pos_weight = pos_weight * pos_scale.to(device=targets.device, dtype=dtype)
    elif pos_scale is not None and pos_scale != 1.0:
        pos_weight = pos_weight * pos_scale
    if neg_scale is not None and neg_scale != 1.0:
        neg_weight = neg_weight * neg_scale
    return BinaryTargets(is_pos, is_neg, pos_weight, neg_weight, count)


def reduction_scale(reduction: str, count: int) -> float | None:
    """Factor applied to the summed loss: ``None`` for ``"none"``, 1 for ``"sum"``, 1/count for ``"mean"``.

    With no counted element the mean is defined as 0 (every element weight is then 0 as well), so that a batch
    whose labels are all unknown yields a zero loss and a zero gradient instead of NaN.
    """
    if reduction == "none":
        return None
    if reduction == "sum":
        return 1.0
    return 1.0 / count if count > 0 else 0.0


def reduce_elements(loss: torch.Tensor, reduction: str, count: int) -> torch.Tensor:
    """Reduce an element-wise loss that is already zero where nothing is counted."""
    scale = reduction_scale(reduction, count)
    if scale is None:
        return loss
    total = loss.sum()
    return total if scale == 1.0 else total * scale
