"""Classification networks for 2-D chest X-rays and loading of local pretrained weights.

Two families are offered through :func:`build_network`: MONAI's DenseNet-121 and torchvision's ConvNeXt
(tiny, small, base). Nothing is ever downloaded: pretrained weights come only from a local file the user names,
and :func:`load_pretrained` reports exactly which tensors were taken from it, adapted, or left at their
initial values.

Weights saved under three naming schemes are understood for ConvNeXt (torchvision, timm, and the original
``facebookresearch/ConvNeXt`` release) and two for DenseNet-121 (MONAI and torchvision, including torchvision's
older ``norm.1`` spelling). Files may hold a bare state dict or one wrapped as ``{"state_dict": ...}`` or
``{"model": ...}``, with an optional ``module.`` (DataParallel) or ``_orig_mod.`` (``torch.compile``) prefix.

First-convolution adaptation: a kernel trained for ``s`` input channels is turned into one for ``c`` channels by
summing it over its input channels and dividing by ``c``, then repeating it ``c`` times. For a grey image whose
intensity is copied into every channel this leaves the first layer's output unchanged, so 3-channel ImageNet
weights on a 1-channel X-ray give the same activations as feeding the X-ray replicated to RGB (``c = 1`` is the
plain sum over the RGB kernels).

Partial-load rule: the loaded fraction is the number of learnable parameter elements taken from the file (as-is
or adapted) divided by all learnable parameter elements of the network. Below ``min_loaded_fraction`` (0.5 by
default) the file almost certainly belongs to another architecture, and loading raises ``ValueError`` instead of
quietly training a mostly random network.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import torch
import torchvision
from monai.networks.nets import DenseNet121
from torch import nn

__all__ = ["NETWORK_NAMES", "LoadReport", "build_network", "load_pretrained"]

logger = logging.getLogger(__name__)

_CONVNEXT_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "convnext_tiny": torchvision.models.convnext_tiny,
    "convnext_small": torchvision.models.convnext_small,
    "convnext_base": torchvision.models.convnext_base,
}
NETWORK_NAMES: tuple[str, ...] = ("densenet121", *_CONVNEXT_FACTORIES)

_WRAPPER_KEYS = ("state_dict", "model")
_KEY_PREFIXES = ("module.", "_orig_mod.")
DEFAULT_MIN_LOADED_FRACTION = 0.5


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did with each tensor of a weights file.

    Attributes:
        source: the weights file.
        scheme: the naming scheme recognised in the file (``"torchvision"``, ``"timm"``, ``"facebook"``,
            ``"monai"``).
        loaded: network keys copied from the file unchanged (a reshape that only adds or drops size-1 axes, such
            as timm's ``(C,)`` layer scale into torchvision's ``(C, 1, 1)``, counts as unchanged).
        adapted: network keys filled from a tensor of another shape by the first-convolution channel rule.
        reinitialised: network keys left at their fresh initial values (absent from the file or not adaptable).
        unexpected: file keys (after renaming) that the network has no use for.
        mismatched: file keys whose network counterpart has an incompatible shape, as ``key: file -> network``.
        loaded_fraction: learnable parameter elements taken from the file (loaded or adapted) over all learnable
            parameter elements of the network.
    """

    source: str
    scheme: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    loaded_fraction: float = 0.0

    def summary(self) -> str:
        """One line stating the counts, the loaded fraction and the keys that were not loaded as-is."""
        parts = [
            f"weights {self.source} ({self.scheme} names): loaded {len(self.loaded)} tensors,",
            f"adapted {len(self.adapted)} {self.adapted},",
            f"re-initialised {len(self.reinitialised)} {_abbreviate(self.reinitialised)},",
            f"unexpected {len(self.unexpected)} {_abbreviate(self.unexpected)};",
            f"{self.loaded_fraction:.1%} of learnable parameters come from the file",
        ]
        return " ".join(parts)


def build_network(
    name: str,
    num_classes: int,
    in_channels: int = 1,
    *,
    pretrained: str | PathLike | None = None,
    drop_path_rate: float = 0.0,
    dropout: float = 0.0,
    strict_report: bool = True,
) -> nn.Module:
    """Build a 2-D multi-label classifier that maps ``(B, in_channels, H, W)`` images to ``(B, num_classes)`` logits.

    Usable as a MONAI bundle component, e.g.
    ``{"_target_": "pipeline.networks.build_network", "name": "densenet121", "num_classes": 14}``.

    Args:
        name: one of :data:`NETWORK_NAMES` (``"densenet121"``, ``"convnext_tiny"``, ``"convnext_small"``,
            ``"convnext_base"``); case and ``-``/``_`` are not significant.
        num_classes: number of outputs (one logit per label).
        in_channels: number of image channels; the first convolution is built for it.
        pretrained: path of a local weights file, or ``None`` (or an empty string) for random initialisation.
            Never a model-hub name: nothing is downloaded.
        drop_path_rate: ConvNeXt stochastic-depth probability of the last block (torchvision scales it linearly
            from 0 over the blocks). DenseNet has no stochastic depth; a non-zero value is ignored with a warning.
        dropout: ConvNeXt: dropout probability before the final linear layer. DenseNet-121: MONAI's
            ``dropout_prob``, a channel-wise ``Dropout2d`` after every dense layer.
        strict_report: raise ``ValueError`` when less than half of the network's learnable parameters could be
            loaded from ``pretrained``; when ``False`` such a load proceeds with a logged warning.

    Returns:
        The network. When ``pretrained`` is given it carries the :class:`LoadReport` as ``network.load_report``.

    Raises:
        ValueError: unknown ``name``, a non-positive ``num_classes``/``in_channels``, a probability outside
            ``[0, 1)``, or (with ``strict_report``) weights that fit less than half of the network.
        TypeError: ``pretrained`` is not a path.
        FileNotFoundError: ``pretrained`` names a file that does not exist.
    """
    key = _normalise_name(name)
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("in_channels", in_channels)
    _check_probability("drop_path_rate", drop_path_rate)
    _check_probability("dropout", dropout)

    if key == "densenet121":
        if drop_path_rate:
            warnings.warn(
                f"drop_path_rate={drop_path_rate} is ignored: densenet121 has no stochastic depth.", stacklevel=2
            )
        network = DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=num_classes, dropout_prob=dropout)
    else:
        network = _build_convnext(key, num_classes, in_channels, drop_path_rate, dropout)

    if pretrained is not None and pretrained != "":
        report = load_pretrained(network, pretrained, strict=strict_report)
        network.load_report = report
    return network


def load_pretrained(
    network: nn.Module,
    path: str | PathLike,
    *,
    strict: bool = True,
    min_loaded_fraction: float = DEFAULT_MIN_LOADED_FRACTION,
) -> LoadReport:
    """Load a local weights file into a network built by :func:`build_network`, renaming and adapting as needed.

    Tensors whose name and shape match are copied; the first convolution is adapted to the network's number of
    input channels (see the module docstring); everything else keeps its initial values and is listed in the
    report, which is also logged at INFO level.

    Args:
        network: a DenseNet-121 or ConvNeXt from :func:`build_network`.
        path: the weights file, read with ``torch.load(weights_only=True)``.
        strict: raise when the loaded fraction is below ``min_loaded_fraction``; otherwise log a warning and load.
        min_loaded_fraction: the smallest acceptable share of learnable parameter elements taken from the file.

    Returns:
        The :class:`LoadReport`.

    Raises:
        TypeError: ``path`` is not a path (for instance ``True``).
        FileNotFoundError: the file does not exist.
        ValueError: the file holds no state dict, or (with ``strict``) too little of it fits the network.
    """
    if not isinstance(path, (str, PathLike)):
        raise TypeError(
            f"pretrained must be the path of a local weights file, got {path!r} ({type(path).__name__}); "
            "weights are never downloaded."
        )
    if not 0.0 <= min_loaded_fraction <= 1.0:
        raise ValueError(f"min_loaded_fraction must be in [0, 1], got {min_loaded_fraction}.")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unpickling error types
        raise ValueError(
            f"cannot read {path} as a weights-only PyTorch file (a state dict of tensors is required, "
            f"not a pickled model object): {err}"
        ) from err
    state = _unwrap_state_dict(content, path)

    target = network.state_dict()
    if _is_convnext(network):
        scheme, state = _rename_convnext(state)
    else:
        scheme, state = _rename_densenet(state)
    first_conv_key = _first_conv_weight_key(network)

    report = LoadReport(source=str(path), scheme=scheme)
    merged: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in target:
            report.unexpected.append(key)
            continue
        expected = target[key]
        if value.shape == expected.shape:
            merged[key] = value
            report.loaded.append(key)
        elif value.numel() == expected.numel() and _squeezed_shape(value) == _squeezed_shape(expected):
            merged[key] = value.reshape(expected.shape)
            report.loaded.append(key)
        elif key == first_conv_key and _channels_adaptable(value, expected):
            merged[key] = _adapt_input_channels(value, expected.shape[1])
            report.adapted.append(key)
        else:
            report.mismatched.append(f"{key}: {tuple(value.shape)} -> {tuple(expected.shape)}")
    report.reinitialised = [key for key in target if key not in merged]

    parameter_sizes = {name: param.numel() for name, param in network.named_parameters()}
    total = sum(parameter_sizes.values())
    taken = sum(size for name, size in parameter_sizes.items() if name in merged)
    report.loaded_fraction = taken / total if total else float("nan")

    if report.loaded_fraction < min_loaded_fraction:
        message = (
            f"only {report.loaded_fraction:.1%} of the learnable parameters of {type(network).__name__} could be "
            f"loaded from {path} (at least {min_loaded_fraction:.0%} required); the file probably belongs to "
            f"another architecture or size. {report.summary()}; mismatched: {_abbreviate(report.mismatched)}"
        )
        if strict:
            raise ValueError(message)
        logger.warning(message)

    converted = {key: value.to(dtype=target[key].dtype) for key, value in merged.items()}
    network.load_state_dict({**target, **converted})
    logger.info(report.summary())
    if report.mismatched:
        logger.info("shape-mismatched tensors left at initial values: %s", report.mismatched)
    return report


def _build_convnext(key: str, num_classes: int, in_channels: int, drop_path_rate: float, dropout: float) -> nn.Module:
    """A torchvision ConvNeXt with a stem for ``in_channels`` and a ``num_classes`` head preceded by dropout."""
    network = _CONVNEXT_FACTORIES[key](weights=None, num_classes=num_classes, stochastic_depth_prob=drop_path_rate)

    stem = network.features[0][0]
    if in_channels != stem.in_channels:
        new_stem = nn.Conv2d(
            in_channels, stem.out_channels, kernel_size=stem.kernel_size, stride=stem.stride, bias=True
        )
        nn.init.trunc_normal_(new_stem.weight, std=0.02)
        nn.init.zeros_(new_stem.bias)
        network.features[0][0] = new_stem

    # The dropout joins the parameter-free flatten step so that state-dict keys stay torchvision's
    # (classifier.0 = norm, classifier.2 = linear) and torchvision checkpoints load without renaming.
    network.classifier[1] = nn.Sequential(nn.Flatten(1), nn.Dropout(dropout))
    return network


def _normalise_name(name: str) -> str:
    if not isinstance(name, str):
        raise ValueError(f"network name must be a string, got {name!r}; choose one of {list(NETWORK_NAMES)}.")
    key = name.strip().lower().replace("-", "_")
    if key not in NETWORK_NAMES:
        raise ValueError(f"unknown network {name!r}; choose one of {list(NETWORK_NAMES)}.")
    return key


def _check_positive_int(label: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{label} must be a positive integer, got {value!r}.")


def _check_probability(label: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{label} must be a probability in [0, 1), got {value!r}.")


def _unwrap_state_dict(content: object, path: Path) -> dict[str, torch.Tensor]:
    """Return the tensor mapping inside a loaded file, without wrapper dicts or whole-model key prefixes."""
    for wrapper in _WRAPPER_KEYS:
        if isinstance(content, Mapping) and wrapper in content and isinstance(content[wrapper], Mapping):
            content = content[wrapper]
    if not isinstance(content, Mapping):
        raise ValueError(f"{path} holds a {type(content).__name__}, not a state dict (a mapping of names to tensors).")
    state = {str(key): value for key, value in content.items() if isinstance(value, torch.Tensor)}
    if not state:
        raise ValueError(f"{path} holds no tensors; its top-level keys are {_abbreviate([str(k) for k in content])}.")
    for prefix in _KEY_PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


# timm (stages.N.blocks.M...) and facebookresearch (stages.N.M..., downsample_layers.N...) to torchvision
# (features.K...): the stem is features.0, stage N's blocks are features.(2N+1), and the downsampling layer that
# opens stage N >= 1 is features.2N. A block's layer scale is called gamma and has shape (C,) instead of (C, 1, 1).
_TIMM_BLOCK = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.(.+)$")
_TIMM_DOWNSAMPLE = re.compile(r"^stages\.(\d+)\.downsample\.(\d+)\.(.+)$")
_FB_BLOCK = re.compile(r"^stages\.(\d+)\.(\d+)\.(.+)$")
_FB_DOWNSAMPLE = re.compile(r"^downsample_layers\.(\d+)\.(\d+)\.(.+)$")
_BLOCK_PARTS = {
    "conv_dw": "block.0",
    "dwconv": "block.0",
    "norm": "block.2",
    "mlp.fc1": "block.3",
    "pwconv1": "block.3",
    "mlp.fc2": "block.5",
    "pwconv2": "block.5",
}
_HEAD_PARTS = {
    "head.norm.": "classifier.0.",
    "head.fc.": "classifier.2.",
    "norm.": "classifier.0.",
    "head.": "classifier.2.",
}


def _rename_convnext(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor]]:
    """Rename timm or facebookresearch ConvNeXt keys to torchvision's; torchvision keys pass unchanged."""
    if any(key.startswith("stem.") or _TIMM_BLOCK.match(key) for key in state):
        scheme = "timm"
    elif any(key.startswith("downsample_layers.") for key in state):
        scheme = "facebook"
    else:
        return "torchvision", state

    renamed = {}
    for key, value in state.items():
        renamed[_convnext_key(key, scheme)] = value
    return scheme, renamed


def _convnext_key(key: str, scheme: str) -> str:
    if scheme == "timm":
        if key.startswith("stem."):
            return "features.0." + key[len("stem.") :]
        block, downsample = _TIMM_BLOCK.match(key), _TIMM_DOWNSAMPLE.match(key)
    else:  # downsample_layers.0 is the stem, which the features.2N rule below also puts at features.0
        block, downsample = _FB_BLOCK.match(key), _FB_DOWNSAMPLE.match(key)
    if block:
        stage, index, rest = block.groups()
        if rest == "gamma":
            return f"features.{2 * int(stage) + 1}.{index}.layer_scale"
        for part, target in _BLOCK_PARTS.items():
            if rest.startswith(part + "."):
                return f"features.{2 * int(stage) + 1}.{index}.{target}{rest[len(part) :]}"
        return key
    if downsample:
        stage, index, rest = downsample.groups()
        return f"features.{2 * int(stage)}.{index}.{rest}"
    for part, target in _HEAD_PARTS.items():
        if key.startswith(part):
            return target + key[len(part) :]
    return key


_TORCHVISION_DENSE_LAYER = re.compile(r"^(.*denselayer\d+)\.(norm|relu|conv)\.?([12])\.(.+)$")


def _rename_densenet(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor]]:
    """Rename torchvision DenseNet keys (``norm1`` or the older ``norm.1``) to MONAI's; MONAI keys pass unchanged."""
    if any(key.startswith("class_layers.") or ".layers." in key for key in state):
        return "monai", state
    renamed = {}
    for key, value in state.items():
        match = _TORCHVISION_DENSE_LAYER.match(key)
        if match:
            prefix, kind, index, rest = match.groups()
            key = f"{prefix}.layers.{kind}{index}.{rest}"
        elif key.startswith("classifier."):
            key = "class_layers.out." + key[len("classifier.") :]
        renamed[key] = value
    return "torchvision", renamed


def _is_convnext(network: nn.Module) -> bool:
    return isinstance(network, torchvision.models.ConvNeXt)


def _first_conv_weight_key(network: nn.Module) -> str | None:
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight"
    return None


def _squeezed_shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(size for size in tensor.shape if size != 1)


def _channels_adaptable(value: torch.Tensor, expected: torch.Tensor) -> bool:
    """Only the input-channel axis (dim 1) of a convolution kernel may differ."""
    return (
        value.ndim == expected.ndim == 4
        and value.shape[0] == expected.shape[0]
        and value.shape[2:] == expected.shape[2:]
    )


def _adapt_input_channels(kernel: torch.Tensor, channels: int) -> torch.Tensor:
    """Sum the kernel over its input channels, divide by ``channels`` and repeat it ``channels`` times."""
    summed = kernel.sum(dim=1, keepdim=True) / channels
    return summed.repeat(1, channels, 1, 1)


def _abbreviate(items: list[str], limit: int = 6) -> str:
    if len(items) <= limit:
        return str(items)
    return str(items[:limit])[:-1] + f", ... {len(items) - limit} more]"
