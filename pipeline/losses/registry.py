"""Build a loss from its short name, as command-line options and configs refer to losses."""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from .multilabel import (
    AsymmetricLoss,
    AsymmetricPolynomialLoss,
    BinaryCrossEntropyLoss,
    FocalLoss,
    HillLoss,
    PolyLoss,
    RobustAsymmetricLoss,
)
from .single_label import SingleLabelRobustAsymmetricLoss

logger = logging.getLogger(__name__)

LOSSES: dict[str, type[nn.Module]] = {
    cls.short_name: cls
    for cls in (
        BinaryCrossEntropyLoss,
        FocalLoss,
        AsymmetricLoss,
        HillLoss,
        PolyLoss,
        AsymmetricPolynomialLoss,
        RobustAsymmetricLoss,
        SingleLabelRobustAsymmetricLoss,
    )
}


def available_losses() -> list[str]:
    """Short names accepted by :func:`build_loss`."""
    return list(LOSSES)


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate a loss by short name.

    Args:
        name: one of ``"bce"``, ``"focal"``, ``"asl"``, ``"hill"``, ``"poly"``, ``"apl"``, ``"ral"``,
            ``"ral_softmax"`` (case-insensitive).
        **kwargs: constructor arguments of the loss class, e.g. ``reduction="mean"``, ``gamma_neg=4.0``.

    Returns:
        The loss module.

    Raises:
        ValueError: for an unknown name.
        TypeError: for an argument the loss does not take.
    """
    key = str(name).strip().lower()
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}.")
    loss = LOSSES[key](**kwargs)
    logger.debug("built loss %s: %r", key, loss)
    return loss
