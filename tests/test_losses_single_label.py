"""Behaviour of the single-label (softmax) robust asymmetric loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.losses import SingleLabelRobustAsymmetricLoss, build_loss, single_label_robust_asymmetric_loss


def _log_sum_exp(values, axis):
    top = values.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(values - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def np_softmax_ral(
    logits,
    labels,
    gamma_pos=0.0,
    gamma_neg=4.0,
    clip=0.05,
    epsilon_pos=1.0,
    epsilon_pos_pow=-2.5,
    epsilon_neg=0.0,
    lamb=1.5,
    hill=True,
    weight=None,
):
    """Per-sample loss in float64; labels are class indices, -100 leaves the sample out (loss 0)."""
    batch, num_classes = logits.shape
    log_total = _log_sum_exp(logits, axis=1)[:, None]
    log_p = logits - log_total
    p = np.exp(log_p)
    # log(1 - p_c) = log sum_{j != c} exp(x_j) - log sum_j exp(x_j)
    log_rest = np.stack([_log_sum_exp(np.delete(logits, c, axis=1), axis=1) for c in range(num_classes)], axis=1)
    log_one_minus_p = log_rest - log_total
    q = np.minimum(np.exp(log_one_minus_p) + clip, 1.0)
    log_q = np.log(q) if clip > 0 else log_one_minus_p
    p_m = 1.0 - q if clip > 0 else p
    pos = -((1 - p) ** gamma_pos) * (log_p + epsilon_pos * (1 - p) + epsilon_pos_pow / 2 * (1 - p) ** 2)
    neg = -(p_m**gamma_neg) * (log_q + epsilon_neg * q)
    if hill:
        neg = neg * (lamb - p) * p**2 * (lamb - q)
    counted = labels != -100
    one_hot = np.zeros((batch, num_classes))
    one_hot[np.arange(batch)[counted], labels[counted]] = 1.0
    elementwise = one_hot * pos + (1 - one_hot) * neg
    if weight is not None:
        elementwise = elementwise * weight
    return np.where(counted, elementwise.sum(axis=1), 0.0)


SETTINGS = [
    {},
    {"hill": False},
    {"gamma_pos": 1.0, "gamma_neg": 2.0, "clip": 0.0, "epsilon_neg": 0.5, "lamb": 2.0},
    {"gamma_neg": 0.0, "clip": 0.0, "epsilon_pos": 0.0, "epsilon_pos_pow": 0.0, "hill": False},
]


def _data(seed, batch=7, num_classes=5, scale=4.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, num_classes)) * scale
    labels = rng.integers(0, num_classes, size=batch)
    labels[1] = -100
    return logits, labels


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("settings", SETTINGS, ids=[str(i) for i in range(len(SETTINGS))])
def test_matches_numpy_statement(settings, reduction):
    logits, labels = _data(seed=len(settings))
    weight = np.linspace(0.5, 1.5, logits.shape[1])
    for class_weight in (None, weight):
        per_sample = np_softmax_ral(logits, labels, **settings, weight=class_weight)
        counted = (labels != -100).sum()
        expected = {"none": per_sample, "sum": per_sample.sum(), "mean": per_sample.sum() / counted}[reduction]
        loss_fn = SingleLabelRobustAsymmetricLoss(**settings, weight=class_weight, reduction=reduction)
        actual = loss_fn(torch.tensor(logits), torch.tensor(labels))
        np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_one_hot_targets_equal_class_indices():
    logits, labels = _data(seed=3)
    one_hot = np.zeros_like(logits)
    counted = labels != -100
    one_hot[np.arange(len(labels))[counted], labels[counted]] = 1.0
    one_hot[~counted] = -1.0  # a row holding the ignore value is left out
    x = torch.tensor(logits)
    from_indices = single_label_robust_asymmetric_loss(x, torch.tensor(labels), reduction="none")
    from_one_hot = single_label_robust_asymmetric_loss(x, torch.tensor(one_hot), reduction="none")
    torch.testing.assert_close(from_indices, from_one_hot)
    assert from_indices[1] == 0


def test_all_off_is_cross_entropy_plus_negative_log_terms():
    logits, labels = _data(seed=5)
    labels[1] = 0
    x = torch.tensor(logits)
    y = torch.tensor(labels)
    probs = torch.softmax(x, dim=1)
    one_hot = torch.nn.functional.one_hot(y, logits.shape[1]).double()
    expected = torch.nn.functional.cross_entropy(x, y, reduction="sum") - ((1 - one_hot) * torch.log1p(-probs)).sum()
    actual = single_label_robust_asymmetric_loss(x, y, **SETTINGS[3], epsilon_neg=0.0, reduction="sum")
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("settings", SETTINGS, ids=[str(i) for i in range(len(SETTINGS))])
def test_gradcheck(settings):
    logits, labels = _data(seed=9, batch=4, num_classes=4, scale=2.0)
    y = torch.tensor(labels)
    for reduction in ("mean", "none"):
        loss_fn = SingleLabelRobustAsymmetricLoss(**settings, reduction=reduction, weight=[1.0, 2.0, 0.5, 1.0])
        x = torch.tensor(logits, requires_grad=True)
        check = torch.autograd.gradcheck
        assert check(lambda inp, fn=loss_fn: fn(inp, y), (x,), eps=1e-6, atol=1e-7, fast_mode=reduction == "none")


def test_confidently_wrong_prediction_stays_finite_and_learns():
    x = torch.tensor([[80.0, 0.0, -5.0], [0.0, 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([1, 2])
    loss = SingleLabelRobustAsymmetricLoss(reduction="sum")(x, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(x.grad))
    assert x.grad[0, 0] > 0 and x.grad[0, 1] < 0  # push the wrong class down, the target class up
    assert loss > 70  # the target class has log p of about -80


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_give_float32_loss(dtype):
    x = torch.tensor([[60.0, -60.0, 0.0], [-60.0, 60.0, 10.0]], dtype=dtype, requires_grad=True)
    loss = SingleLabelRobustAsymmetricLoss()(x, torch.tensor([1, 0]))
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert x.grad.dtype == dtype and torch.all(torch.isfinite(x.grad))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_all_samples_ignored_gives_zero_loss_and_gradient(reduction):
    x = torch.randn(3, 4, requires_grad=True)
    loss = SingleLabelRobustAsymmetricLoss(reduction=reduction)(x, torch.full((3,), -100))
    loss.sum().backward()
    assert torch.all(loss == 0) and torch.all(x.grad == 0)


def test_bad_inputs_raise_value_error():
    loss_fn = SingleLabelRobustAsymmetricLoss()
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 4\).*\[4\]"):
        loss_fn(x, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match="integer class indices"):
        loss_fn(x, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="exactly one 1"):
        loss_fn(x, torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 3))
    with pytest.raises(ValueError, match="targets must be"):
        loss_fn(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"C >= 2"):
        loss_fn(torch.randn(3, 1), torch.tensor([0, 0, 0]))
    with pytest.raises(ValueError, match="reduction"):
        SingleLabelRobustAsymmetricLoss(reduction="batch")
    with pytest.raises(ValueError, match="gamma_neg"):
        SingleLabelRobustAsymmetricLoss(gamma_neg=-1.0)
    with pytest.raises(ValueError, match="weight"):
        SingleLabelRobustAsymmetricLoss(weight=[1.0, 2.0])(x, torch.tensor([0, 1, 2]))


def test_registry_and_training_step():
    loss_fn = build_loss("ral_softmax", reduction="mean")
    assert isinstance(loss_fn, SingleLabelRobustAsymmetricLoss)
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 4)
    inputs, labels = torch.randn(32, 6), torch.randint(0, 4, (32,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = loss_fn(model(inputs), labels)
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss_fn(model(inputs), labels)
    assert after < before
