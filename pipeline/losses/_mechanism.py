"""The one parameterised mechanism behind every multi-label loss of this package.

For a logit ``x`` with probability ``p = sigmoid(x)`` and a target ``y`` in {0, 1}, every member of the family is

    L+ = (1 - p~)^gamma+ * [ -log p~ + sum_k c_k (1 - p~)^k ]             with p~ = sigmoid(x - mu)
    L- = p_m^gamma- * [ -log q * [log on] + sum_k d_k p_m^k ] * H(p, q)    with p_m = max(p - m, 0), q = 1 - p_m
    H  = 1 ("none"),  (lambda - p) * p^2 ("hill"),  (lambda - p) * p^2 * (lambda - q) ("ral")

    loss = w+ * y * L+ + w- * (1 - y) * L-

where ``mu`` is a logit margin for positives (Hill), ``m`` the probability clip for negatives (ASL), the
polynomials ``sum_k c_k (1 - p~)^k`` and ``sum_k d_k p_m^k`` hold the Poly-1 and APL/RAL correction terms and
``w+``/``w-`` are constant weights (focal alpha, BCE pos_weight, class weights, the mask of unknown labels).
:class:`AsymmetricTerms` holds one setting of these constants.

Two computations of the same formula are offered. :func:`composed_loss` states it with differentiable torch
operations and lets autograd derive the gradient (it supports higher-order derivatives). :func:`fast_loss` wraps
:class:`_ClosedFormLoss`, a ``torch.autograd.Function`` that evaluates the loss and its closed-form derivative in
one pass on a few buffers, so that the backward pass is a single multiplication. Both compute in float32 (float64
for float64 input) whatever the input dtype, never change global autograd state, and compute ``log p`` in a way
that stays correct for every finite logit (the gradient of a positive never vanishes because of a clamp).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._common import check_finite, check_non_negative, compute_dtype

logger = logging.getLogger(__name__)

NEGATIVE_FACTORS = ("none", "hill", "ral")


@dataclass(frozen=True)
class AsymmetricTerms:
    """One member of the asymmetric family (the constants of the formula in the module docstring).

    Attributes:
        gamma_pos: gamma+, focusing exponent of positives, >= 0.
        gamma_neg: gamma-, focusing exponent of negatives, >= 0.
        clip: m, probability margin subtracted from p for negatives, in [0, 1).
        margin: mu, logit margin subtracted from x for positives (Hill's focal margin), finite.
        pos_poly: coefficients (c_0, c_1, ...) of the polynomial in (1 - p~) added to -log p~.
        neg_log: whether the negative base holds -log q (False for Hill, whose negative term is H alone).
        neg_poly: coefficients (d_0, d_1, ...) of the polynomial in p_m added to the negative base.
        neg_factor: the factor H of the negative branch, one of ``"none"``, ``"hill"``, ``"ral"``.
        lamb: lambda of the Hill factor, >= 1 so that H is non-negative.
    """

    gamma_pos: float = 0.0
    gamma_neg: float = 0.0
    clip: float = 0.0
    margin: float = 0.0
    pos_poly: tuple[float, ...] = ()
    neg_log: bool = True
    neg_poly: tuple[float, ...] = ()
    neg_factor: str = "none"
    lamb: float = 1.5

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: normalise the values once here
        set_(self, "gamma_pos", check_non_negative("gamma_pos", self.gamma_pos))
        set_(self, "gamma_neg", check_non_negative("gamma_neg", self.gamma_neg))
        clip = check_finite("clip", self.clip)
        if not 0.0 <= clip < 1.0:
            raise ValueError(f"clip must be in [0, 1), got {self.clip!r}.")
        set_(self, "clip", clip)
        set_(self, "margin", check_finite("margin", self.margin))
        set_(self, "pos_poly", _trim(tuple(check_finite("pos_poly", c) for c in self.pos_poly)))
        set_(self, "neg_poly", _trim(tuple(check_finite("neg_poly", c) for c in self.neg_poly)))
        if self.neg_factor not in NEGATIVE_FACTORS:
            raise ValueError(f"neg_factor must be one of {NEGATIVE_FACTORS}, got {self.neg_factor!r}.")
        lamb = check_finite("lamb", self.lamb)
        if lamb < 1.0:
            raise ValueError(f"lamb must be >= 1 so that the Hill factor stays non-negative, got {self.lamb!r}.")
        set_(self, "lamb", lamb)
        if not self.neg_log and not self.neg_poly:
            raise ValueError("the negative branch needs -log q (neg_log=True) or a non-zero neg_poly.")


def _trim(coeffs: tuple[float, ...]) -> tuple[float, ...]:
    """Drop trailing zero coefficients so that an all-zero polynomial costs nothing."""
    while coeffs and coeffs[-1] == 0.0:
        coeffs = coeffs[:-1]
    return coeffs


# ----------------------------------------------------------------------------------------------------------------
# Small tensor helpers shared by both computations.


def _power(base: torch.Tensor, exponent: float) -> torch.Tensor | None:
    """``base ** exponent`` with multiplications for small integer exponents (``torch.pow`` is slow on CPU).

    Returns ``None`` for exponent 0, meaning the constant 1, and ``base`` itself for exponent 1; never modifies
    ``base`` in place, so it is safe under autograd.
    """
    if exponent == 0.0:
        return None
    if exponent == 1.0:
        return base
    if exponent == 2.0:
        return base * base
    if exponent == 3.0:
        return base * base * base
    if exponent == 4.0:
        square = base * base
        return square * square
    return base.pow(exponent)


def _polynomial(base: torch.Tensor, coeffs: tuple[float, ...]) -> torch.Tensor | None:
    """``sum_k coeffs[k] * base**k`` by Horner's rule, as a new tensor; ``None`` when there are no coefficients.

    The arithmetic is in place on the new tensor, which is fine for the closed form; the composed computation
    uses :func:`_polynomial_autograd`.
    """
    if not coeffs:
        return None
    if len(coeffs) == 1:
        return torch.full_like(base, coeffs[0])
    result = base * coeffs[-1]
    for coeff in reversed(coeffs[1:-1]):
        result.add_(coeff).mul_(base)
    return result.add_(coeffs[0]) if coeffs[0] else result


def _polynomial_autograd(base: torch.Tensor, coeffs: tuple[float, ...]) -> torch.Tensor | None:
    """Same as :func:`_polynomial` without in-place arithmetic."""
    if not coeffs:
        return None
    if len(coeffs) == 1:
        return torch.full_like(base, coeffs[0])
    result = base * coeffs[-1]
    for coeff in reversed(coeffs[1:-1]):
        result = (result + coeff) * base
    return result + coeffs[0]


def _derivative_coeffs(coeffs: tuple[float, ...]) -> tuple[float, ...]:
    return _trim(tuple(k * c for k, c in enumerate(coeffs))[1:])


def _focusing(base: torch.Tensor, gamma: float) -> torch.Tensor | None:
    """Differentiable ``base ** gamma`` whose gradient stays finite at base = 0 when 0 < gamma < 1."""
    if 0.0 < gamma < 1.0:
        positive = base > 0
        safe = torch.where(positive, base, torch.ones_like(base))
        return torch.where(positive, safe.pow(gamma), torch.zeros_like(base))
    return _power(base, gamma)


# ----------------------------------------------------------------------------------------------------------------
# The composed statement: readable torch operations, autograd derives the gradient.


def shifted_negative(
    probs: torch.Tensor, one_minus_probs: torch.Tensor, log_one_minus_probs: torch.Tensor | None, clip: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(p_m, q, log q)`` with ``p_m = max(p - m, 0)`` and ``q = 1 - p_m = min(1 - p + m, 1)``.

    ``one_minus_probs`` and its logarithm come from the caller in an accurate form (sigmoid(-x), logsigmoid(-x)),
    so that q keeps its precision when p -> 1; the logarithm is only needed (and may be ``None``) when m = 0.
    """
    if clip > 0:
        q = (one_minus_probs + clip).clamp(max=1.0)
        return 1.0 - q, q, torch.log(q)
    return probs, one_minus_probs, log_one_minus_probs


def branch_losses(
    log_p: torch.Tensor,
    one_minus_p: torch.Tensor,
    probs: torch.Tensor,
    p_m: torch.Tensor,
    q: torch.Tensor,
    log_q: torch.Tensor,
    terms: AsymmetricTerms,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L+ and L- from the probabilities, with differentiable operations (no in-place arithmetic).

    Args:
        log_p: log p~ (positive branch probability, including any margin).
        one_minus_p: 1 - p~.
        probs: p, used by the Hill factor.
        p_m: the shifted probability of the negative branch.
        q: 1 - p_m.
        log_q: log q.
        terms: the member of the family.

    Returns:
        ``(loss_pos, loss_neg)``, each evaluated at every element.
    """
    loss_pos = -log_p
    poly_pos = _polynomial_autograd(one_minus_p, terms.pos_poly)
    if poly_pos is not None:
        loss_pos = loss_pos + poly_pos
    focus_pos = _focusing(one_minus_p, terms.gamma_pos)
    if focus_pos is not None:
        loss_pos = focus_pos * loss_pos

    loss_neg = -log_q if terms.neg_log else None
    poly_neg = _polynomial_autograd(p_m, terms.neg_poly)
    if poly_neg is not None:
        loss_neg = poly_neg if loss_neg is None else loss_neg + poly_neg
    focus_neg = _focusing(p_m, terms.gamma_neg)
    if focus_neg is not None:
        loss_neg = focus_neg * loss_neg
    if terms.neg_factor != "none":
        hill = (terms.lamb - probs) * probs * probs
        if terms.neg_factor == "ral":
            hill = hill * (terms.lamb - q)
        loss_neg = loss_neg * hill
    return loss_pos, loss_neg


def composed_elementwise(logits: torch.Tensor, terms: AsymmetricTerms) -> tuple[torch.Tensor, torch.Tensor]:
    """Both branches of the sigmoid loss for every element, differentiable by autograd.

    Args:
        logits: (B, C) logits in the compute dtype.
        terms: the member of the family.

    Returns:
        ``(loss_pos, loss_neg)``: L+ and L- evaluated at every element, each of shape (B, C).
    """
    # log p~ as logsigmoid: exact, and the gradient of a positive never vanishes for a finite logit.
    shifted = logits - terms.margin if terms.margin else logits
    log_p = F.logsigmoid(shifted)
    one_minus_p = torch.sigmoid(-shifted)
    probs = torch.sigmoid(logits)
    one_minus_probs = torch.sigmoid(-logits) if terms.margin else one_minus_p
    log_one_minus_probs = F.logsigmoid(-logits) if terms.clip == 0 else None
    p_m, q, log_q = shifted_negative(probs, one_minus_probs, log_one_minus_probs, terms.clip)
    return branch_losses(log_p, one_minus_p, probs, p_m, q, log_q, terms)


def composed_loss(
    logits: torch.Tensor,
    pos_weight: torch.Tensor,
    neg_weight: torch.Tensor,
    terms: AsymmetricTerms,
    scale: float | None,
) -> torch.Tensor:
    """Weighted and reduced loss through :func:`composed_elementwise` (autograd gradient).

    Args:
        logits: (B, C) logits of any floating dtype.
        pos_weight: (B, C) weight of the positive branch, 0 where the element is not a counted positive.
        neg_weight: (B, C) weight of the negative branch, 0 where the element is not a counted negative.
        terms: the member of the family.
        scale: ``None`` for no reduction, else the factor applied to the sum.

    Returns:
        The element-wise loss (``scale is None``) or the scaled sum, in the compute dtype.
    """
    x = logits.to(compute_dtype(logits))
    loss_pos, loss_neg = composed_elementwise(x, terms)
    loss = pos_weight * loss_pos + neg_weight * loss_neg
    if scale is None:
        return loss
    return loss.sum() * scale


# ----------------------------------------------------------------------------------------------------------------
# The fast computation: loss and closed-form derivative in one pass.


def _power_and_derivative(base: torch.Tensor, exponent: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(base ** exponent, exponent * base ** (exponent - 1))`` as new tensors, for an exponent > 0.

    Small integer exponents share their products; for 0 < exponent < 1 the derivative is set to 0 where base is 0
    (it only ever multiplies dp_m/dx, which is 0 there).
    """
    if exponent == 1.0:
        return base.clone(), torch.ones_like(base)
    if exponent == 2.0:
        return base * base, base * 2.0
    if exponent in (3.0, 4.0):
        square = base * base
        derivative = square.mul(exponent) if exponent == 3.0 else torch.mul(square, base).mul_(exponent)
        return square.mul_(base if exponent == 3.0 else square), derivative
    if exponent < 1.0:
        derivative = torch.where(base > 0, base, torch.ones_like(base)).pow_(exponent - 1.0).mul_(exponent)
        return base.pow(exponent), derivative.mul_(torch.sign(base))
    return base.pow(exponent), base.pow(exponent - 1.0).mul_(exponent)


def closed_form(
    x: torch.Tensor,
    is_pos: torch.Tensor,
    is_neg: torch.Tensor,
    pos_weight: torch.Tensor,
    neg_weight: torch.Tensor,
    terms: AsymmetricTerms,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted element-wise loss and its derivative with respect to ``x``, in one pass.

    Both branches are evaluated from one sigmoid and one logarithm of a "signed" logit ``t`` (``x - mu`` for
    positives, ``-x`` for negatives), then weighted; every intermediate is finite for finite logits, so the
    branch that an element does not use is multiplied by a zero weight without producing NaN. Arithmetic is in
    place on a few buffers: on CPU, fresh memory for every intermediate costs more than the arithmetic.

    Derivatives, with u = 1 - p~ (positives) or u = p_m (negatives), s = sigmoid(x), v = s (1 - s) and
    a = dp_m/dx = v [p > m]:

        dL+/dx = -(1 - p~)^gamma+ * [ u (1 + p~ P'(u)) + gamma+ p~ B+ ]        B+ = -log p~ + P(u)
        dL-/dx = (gamma- u^(gamma- - 1) a B- + u^gamma- dB-/dx) H + u^gamma- B- dH/dx,
                 dB-/dx = a / q * [log on] + a Q'(u),   B- = -log q * [log on] + Q(u)
        "hill": dH/dx = s (2 lambda - 3 s) v;   "ral": dH/dx = s (2 lambda - 3 s) v (lambda - q) + h a

    Args:
        x: (B, C) logits in the compute dtype.
        is_pos: (B, C) 1.0 at counted positives else 0.0.
        is_neg: (B, C) 1.0 at counted negatives else 0.0.
        pos_weight: (B, C) weight of the positive branch.
        neg_weight: (B, C) weight of the negative branch.
        terms: the member of the family.

    Returns:
        ``(loss, grad)``, both (B, C).
    """
    clip, lamb = terms.clip, terms.lamb
    tiny = torch.finfo(x.dtype).tiny

    # Signed logit: sigmoid(t) is p~ for positives and 1 - p for negatives (t = 0 where nothing is counted).
    t = torch.sub(is_pos, is_neg)
    t.mul_(x.sub(is_pos, alpha=terms.margin) if terms.margin else x)
    p_t = torch.sigmoid(t)

    # z is p~ for positives and q = min(1 - p + m, 1) for negatives; u = 1 - z is (1 - p~) or p_m.
    # log z comes from the sigmoid; where sigmoid(t) underflows, log sigmoid(t) = t to working precision, and
    # log sigmoid(t) <= t always, so the minimum with t keeps the value right for every finite logit. Negatives
    # with a clip have z >= m, and their bound is 0.
    if clip > 0:
        z = torch.add(p_t, is_neg, alpha=clip).clamp_(max=1.0)
        bound = t.mul_(is_pos)
    else:
        z, bound = p_t, t
    neg_log_z = torch.clamp(z, min=tiny).log_()
    torch.minimum(neg_log_z, bound, out=neg_log_z).neg_()
    del t, bound
    u = torch.rsub(z, 1.0)

    # Positive branch, weighted: the loss goes into the output buffer, the derivative (without its minus sign)
    # into grad_pos.
    base_pos = _polynomial(u, terms.pos_poly)
    base_pos = neg_log_z if base_pos is None else base_pos.add_(neg_log_z)
    focus_pos = _power(u, terms.gamma_pos)
    loss = torch.mul(base_pos, pos_weight)
    grad_pos = _polynomial(u, _derivative_coeffs(terms.pos_poly))
    grad_pos = u.mul(pos_weight) if grad_pos is None else grad_pos.mul_(p_t).add_(1.0).mul_(u).mul_(pos_weight)
    if focus_pos is not None:
        loss.mul_(focus_pos)
        grad_pos.addcmul_(p_t, base_pos.mul(pos_weight), value=terms.gamma_pos).mul_(focus_pos)
    del base_pos, focus_pos

    # Negative branch. Buffers of finished quantities are reused: p_t becomes v = dp/dx, z becomes a / q.
    probs = torch.rsub(p_t, 1.0)  # s = sigmoid(x) on negatives
    lamb_minus_q = torch.rsub(z, lamb) if terms.neg_factor == "ral" else None
    slope = p_t.mul_(probs)
    if clip > 0:
        d_pm = torch.sign(u).mul_(slope)  # a = v [p > m]
        d_log = z.clamp_(min=tiny).reciprocal_().mul_(d_pm) if terms.neg_log else None  # a / q
    else:
        d_pm = slope
        d_log = probs if terms.neg_log else None  # a / q is exactly p when m = 0
    del z, p_t

    base_neg = _polynomial(u, terms.neg_poly)
    if terms.neg_log:
        base_neg = neg_log_z if base_neg is None else base_neg.add_(neg_log_z)
    d_base_neg = _polynomial(u, _derivative_coeffs(terms.neg_poly))
    if d_base_neg is not None:
        d_base_neg.mul_(d_pm)
        if d_log is not None:
            d_base_neg.add_(d_log)
    else:
        d_base_neg = d_log
    # "focused" = u^gamma- * B- and its derivative; base_neg is not needed afterwards.
    if terms.gamma_neg == 0:
        d_focused, focused = d_base_neg, base_neg
    else:
        focus_neg, d_focus_neg = _power_and_derivative(u, terms.gamma_neg)
        d_focused = d_focus_neg.mul_(d_pm).mul_(base_neg)
        if d_base_neg is not None:
            d_focused.addcmul_(d_base_neg, focus_neg)
        focused = focus_neg.mul_(base_neg)
    del u, base_neg, d_base_neg, d_log, neg_log_z

    if terms.neg_factor == "none":
        loss.addcmul_(focused, neg_weight)
        if d_focused is None:
            return loss, grad_pos.neg_()
        return loss, d_focused.mul(neg_weight).sub_(grad_pos)

    # Factor H: h = (lambda - s) s^2, dh/dx = s (2 lambda - 3 s) v; "ral" multiplies by (lambda - q), whose
    # derivative is a.
    square = probs * probs
    factor = torch.rsub(probs, lamb).mul_(square)
    d_factor = torch.mul(probs, 2.0 * lamb).sub_(square, alpha=3.0)
    del square
    if lamb_minus_q is not None:
        d_factor.mul_(lamb_minus_q)
        if clip > 0:
            d_factor.mul_(slope).addcmul_(factor, d_pm)
        else:
            d_factor.add_(factor).mul_(slope)  # a = v when m = 0
        factor.mul_(lamb_minus_q)
    else:
        d_factor.mul_(slope)
    # dL-/dx = d(focused)/dx * H + focused * dH/dx, weighted, minus the positive part.
    d_factor.mul_(focused)
    if d_focused is not None:
        d_factor.addcmul_(d_focused, factor)
    loss.addcmul_(focused.mul_(factor), neg_weight)
    return loss, d_factor.mul_(neg_weight).sub_(grad_pos)


class _ClosedFormLoss(torch.autograd.Function):
    """Loss whose backward pass multiplies the derivative saved by :func:`closed_form` by the incoming grad."""

    @staticmethod
    def forward(ctx, logits, is_pos, is_neg, pos_weight, neg_weight, terms, scale):  # noqa: D102
        x = logits.to(compute_dtype(logits))
        loss, grad = closed_form(x, is_pos, is_neg, pos_weight, neg_weight, terms)
        ctx.logits_dtype = logits.dtype
        if scale is not None:
            loss = loss.sum()
            if scale != 1.0:
                loss.mul_(scale)
                grad.mul_(scale)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        (grad,) = ctx.saved_tensors
        # loss.backward() on a CPU scalar passes 1: the saved derivative is then the answer as it is.
        if not (grad_output.dim() == 0 and grad_output.device.type == "cpu" and grad_output.item() == 1.0):
            grad = grad * grad_output
        return grad.to(ctx.logits_dtype), None, None, None, None, None, None


def fast_loss(
    logits: torch.Tensor,
    is_pos: torch.Tensor,
    is_neg: torch.Tensor,
    pos_weight: torch.Tensor,
    neg_weight: torch.Tensor,
    terms: AsymmetricTerms,
    scale: float | None,
) -> torch.Tensor:
    """Weighted and reduced loss with the closed-form gradient (arguments as in :func:`composed_loss`).

    When no gradient is wanted (evaluation, ``torch.no_grad``), the composed computation is cheaper and is used.

    NOTE: the gradient is computed in closed form, so this path supports first derivatives only; use the
    composed computation (``fast=False`` on the losses) for higher-order derivatives.
    """
    if not (logits.requires_grad and torch.is_grad_enabled()):
        return composed_loss(logits, pos_weight, neg_weight, terms, scale)
    return _ClosedFormLoss.apply(logits, is_pos, is_neg, pos_weight, neg_weight, terms, scale)
