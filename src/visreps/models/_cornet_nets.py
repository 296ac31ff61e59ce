"""The four CORnet networks (Z, R, RT, S), written after the original code (dicarlolab/CORnet, GPL-3.0), with the
same module names and parameter layout, so the published checkpoints load unchanged (see :mod:`visreps.models.cornet`).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from ..errors import VisrepsError

#: The areas of every CORnet, in processing order.
AREAS: tuple[str, ...] = ("V1", "V2", "V4", "IT")

#: Default number of time steps of CORnet-R and -RT (as in the original).
DEFAULT_TIMES = 5

#: Time steps of the CORnet-S areas (fixed by the architecture: one BatchNorm set per step).
S_TIMES: dict[str, int] = {"V2": 2, "V4": 4, "IT": 2}


# --------------------------------------------------------------------------- building blocks


class Flatten(nn.Module):
    """Flatten every dimension but the batch (prints as ``Flatten()``, like the original)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.size(0), -1)


def _decoder(with_output: bool) -> nn.Sequential:
    layers: list[tuple[str, nn.Module]] = [
        ("avgpool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", Flatten()),
        ("linear", nn.Linear(512, 1000)),
    ]
    if with_output:
        layers.append(("output", nn.Identity()))
    return nn.Sequential(OrderedDict(layers))


def _conv_out(size: int, conv: nn.Conv2d, dim: int) -> int:
    """Output length along spatial dimension ``dim`` of ``conv`` for an input of length ``size``."""
    k, s, d = conv.kernel_size[dim], conv.stride[dim], conv.dilation[dim]
    p = conv.padding[dim]
    if not isinstance(p, int):  # padding="same"/"valid" is never used by CORnet
        raise VisrepsError(f"CORnet convolutions take integer padding, got {conv.padding!r}")
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _check_times(times: int) -> int:
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise VisrepsError(
            f"times={times!r} is not valid: the number of time steps must be an integer >= 1 (default {DEFAULT_TIMES})"
        )
    return times


# --------------------------------------------------------------------------- CORnet-Z


class CORblock_Z(nn.Module):
    """conv → ReLU → max-pool → output: one feedforward area of CORnet-Z.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the area's output.
        kernel_size: side of the convolution kernel (padding keeps the size before the stride).
        stride: stride of the convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=kernel_size // 2
        )
        self.nonlin = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.output = nn.Identity()

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.nonlin(self.conv(inp))
        x = self.pool(x)
        return self.output(x)


def CORnet_Z() -> nn.Sequential:
    """CORnet-Z: four conv-pool areas and a linear decoder (``nn.Sequential``, as the original).

    Returns:
        The network with the original's initialisation (Xavier-uniform weights, zero biases).
    """
    model = nn.Sequential(
        OrderedDict(
            [
                ("V1", CORblock_Z(3, 64, kernel_size=7, stride=2)),
                ("V2", CORblock_Z(64, 128)),
                ("V4", CORblock_Z(128, 256)),
                ("IT", CORblock_Z(256, 512)),
                ("decoder", _decoder(with_output=True)),
            ]
        )
    )
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
    return model


# --------------------------------------------------------------------------- CORnet-R and -RT


class CORblock_R(nn.Module):
    """One recurrent area of CORnet-R: input conv (+GroupNorm, ReLU), then a recurrent conv.

    Each call is one time step: ``state(t) = ReLU(GN(conv1(input_part(t) + state(t-1))))``, where
    ``input_part`` is the input convolution of the area below's output (or zeros when the area has
    no input yet, at t = 0). The new state goes through ``output`` (once per call) and is returned.

    Args:
        in_channels: channels of the area below.
        out_channels: channels of this area.
        kernel_size: side of the input convolution kernel.
        stride: stride of the input convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels

        self.conv_input = nn.Conv2d(
            in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=kernel_size // 2
        )
        self.norm_input = nn.GroupNorm(32, out_channels)
        self.nonlin_input = nn.ReLU(inplace=True)

        self.conv1 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(32, out_channels)
        self.nonlin1 = nn.ReLU(inplace=True)

        self.output = nn.Identity()

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of this area's output for an input of ``height`` × ``width``."""
        return _conv_out(height, self.conv_input, 0), _conv_out(width, self.conv_input, 1)

    def forward(
        self,
        inp: torch.Tensor | None,
        state: torch.Tensor | None = None,
        zeros_shape: tuple[int, int, int, int] | None = None,
    ) -> torch.Tensor:
        """One time step.

        Args:
            inp: output of the area below (the image for V1), or ``None`` at t = 0 for areas that
                have no input yet: then the input part is zeros of ``zeros_shape``.
            state: this area's previous output, ``None`` at t = 0.
            zeros_shape: ``(batch, out_channels, height, width)`` of the zero input.

        Returns:
            The new state (= this step's output).
        """
        if inp is None:
            if zeros_shape is None:
                raise VisrepsError(f"{type(self).__name__} needs zeros_shape when it has no input")
            w = self.conv_input.weight
            x = torch.zeros(zeros_shape, dtype=w.dtype, device=w.device)
        else:
            x = self.nonlin_input(self.norm_input(self.conv_input(inp)))
        if state is not None:
            x = x + state
        x = self.nonlin1(self.norm1(self.conv1(x)))
        return self.output(x)


class CORblock_RT(CORblock_R):
    """The area of CORnet-RT: the same computation as :class:`CORblock_R` (own name, as the original)."""


class CORnet_R(nn.Module):
    """CORnet-R (legacy): four recurrent areas unrolled for ``times`` steps, then a linear decoder.

    At t = 0, V1 sees the image and V2, V4 and IT start from zero input. At every later step each
    area takes the output that the area below has produced *in the same step* (the non-biological
    unrolling; see :class:`CORnet_RT` for the biological one) plus its own previous state.

    Args:
        times: time steps per forward pass (default 5, the value the checkpoint was trained with).
    """

    _block = CORblock_R

    def __init__(self, times: int = DEFAULT_TIMES) -> None:
        super().__init__()
        self.times = _check_times(times)
        block = self._block
        self.V1 = block(3, 64, kernel_size=7, stride=4)
        self.V2 = block(64, 128, stride=2)
        self.V4 = block(128, 256, stride=2)
        self.IT = block(256, 512, stride=2)
        self.decoder = _decoder(with_output=False)

    def _zeros_shapes(self, image: torch.Tensor) -> dict[str, tuple[int, int, int, int]]:
        """Shape of each area's output for ``image`` (56, 28, 14, 7 pixels for 224 × 224)."""
        height, width = image.shape[-2:]
        shapes = {}
        for area in AREAS:
            block = getattr(self, area)
            height, width = block.output_size(height, width)
            shapes[area] = (image.shape[0], block.out_channels, height, width)
        return shapes

    def _first_step(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        shapes = self._zeros_shapes(image)
        outputs = {}
        for area in AREAS:
            outputs[area] = getattr(self, area)(image if area == "V1" else None, None, shapes[area])
        return outputs

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        outputs = self._first_step(image)
        for _ in range(1, self.times):
            below = image
            for area in AREAS:
                outputs[area] = getattr(self, area)(below, outputs[area])
                below = outputs[area]  # this step's output feeds the area above now
        return self.decoder(outputs["IT"])


class CORnet_RT(CORnet_R):
    """CORnet-RT: CORnet-R with biological unrolling (the model the CORnet-R pre-print describes).

    At every step t > 0 each area takes the output that the area below produced at step t - 1,
    so a signal needs one step per area: IT first sees the image at t = 3.

    Args:
        times: time steps per forward pass (default 5, the value the checkpoint was trained with).
    """

    _block = CORblock_RT

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        outputs = self._first_step(image)
        for _ in range(1, self.times):
            new: dict[str, torch.Tensor] = {}
            below = image
            for area in AREAS:
                new[area] = getattr(self, area)(below, outputs[area])
                below = outputs[area]  # the previous step's output feeds the area above
            outputs = new
        return self.decoder(outputs["IT"])


# --------------------------------------------------------------------------- CORnet-S


class CORblock_S(nn.Module):
    """One recurrent area of CORnet-S: a 1×1 input conv, then ``times`` bottleneck steps.

    Step 0 halves the spatial size (strided ``conv2`` and a strided 1×1 ``skip`` with
    ``norm_skip``); steps t > 0 reuse the same convolutions at stride 1 with their own
    BatchNorms ``norm1_t``, ``norm2_t``, ``norm3_t`` and an identity skip. Each step ends with
    ``nonlin3`` and the ``output`` module, so ``output`` runs ``times`` times per forward pass.

    Args:
        in_channels: channels of the area below.
        out_channels: channels of this area (the bottleneck is 4× wider).
        times: time steps of the area.
    """

    scale = 4  # width of the bottleneck relative to out_channels

    def __init__(self, in_channels: int, out_channels: int, times: int = 1) -> None:
        super().__init__()
        self.times = _check_times(times)
        wide = out_channels * self.scale

        self.conv_input = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.skip = nn.Conv2d(out_channels, out_channels, kernel_size=1, stride=2, bias=False)
        self.norm_skip = nn.BatchNorm2d(out_channels)

        self.conv1 = nn.Conv2d(out_channels, wide, kernel_size=1, bias=False)
        self.nonlin1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(wide, wide, kernel_size=3, stride=2, padding=1, bias=False)
        self.nonlin2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(wide, out_channels, kernel_size=1, bias=False)
        self.nonlin3 = nn.ReLU(inplace=True)

        self.output = nn.Identity()

        # one set of BatchNorms per time step
        for t in range(self.times):
            setattr(self, f"norm1_{t}", nn.BatchNorm2d(wide))
            setattr(self, f"norm2_{t}", nn.BatchNorm2d(wide))
            setattr(self, f"norm3_{t}", nn.BatchNorm2d(out_channels))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.conv_input(inp)
        stride = self.conv2.stride
        try:
            for t in range(self.times):
                if t == 0:
                    skip = self.norm_skip(self.skip(x))
                    self.conv2.stride = (2, 2)
                else:
                    skip = x
                    self.conv2.stride = (1, 1)
                x = self.nonlin1(getattr(self, f"norm1_{t}")(self.conv1(x)))
                x = self.nonlin2(getattr(self, f"norm2_{t}")(self.conv2(x)))
                x = getattr(self, f"norm3_{t}")(self.conv3(x))
                x = self.nonlin3(x + skip)
                x = self.output(x)
        finally:
            # the original leaves conv2 at stride 1 after a pass; restoring it keeps print(model)
            # stable and the module intact when a hook ends the pass early
            self.conv2.stride = stride
        return x


def CORnet_S() -> nn.Sequential:
    """CORnet-S: a two-conv V1, recurrent bottleneck areas V2 (2 steps), V4 (4), IT (2), decoder.

    Returns:
        The network (``nn.Sequential``, as the original) with the original's initialisation:
        convolutions ~ N(0, 2 / (k·k·out_channels)), BatchNorm weight 1 and bias 0, the linear
        layer at PyTorch's default.
    """
    model = nn.Sequential(
        OrderedDict(
            [
                (
                    "V1",
                    nn.Sequential(
                        OrderedDict(
                            [
                                ("conv1", nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)),
                                ("norm1", nn.BatchNorm2d(64)),
                                ("nonlin1", nn.ReLU(inplace=True)),
                                ("pool", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
                                ("conv2", nn.Conv2d(64, 64, kernel_size=3, stride=1, padding=1, bias=False)),
                                ("norm2", nn.BatchNorm2d(64)),
                                ("nonlin2", nn.ReLU(inplace=True)),
                                ("output", nn.Identity()),
                            ]
                        )
                    ),
                ),
                ("V2", CORblock_S(64, 128, times=S_TIMES["V2"])),
                ("V4", CORblock_S(128, 256, times=S_TIMES["V4"])),
                ("IT", CORblock_S(256, 512, times=S_TIMES["IT"])),
                ("decoder", _decoder(with_output=True)),
            ]
        )
    )
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
    return model
