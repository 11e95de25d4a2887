"""Behaviour of the multi-label loss family against independent float64 NumPy statements of each formula."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pipeline.losses as losses
from pipeline.losses import (
    AsymmetricLoss,
    AsymmetricPolynomialLoss,
    BinaryCrossEntropyLoss,
    FocalLoss,
    HillLoss,
    PolyLoss,
    RobustAsymmetricLoss,
    build_loss,
)

REPO = Path(__file__).resolve().parents[1]
REDUCTIONS = ("none", "mean", "sum")


# ----------------------------------------------------------------------------------------------------------------
# Independent NumPy statements of the formulas (element-wise, float64), written from the papers.


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _sigmoid(x):
    return np.exp(_log_sigmoid(x))


def np_bce(x, y, pos_weight=1.0):
    return -(pos_weight * y * _log_sigmoid(x) + (1 - y) * _log_sigmoid(-x))


def np_focal(x, y, gamma=2.0, alpha=None):
    p = _sigmoid(x)
    pos = -((1 - p) ** gamma) * _log_sigmoid(x)
    neg = -(p**gamma) * _log_sigmoid(-x)
    if alpha is not None:
        pos, neg = alpha * pos, (1 - alpha) * neg
    return y * pos + (1 - y) * neg


def _shifted(x, clip):
    """(p, p_m, q, log q) for the negative branch with probability margin m."""
    p = _sigmoid(x)
    q = np.minimum(_sigmoid(-x) + clip, 1.0)
    log_q = np.log(q) if clip > 0 else _log_sigmoid(-x)
    return p, 1.0 - q, q, log_q


def np_asl(x, y, gamma_pos=0.0, gamma_neg=4.0, clip=0.05):
    p, p_m, q, log_q = _shifted(x, clip)
    pos = -((1 - p) ** gamma_pos) * _log_sigmoid(x)
    neg = -(p_m**gamma_neg) * log_q
    return y * pos + (1 - y) * neg


def np_hill(x, y, lamb=1.5, margin=1.0, gamma=2.0):
    p_margin = _sigmoid(x - margin)
    p = _sigmoid(x)
    pos = -((1 - p_margin) ** gamma) * _log_sigmoid(x - margin)
    neg = (lamb - p) * p**2
    return y * pos + (1 - y) * neg


def np_poly(x, y, epsilon=1.0, gamma=0.0):
    p = _sigmoid(x)
    p_t = np.where(y == 1, p, 1 - p)
    log_p_t = np.where(y == 1, _log_sigmoid(x), _log_sigmoid(-x))
    return (1 - p_t) ** gamma * (-log_p_t + epsilon * (1 - p_t))


def np_apl(x, y, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, epsilon_pos=1.0, epsilon_pos_pow=-2.5, epsilon_neg=0.0):
    p, p_m, q, log_q = _shifted(x, clip)
    log_p = _log_sigmoid(x)
    pos = -((1 - p) ** gamma_pos) * (log_p + epsilon_pos * (1 - p) + epsilon_pos_pow / 2 * (1 - p) ** 2)
    neg = -(p_m**gamma_neg) * (log_q + epsilon_neg * q)
    return y * pos + (1 - y) * neg


def np_ral(
    x, y, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, epsilon_pos=1.0, epsilon_pos_pow=-2.5, epsilon_neg=0.0, lamb=1.5
):
    p, p_m, q, log_q = _shifted(x, clip)
    log_p = _log_sigmoid(x)
    pos = -((1 - p) ** gamma_pos) * (log_p + epsilon_pos * (1 - p) + epsilon_pos_pow / 2 * (1 - p) ** 2)
    neg = -(p_m**gamma_neg) * (log_q + epsilon_neg * q) * (lamb - p) * p**2 * (lamb - q)
    return y * pos + (1 - y) * neg


def np_reduce(elementwise, targets, weight, reduction, ignore_value=-1.0):
    counted = ~np.isnan(targets)
    if ignore_value is not None:
        counted &= targets != ignore_value
    loss = np.where(counted, elementwise, 0.0)
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / counted.sum() if counted.any() else 0.0


# (module class, NumPy statement, constructor keyword arguments) for default and non-default settings.
CASES = [
    (BinaryCrossEntropyLoss, np_bce, {}),
    (BinaryCrossEntropyLoss, np_bce, {"pos_weight": [0.5, 1.0, 2.0, 3.0, 1.5]}),
    (FocalLoss, np_focal, {"gamma": 2.0}),
    (FocalLoss, np_focal, {"gamma": 1.5, "alpha": 0.25}),
    (AsymmetricLoss, np_asl, {}),
    (AsymmetricLoss, np_asl, {"gamma_pos": 1.0, "gamma_neg": 3.0, "clip": 0.1}),
    (AsymmetricLoss, np_asl, {"gamma_pos": 0.5, "gamma_neg": 2.5, "clip": 0.0}),
    (AsymmetricLoss, np_asl, {"gamma_pos": 2.0, "gamma_neg": 0.5, "clip": 0.05}),
    (HillLoss, np_hill, {}),
    (HillLoss, np_hill, {"lamb": 2.0, "margin": 0.5, "gamma": 1.0}),
    (PolyLoss, np_poly, {}),
    (PolyLoss, np_poly, {"epsilon": -0.5, "gamma": 2.0}),
    (AsymmetricPolynomialLoss, np_apl, {}),
    (AsymmetricPolynomialLoss, np_apl, {"gamma_pos": 1.0, "clip": 0.0, "epsilon_neg": 0.5, "epsilon_pos": 2.0}),
    (RobustAsymmetricLoss, np_ral, {}),
    (RobustAsymmetricLoss, np_ral, {"gamma_pos": 1.0, "gamma_neg": 2.0, "clip": 0.0, "epsilon_neg": 0.5}),
    (RobustAsymmetricLoss, np_ral, {"gamma_neg": 3.0, "clip": 0.2, "epsilon_pos": -1.0, "lamb": 2.0}),
    (RobustAsymmetricLoss, np_ral, {"gamma_neg": 0.0, "clip": 0.0}),
    (RobustAsymmetricLoss, np_ral, {"gamma_neg": 0.0, "clip": 0.1, "epsilon_neg": -0.5}),
]
CASE_IDS = [f"{cls.__name__}-{i}" for i, (cls, _, _) in enumerate(CASES)]
NUM_CLASSES = 5  # the class vectors above have this many entries


def _make_data(seed, shape=(6, NUM_CLASSES), low=-6.0, high=6.0, masked=True):
    rng = np.random.default_rng(seed)
    logits = rng.uniform(low, high, size=shape)
    targets = (rng.random(shape) < 0.35).astype(np.float64)
    if masked:
        targets[rng.random(shape) < 0.15] = -1.0
        targets[rng.random(shape) < 0.1] = np.nan
    return logits, targets


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "composed"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("cls", "np_fn", "kwargs"), CASES, ids=CASE_IDS)
def test_matches_numpy_statement(cls, np_fn, kwargs, reduction, fast):
    logits, targets = _make_data(seed=len(kwargs) + len(reduction))
    weight = np.linspace(0.5, 2.0, logits.shape[1])
    clean_targets = np.nan_to_num(targets, nan=0.0).clip(0, 1)
    for class_weight in (None, weight):
        expected = np_reduce(np_fn(logits, clean_targets, **kwargs), targets, class_weight, reduction)
        loss_fn = cls(**kwargs, reduction=reduction, weight=class_weight, fast=fast)
        x = torch.tensor(logits, requires_grad=True)
        actual = loss_fn(x, torch.tensor(targets))
        np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "composed"])
def test_ral_extreme_logits_sum_float64(fast):
    rng = np.random.default_rng(7)
    logits = rng.uniform(-18.0, 30.0, size=(64, 26))
    logits[0, :4] = [-18.0, 30.0, -17.99, 29.99]
    targets = (rng.random(logits.shape) < 0.5).astype(np.float64)
    expected = np_ral(logits, targets).sum()
    actual = RobustAsymmetricLoss(reduction="sum", fast=fast)(torch.tensor(logits), torch.tensor(targets))
    assert abs(actual.item() - expected) <= 1e-6 * abs(expected)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "composed"])
def test_values_stay_right_beyond_float32_underflow(fast):
    """A positive at logit -120 (sigmoid underflows in float32) still costs about 120, with gradient -1."""
    x = torch.tensor([[-120.0, 120.0, -120.0]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 0.0]])
    loss = BinaryCrossEntropyLoss(reduction="none", fast=fast)(x, y)
    loss.sum().backward()
    expected = np_bce(np.array([[-120.0, 120.0, -120.0]]), y.numpy())
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), [[-1.0, 1.0, 0.0]], atol=1e-6)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "composed"])
@pytest.mark.parametrize(("cls", "np_fn", "kwargs"), CASES[::2], ids=CASE_IDS[::2])
def test_float32_accuracy(cls, np_fn, kwargs, fast):
    """float32 values and gradients stay within float32 rounding of the float64 statement."""
    logits, targets = _make_data(seed=21, shape=(256, NUM_CLASSES), low=-20.0, high=20.0, masked=False)
    expected = np_fn(logits, targets, **kwargs)
    x64 = torch.tensor(logits, requires_grad=True)
    cls(**kwargs, reduction="sum")(x64, torch.tensor(targets)).backward()
    x32 = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
    loss = cls(**kwargs, reduction="sum", fast=fast)(x32, torch.tensor(targets, dtype=torch.float32))
    loss.backward()
    assert abs(loss.item() - expected.sum()) <= 1e-5 * abs(expected.sum())
    np.testing.assert_allclose(x32.grad.numpy(), x64.grad.numpy(), atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Fast path against the composed path, and gradcheck.


@pytest.mark.parametrize(("cls", "np_fn", "kwargs"), CASES, ids=CASE_IDS)
def test_fast_gradient_equals_autograd_gradient(cls, np_fn, kwargs):
    logits, targets = _make_data(seed=3, shape=(16, NUM_CLASSES), low=-12.0, high=12.0)
    weight = torch.linspace(0.2, 1.5, NUM_CLASSES, dtype=torch.float64)
    grads = []
    for fast in (True, False):
        x = torch.tensor(logits, requires_grad=True)
        cls(**kwargs, weight=weight, fast=fast)(x, torch.tensor(targets)).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)


# The composed path's gradient is autograd's own and is compared with the fast path's above, so the numerical
# check runs on the fast path for every case and on the composed path for RAL.
@pytest.mark.parametrize(
    ("cls", "np_fn", "kwargs", "fast"),
    [(*case, True) for case in CASES] + [(RobustAsymmetricLoss, np_ral, {}, False)],
    ids=[f"{case_id}-fast" for case_id in CASE_IDS] + ["RobustAsymmetricLoss-composed"],
)
def test_gradcheck(cls, np_fn, kwargs, fast):
    logits, targets = _make_data(seed=11, shape=(4, NUM_CLASSES), low=-4.0, high=4.0)
    y = torch.tensor(targets)
    for reduction in ("mean", "none"):
        loss_fn = cls(**kwargs, reduction=reduction, weight=[1.0, 0.5, 2.0, 1.5, 0.7], fast=fast)
        x = torch.tensor(logits, requires_grad=True)
        check = torch.autograd.gradcheck
        assert check(lambda inp, fn=loss_fn: fn(inp, y), (x,), eps=1e-6, atol=1e-7, fast_mode=reduction == "none")


def test_fast_path_saved_gradient_survives_retained_graph_and_grad_reset():
    x = torch.randn(6, 4, requires_grad=True)
    y = (torch.rand(6, 4) < 0.4).float()
    loss = RobustAsymmetricLoss()(x, y)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    x.grad.zero_()
    loss.backward(retain_graph=True)
    torch.testing.assert_close(x.grad, first)
    (3.0 * loss).backward()
    torch.testing.assert_close(x.grad, 4.0 * first)


def test_fast_path_is_a_custom_function_and_composed_supports_double_backward():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(5, 4) < 0.5).double()
    assert type(RobustAsymmetricLoss(fast=True)(x, y).grad_fn).__name__.startswith("_ClosedFormLoss")
    assert torch.autograd.gradgradcheck(lambda inp: RobustAsymmetricLoss(fast=False)(inp, y), (x,))


# ----------------------------------------------------------------------------------------------------------------
# Limiting cases, values and gradients.


def _values_and_grads(loss_fn, logits, targets):
    x = logits.clone().requires_grad_(True)
    loss = loss_fn(x, targets)
    loss.backward()
    return loss.detach(), x.grad


def _assert_same_loss(fn_a, fn_b, logits, targets):
    value_a, grad_a = _values_and_grads(fn_a, logits, targets)
    value_b, grad_b = _values_and_grads(fn_b, logits, targets)
    torch.testing.assert_close(value_a, value_b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad_a, grad_b, rtol=1e-10, atol=1e-12)


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 9, generator=generator, dtype=torch.float64) * 5
    targets = (torch.rand(32, 9, generator=generator) < 0.3).double()
    return logits, targets


def torch_bce(x, y):
    return F.binary_cross_entropy_with_logits(x, y, reduction="sum")


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "composed"])
def test_limits_reduce_to_bce(batch, fast):
    logits, targets = batch
    reduced = [
        BinaryCrossEntropyLoss(reduction="sum", fast=fast),
        FocalLoss(gamma=0.0, reduction="sum", fast=fast),
        AsymmetricLoss(gamma_pos=0.0, gamma_neg=0.0, clip=0.0, reduction="sum", fast=fast),
        PolyLoss(epsilon=0.0, reduction="sum", fast=fast),
        RobustAsymmetricLoss(
            gamma_pos=0.0, gamma_neg=0.0, clip=0.0, epsilon_pos=0.0, epsilon_pos_pow=0.0, epsilon_neg=0.0,
            hill=False, reduction="sum", fast=fast,
        ),
    ]  # fmt: skip
    for loss_fn in reduced:
        _assert_same_loss(loss_fn, torch_bce, logits, targets)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "composed"])
def test_bce_pos_weight_matches_torch(batch, fast):
    logits, targets = batch
    pos_weight = torch.linspace(0.5, 4.0, 9, dtype=torch.float64)
    ours = BinaryCrossEntropyLoss(pos_weight=pos_weight.tolist(), reduction="mean", fast=fast)
    reference = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    _assert_same_loss(ours, reference, logits, targets)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "composed"])
def test_ral_without_hill_is_apl_and_asl(batch, fast):
    logits, targets = batch
    settings = {"gamma_pos": 1.0, "gamma_neg": 3.0, "clip": 0.1}
    _assert_same_loss(
        RobustAsymmetricLoss(**settings, epsilon_pos=0.7, epsilon_pos_pow=-1.5, epsilon_neg=0.3, hill=False, fast=fast),
        AsymmetricPolynomialLoss(**settings, epsilon_pos=0.7, epsilon_pos_pow=-1.5, epsilon_neg=0.3, fast=fast),
        logits,
        targets,
    )
    _assert_same_loss(
        RobustAsymmetricLoss(**settings, epsilon_pos=0.0, epsilon_pos_pow=0.0, epsilon_neg=0.0, hill=False, fast=fast),
        AsymmetricLoss(**settings, fast=fast),
        logits,
        targets,
    )


def test_paper_polynomial_coefficients_match_reference_form():
    """The positive branch equals sum_k alpha_k (1 - p)^k with alpha_1 = 1 - eps1, alpha_2 = (1 - eps2)/2, 1/k."""
    logits = np.linspace(-3.0, 3.0, 13)
    one_minus_p = 1 - _sigmoid(logits)
    eps1, eps2 = 1.0, -2.5
    alphas = [1 - eps1, (1 - eps2) / 2] + [1.0 / k for k in range(3, 400)]
    series = sum(a * one_minus_p ** (k + 1) for k, a in enumerate(alphas))
    ours = RobustAsymmetricLoss(reduction="none")(torch.tensor(logits)[None], torch.ones(1, 13, dtype=torch.float64))
    np.testing.assert_allclose(ours[0].numpy(), series, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------------------------------------------
# Masking of unknown labels.


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "composed"])
@pytest.mark.parametrize("name", ["bce", "focal", "asl", "hill", "poly", "apl", "ral"])
def test_masked_elements_give_no_loss_and_no_gradient(name, fast):
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 5, generator=generator, dtype=torch.float64) * 3
    targets = (torch.rand(8, 5, generator=generator) < 0.4).double()
    masked = torch.rand(8, 5, generator=generator) < 0.3
    masked[0, 0] = masked[1, 1] = True
    targets_masked = targets.clone()
    targets_masked[masked] = -1.0
    targets_masked[0, 0] = float("nan")

    loss_fn = build_loss(name, reduction="none", fast=fast)
    x = logits.clone().requires_grad_(True)
    per_element = loss_fn(x, targets_masked)
    per_element.sum().backward()
    assert torch.all(per_element[masked] == 0)
    assert torch.all(x.grad[masked] == 0)
    assert x.grad[~masked].abs().sum() > 0

    # "mean" divides by the counted elements only, and changing a masked logit changes nothing.
    mean = build_loss(name, reduction="mean", fast=fast)(logits, targets_masked)
    torch.testing.assert_close(mean, per_element.detach().sum() / (~masked).sum())
    moved = logits.clone()
    moved[masked] += 10.0
    torch.testing.assert_close(build_loss(name, reduction="mean", fast=fast)(moved, targets_masked), mean)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "composed"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_all_masked_gives_zero_loss_and_zero_gradient(reduction, fast):
    x = torch.randn(3, 4, requires_grad=True)
    targets = torch.full((3, 4), -1.0)
    targets[0] = float("nan")
    loss = RobustAsymmetricLoss(reduction=reduction, fast=fast)(x, targets)
    loss.sum().backward()
    assert torch.all(loss == 0)
    assert torch.all(x.grad == 0)


def test_ignore_value_can_be_changed_or_disabled():
    x = torch.randn(2, 3, dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.0, 9.0], [float("nan"), 1.0, 0.0]], dtype=torch.float64)
    loss = RobustAsymmetricLoss(ignore_value=9.0, reduction="none")(x, targets)
    assert loss[0, 2] == 0 and loss[1, 0] == 0 and torch.all(loss[0, :2] > 0)
    with pytest.raises(ValueError, match="targets must be"):
        RobustAsymmetricLoss(ignore_value=None)(x, torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]]))
    # NaN stays masked with ignore_value=None.
    assert torch.isfinite(RobustAsymmetricLoss(ignore_value=None)(x, targets.nan_to_num(0.0).clamp(0, 1)))


def test_integer_and_boolean_targets_are_accepted():
    x = torch.randn(4, 3, dtype=torch.float64)
    targets = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    reference = RobustAsymmetricLoss()(x, targets.double())
    torch.testing.assert_close(RobustAsymmetricLoss()(x, targets), reference)
    torch.testing.assert_close(RobustAsymmetricLoss()(x, targets.bool()), reference)


# ----------------------------------------------------------------------------------------------------------------
# Low precision and autocast.


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "composed"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["bce", "focal", "asl", "hill", "poly", "apl", "ral"])
def test_half_precision_logits_give_finite_float32_loss_and_grads(name, dtype, fast):
    logits = torch.tensor([[-100.0, 100.0, -30.0, 0.5], [100.0, -100.0, 30.0, -0.5]], dtype=dtype)
    targets = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
    x = logits.clone().requires_grad_(True)
    loss = build_loss(name, reduction="sum", fast=fast)(x, targets)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert x.grad.dtype == dtype and torch.all(torch.isfinite(x.grad))


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "composed"])
@pytest.mark.parametrize("name", ["asl", "apl", "ral", "poly", "focal"])
def test_hard_positive_keeps_bce_like_gradient(name, fast):
    """A positive at logit -30 (where log(max(p, 1e-8)) would give zero gradient) learns like BCE."""
    x = torch.tensor([[-30.0]], requires_grad=True)
    loss_fn = build_loss(name, reduction="sum", fast=fast)
    loss_fn(x, torch.ones(1, 1)).backward()
    x_bce = torch.tensor([[-30.0]], requires_grad=True)
    torch_bce(x_bce, torch.ones(1, 1)).backward()
    assert x.grad.item() != 0
    assert abs(x.grad.item() - x_bce.grad.item()) <= 1e-3


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "composed"])
def test_autocast_cpu_bfloat16_large_logits(fast):
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 6)
    with torch.no_grad():
        model.weight.mul_(400.0)  # logits of order +-100
    inputs = torch.randn(16, 8)
    targets = (torch.rand(16, 6) < 0.3).float()
    targets[0, 0] = -1.0
    for name in ("ral", "asl", "hill", "focal"):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(inputs)
            assert logits.dtype == torch.bfloat16
            loss = build_loss(name, fast=fast)(logits, targets)
        loss.backward()
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        assert logits.abs().max() > 50
        assert all(torch.all(torch.isfinite(p.grad)) for p in model.parameters())


def test_global_autograd_state_is_never_touched(monkeypatch):
    x = torch.randn(4, 3, requires_grad=True)
    y = (torch.rand(4, 3) < 0.5).float()
    for fast in (True, False):
        with torch.no_grad():
            assert not RobustAsymmetricLoss(fast=fast)(x, y).requires_grad

    def forbidden(*args, **kwargs):
        raise AssertionError("the loss changed global autograd state")

    monkeypatch.setattr(torch, "set_grad_enabled", forbidden)
    monkeypatch.setattr(torch.autograd.grad_mode, "set_grad_enabled", forbidden)
    for fast in (True, False):
        loss = RobustAsymmetricLoss(fast=fast)(x, y)
        assert torch.is_grad_enabled() and loss.requires_grad
        loss.backward()


# ----------------------------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RobustAsymmetricLoss(reduction="avg"), "reduction"),
        (lambda: AsymmetricLoss(gamma_neg=-1.0), "gamma_neg"),
        (lambda: AsymmetricLoss(gamma_pos=-0.5), "gamma_pos"),
        (lambda: FocalLoss(gamma=-2.0), "gamma"),
        (lambda: HillLoss(gamma=-1.0), "gamma"),
        (lambda: PolyLoss(gamma=-1.0), "gamma"),
        (lambda: RobustAsymmetricLoss(clip=1.0), "clip"),
        (lambda: RobustAsymmetricLoss(clip=-0.1), "clip"),
        (lambda: RobustAsymmetricLoss(lamb=0.5), "lamb"),
        (lambda: RobustAsymmetricLoss(epsilon_pos=float("nan")), "epsilon_pos"),
        (lambda: FocalLoss(alpha=1.5), "alpha"),
        (lambda: HillLoss(margin=float("inf")), "margin"),
        (lambda: RobustAsymmetricLoss(ignore_value=1.0), "ignore_value"),
        (lambda: RobustAsymmetricLoss(weight=[[1.0, 2.0]]), "weight"),
        (lambda: RobustAsymmetricLoss(weight=[1.0, -2.0]), "weight"),
        (lambda: BinaryCrossEntropyLoss(pos_weight=[]), "pos_weight"),
        (lambda: build_loss("softmax_focal"), "unknown loss"),
    ],
)
def test_bad_settings_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "composed"])
def test_bad_inputs_raise_value_error(fast):
    x = torch.randn(4, 3)
    loss_fn = RobustAsymmetricLoss(fast=fast)
    with pytest.raises(ValueError, match=r"same shape.*\(4, 3\).*\(4, 2\)"):
        loss_fn(x, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"targets must be.*0\.5"):
        loss_fn(x, torch.full((4, 3), 0.5))
    with pytest.raises(ValueError, match=r"targets must be.*2\.0"):
        loss_fn(x, torch.tensor([[1.0, 0.0, 2.0]] * 4))
    with pytest.raises(ValueError, match="weight"):
        RobustAsymmetricLoss(weight=[1.0, 2.0], fast=fast)(x, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="reduction"):
        losses.robust_asymmetric_loss(x, torch.zeros(4, 3), reduction="batchmean")
    with pytest.raises(ValueError, match="gamma_neg"):
        losses.asymmetric_loss(x, torch.zeros(4, 3), gamma_neg=-4.0)


# ----------------------------------------------------------------------------------------------------------------
# Functional forms, registry and bundle configs.


def test_functional_forms_equal_modules(batch):
    logits, targets = batch
    pairs = [
        (losses.binary_cross_entropy_loss, BinaryCrossEntropyLoss),
        (losses.focal_loss, FocalLoss),
        (losses.asymmetric_loss, AsymmetricLoss),
        (losses.hill_loss, HillLoss),
        (losses.poly_loss, PolyLoss),
        (losses.asymmetric_polynomial_loss, AsymmetricPolynomialLoss),
        (losses.robust_asymmetric_loss, RobustAsymmetricLoss),
    ]
    for function, module in pairs:
        torch.testing.assert_close(function(logits, targets, reduction="sum"), module(reduction="sum")(logits, targets))


def test_registry_names_map_to_classes():
    expected = {
        "bce": BinaryCrossEntropyLoss, "focal": FocalLoss, "asl": AsymmetricLoss, "hill": HillLoss,
        "poly": PolyLoss, "apl": AsymmetricPolynomialLoss, "ral": RobustAsymmetricLoss,
    }  # fmt: skip
    for name, cls in expected.items():
        assert type(build_loss(name)) is cls
        assert type(build_loss(name.upper())) is cls
    assert build_loss("ral", gamma_neg=2.0, reduction="sum").terms.gamma_neg == 2.0


def _train_one_step(loss_fn):
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 5)
    inputs = torch.randn(32, 10)
    targets = (torch.rand(32, 5) < 0.3).float()
    targets[0, :2] = -1.0
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_before = loss_fn(model(inputs), targets)
    loss_before.backward()
    optimizer.step()
    with torch.no_grad():
        loss_after = loss_fn(model(inputs), targets)
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    finite = all(torch.all(torch.isfinite(p)) for p in model.parameters())
    return loss_before.item(), loss_after.item(), changed, finite


LOSS_CONFIG_FILES = sorted((REPO / "configs" / "loss").glob("*.json"))


def test_every_loss_has_a_config_file():
    names = {path.stem for path in LOSS_CONFIG_FILES}
    assert {"bce", "focal", "asl", "hill", "poly", "apl", "ral"} <= names


@pytest.mark.parametrize("path", LOSS_CONFIG_FILES, ids=[p.stem for p in LOSS_CONFIG_FILES])
def test_config_files_build_a_loss_that_trains(path):
    from monai.bundle import ConfigParser

    content = json.loads(path.read_text())
    assert set(content) == {"loss"}
    parser = ConfigParser(content)
    loss_fn = parser.get_parsed_content("loss")
    assert isinstance(loss_fn, torch.nn.Module) and loss_fn.reduction == "mean"
    before, after, changed, finite = _train_one_step(loss_fn)
    assert changed and finite and np.isfinite(before) and after < before


MULTILABEL_CLASSES = sorted(
    c.__name__ for c in losses.LOSSES.values() if c is not losses.SingleLabelRobustAsymmetricLoss
)


@pytest.mark.parametrize("target", MULTILABEL_CLASSES)
def test_every_class_builds_from_a_bundle_target(target):
    from monai.bundle import ConfigParser

    parser = ConfigParser({"loss": {"_target_": f"pipeline.losses.{target}", "reduction": "mean", "weight": None}})
    before, after, changed, finite = _train_one_step(parser.get_parsed_content("loss"))
    assert changed and finite and after < before
