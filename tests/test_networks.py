"""Tests for pipeline.networks: building, training a step, and loading local weights under several naming schemes."""

from __future__ import annotations

import logging
import re

import pytest
import torch
import torchvision
from monai.bundle import ConfigParser
from torch import nn

from pipeline.networks import NETWORK_NAMES, LoadReport, build_network, load_pretrained

NUM_CLASSES = 26


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from threads, and on a busy 2-core machine two threads spin-wait for seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_build_forward_and_one_sgd_step(name):
    """One training step on a 1-channel build; the 3-channel build is only run forward (same code past the stem)."""
    network = build_network(name, NUM_CLASSES, 1, dropout=0.1)
    images = torch.rand(2, 1, 64, 64)
    targets = torch.tensor([[1.0, 0.0] * (NUM_CLASSES // 2), [0.0, 1.0] * (NUM_CLASSES // 2)])
    before = {key: param.detach().clone() for key, param in network.named_parameters()}

    network.train()
    optimiser = torch.optim.SGD(network.parameters(), lr=0.1)
    logits = network(images)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, targets)
    loss.backward()
    optimiser.step()

    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(loss)
    changed = [key for key, param in network.named_parameters() if not torch.equal(before[key], param)]
    assert len(changed) > len(before) // 2
    assert all(torch.isfinite(param).all() for param in network.parameters())

    rgb_network = build_network(name, NUM_CLASSES, 3).eval()
    with torch.no_grad():
        rgb_logits = rgb_network(torch.rand(2, 3, 64, 64))
    assert rgb_logits.shape == (2, NUM_CLASSES) and torch.isfinite(rgb_logits).all()
    with pytest.raises(RuntimeError):  # the stem really expects 3 channels
        rgb_network(images)


def test_convnext_options_reach_the_modules():
    network = build_network("ConvNeXt-Tiny", 5, 1, drop_path_rate=0.3, dropout=0.25)

    depths = [module.p for module in network.modules() if isinstance(module, torchvision.ops.StochasticDepth)]
    dropouts = [module.p for module in network.classifier.modules() if isinstance(module, nn.Dropout)]
    assert depths[0] == 0.0 and depths[-1] == pytest.approx(0.3)
    assert dropouts == [0.25]
    assert network.features[0][0].in_channels == 1
    assert network.classifier[2].out_features == 5


def test_densenet_maps_dropout_and_warns_about_drop_path():
    with pytest.warns(UserWarning, match="drop_path_rate"):
        network = build_network("densenet121", 3, 1, dropout=0.2, drop_path_rate=0.1)
    dropouts = [module for module in network.modules() if isinstance(module, (nn.Dropout, nn.Dropout2d))]
    assert len(dropouts) == 6 + 12 + 24 + 16  # one after every dense layer
    assert {type(module) for module in dropouts} == {nn.Dropout2d} and {module.p for module in dropouts} == {0.2}


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"name": "resnet50"}, "unknown network 'resnet50'"),
        ({"num_classes": 0}, "num_classes must be a positive integer, got 0"),
        ({"in_channels": 2.5}, "in_channels must be a positive integer, got 2.5"),
        ({"dropout": 1.0}, r"dropout must be a probability in \[0, 1\), got 1.0"),
        ({"drop_path_rate": -0.1}, "drop_path_rate must be a probability"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, pattern):
    arguments = {"name": "densenet121", "num_classes": 2, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        build_network(**arguments)


def test_usable_as_bundle_target():
    parser = ConfigParser(
        {"network": {"_target_": "pipeline.networks.build_network", "name": "densenet121", "num_classes": 14}}
    )
    network = parser.get_parsed_content("network")
    assert network(torch.rand(1, 1, 64, 64)).shape == (1, 14)


# --- ConvNeXt weights under three naming schemes -------------------------------------------------------------------


def _to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ConvNeXt state dict to timm's names (written independently of the library)."""
    block_parts = {"block.0": "conv_dw", "block.2": "norm", "block.3": "mlp.fc1", "block.5": "mlp.fc2"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith("features.0."):
            new_key = "stem." + ".".join(parts[2:])
        elif key.startswith("features."):
            position = int(parts[1])
            if position % 2 == 1:  # blocks of stage (position - 1) / 2
                stage, block, rest = (position - 1) // 2, parts[2], ".".join(parts[3:])
                if rest == "layer_scale":
                    new_key, value = f"stages.{stage}.blocks.{block}.gamma", value.flatten()
                else:
                    part = ".".join(rest.split(".")[:2])
                    new_key = f"stages.{stage}.blocks.{block}.{block_parts[part]}.{rest.split('.')[2]}"
            else:  # downsampling that opens stage position / 2
                new_key = f"stages.{position // 2}.downsample.{'.'.join(parts[2:])}"
        else:
            new_key = key.replace("classifier.0.", "head.norm.").replace("classifier.2.", "head.fc.")
        out[new_key] = value
    return out


def _to_facebook(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename timm names to those of the original facebookresearch release."""
    out = {}
    for key, value in _to_timm(state).items():
        key = key.replace("stem.", "downsample_layers.0.")
        key = re.sub(r"^stages\.(\d+)\.downsample\.", r"downsample_layers.\1.", key)
        key = re.sub(r"^stages\.(\d+)\.blocks\.", r"stages.\1.", key)
        key = key.replace("conv_dw", "dwconv").replace("mlp.fc", "pwconv")
        key = key.replace("head.norm.", "norm.").replace("head.fc.", "head.")
        out[key] = value
    return out


@pytest.fixture(scope="module")
def imagenet_like_convnext():
    """A freshly initialised torchvision ConvNeXt-tiny with ImageNet's shape: 3 channels, 1000 classes."""
    torch.manual_seed(1)
    source = torchvision.models.convnext_tiny(weights=None)
    with torch.no_grad():  # distinct non-default values, so that a tensor left at its initial value is noticed
        for param in source.parameters():
            param.add_(torch.randn_like(param) * 0.01)
    return source.eval()


@pytest.mark.parametrize("scheme", ["torchvision", "timm", "facebook"])
def test_convnext_weights_load_adapt_stem_and_reinitialise_head(tmp_path, imagenet_like_convnext, scheme, caplog):
    state = imagenet_like_convnext.state_dict()
    renamed = {"torchvision": dict, "timm": _to_timm, "facebook": _to_facebook}[scheme](state)
    assert scheme == "torchvision" or set(renamed).isdisjoint(state)
    path = tmp_path / f"convnext_tiny_{scheme}.pt"
    torch.save(renamed, path)

    with caplog.at_level(logging.INFO, logger="pipeline.networks"):
        network = build_network("convnext_tiny", NUM_CLASSES, 1, pretrained=str(path))
    report = network.load_report

    assert isinstance(report, LoadReport) and report.scheme == scheme
    assert report.adapted == ["features.0.0.weight"]
    assert sorted(report.reinitialised) == ["classifier.2.bias", "classifier.2.weight"]
    assert report.unexpected == []
    assert len(report.loaded) == len(state) - 3
    assert 0.95 < report.loaded_fraction < 1.0
    assert "re-initialised 2" in caplog.text and str(path) in caplog.text

    loaded = network.state_dict()
    for key in report.loaded:
        torch.testing.assert_close(loaded[key], state[key], rtol=0, atol=0)
    # A grey image through the summed 1-channel stem equals the same image copied to RGB through the original stem.
    grey = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            network.features[0](grey), imagenet_like_convnext.features[0](grey.repeat(1, 3, 1, 1))
        )


def test_three_channel_weights_into_three_channels_load_unchanged(tmp_path, imagenet_like_convnext):
    path = tmp_path / "convnext_tiny.pt"
    torch.save({"model": imagenet_like_convnext.state_dict()}, path)

    network = build_network("convnext_tiny", 1000, 3, pretrained=path)

    report = network.load_report
    assert report.adapted == [] and report.reinitialised == [] and report.loaded_fraction == 1.0
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(network.eval()(images), imagenet_like_convnext(images))


# --- DenseNet weights ----------------------------------------------------------------------------------------------


def _old_torchvision_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key): value for key, value in state.items()
    }


@pytest.mark.parametrize(
    ("source", "wrap"),
    [
        ("monai", lambda state: state),
        ("torchvision", lambda state: {"state_dict": {"module." + key: value for key, value in state.items()}}),
        ("torchvision_old", lambda state: {"model": state}),
    ],
)
def test_densenet_weights_load(tmp_path, source, wrap):
    if source == "monai":
        fresh = build_network("densenet121", 1000, 3).state_dict()
    else:
        fresh = torchvision.models.densenet121(weights=None).state_dict()
    # Perturbed so that values left at their initial state (running_var = 1, for instance) are told apart.
    state = {
        key: value + torch.rand_like(value) if value.is_floating_point() else value for key, value in fresh.items()
    }
    saved = _old_torchvision_names(state) if source == "torchvision_old" else state
    assert source != "torchvision_old" or any(".norm.1." in key for key in saved)
    path = tmp_path / "densenet.pt"
    torch.save(wrap(saved), path)

    network = build_network("densenet121", NUM_CLASSES, 1, pretrained=path)

    report = network.load_report
    assert report.scheme == source.split("_")[0]
    assert report.adapted == ["features.conv0.weight"]
    assert sorted(report.reinitialised) == ["class_layers.out.bias", "class_layers.out.weight"]
    assert report.unexpected == [] and len(report.mismatched) == 2
    assert report.loaded_fraction > 0.95
    loaded = network.state_dict()
    torch.testing.assert_close(loaded["features.conv0.weight"], state["features.conv0.weight"].sum(1, keepdim=True))
    dense_layer = "features.denseblock4.denselayer16.layers.conv2.weight"
    for key in ("features.norm5.running_var", dense_layer):
        torch.testing.assert_close(loaded[key], state[key.replace("layers.", "")] if source != "monai" else state[key])


# --- files that must not load --------------------------------------------------------------------------------------


def test_weights_of_another_architecture_raise(tmp_path, imagenet_like_convnext):
    path = tmp_path / "convnext.pt"
    torch.save(imagenet_like_convnext.state_dict(), path)

    with pytest.raises(ValueError, match=r"only 0\.0% of the learnable parameters"):
        build_network("densenet121", 2, 1, pretrained=path)


def test_garbage_dict_raises_and_non_strict_loads_with_warning(tmp_path, caplog):
    path = tmp_path / "garbage.pt"
    torch.save({"encoder.weight": torch.randn(4, 4), "features.conv0.weight": torch.randn(3, 3)}, path)
    network = build_network("densenet121", 2, 1)
    before = {key: value.clone() for key, value in network.state_dict().items()}

    with pytest.raises(ValueError, match="garbage.pt"):
        load_pretrained(network, path)
    with caplog.at_level(logging.WARNING, logger="pipeline.networks"):
        report = load_pretrained(network, path, strict=False)

    assert report.loaded == [] and report.unexpected == ["encoder.weight"]
    assert report.mismatched == ["features.conv0.weight: (3, 3) -> (64, 1, 7, 7)"]
    assert report.loaded_fraction == 0.0
    assert "only 0.0%" in caplog.text
    assert all(torch.equal(before[key], value) for key, value in network.state_dict().items())


def test_file_without_a_state_dict_raises(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="holds a Tensor, not a state dict"):
        build_network("densenet121", 2, pretrained=path)


def test_missing_file_raises_file_not_found(tmp_path):
    missing = tmp_path / "absent" / "weights.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        build_network("densenet121", 2, pretrained=missing)


def test_non_path_pretrained_raises_type_error():
    with pytest.raises(TypeError, match="never downloaded"):
        build_network("densenet121", 2, pretrained=True)
