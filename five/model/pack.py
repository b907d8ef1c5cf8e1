"""Packed models (issue 17): the seeds of one sweep point as one batched model.

M members of identical architecture become one model whose every parameter has a leading member dimension.
Rows of a batch belong to members in blocks: rows m·B … (m+1)·B − 1 are member m's examples. A packed linear
layer is a batched matmul and a packed convolution a grouped one, so every row only ever meets its own member's
weights: the per-example objective code (the JVPs, VJPs and Jacobians of spec §1–2) runs unchanged on the
packed rows. The packed loss is the *sum* over members of each member's mean loss, so each member's gradient is
exactly its own, and Adam, being elementwise, keeps each member's moments apart on the stacked tensors.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from five.base.errors import FiveError
from five.data.datasets import dequantize
from five.model.models import Model


class PackedLayer(nn.Module):
    """M layers' weights and biases stacked along a leading member dimension (the members' own names, so that a
    member's slice of the state_dict is its solo state_dict); convolutions keep their stride and padding."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))
        self.stride, self.padding = getattr(layers[0], "stride", None), getattr(layers[0], "padding", None)


class PackedLinear(PackedLayer):
    """M linear layers: weight (M, out, in), bias (M, out); rows in member blocks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members, out_features, in_features = self.weight.shape
        rows = x.reshape(members, -1, in_features)
        return torch.baddbmm(self.bias.unsqueeze(1), rows, self.weight.transpose(1, 2)).reshape(-1, out_features)


def to_groups(x: torch.Tensor, members: int) -> torch.Tensor:
    """(M·B, C, H, W) rows in member blocks → (B, M·C, H, W): member m's channels form group m."""
    return x.reshape(members, -1, *x.shape[1:]).transpose(0, 1).reshape(-1, members * x.shape[1], *x.shape[2:])


def from_groups(y: torch.Tensor, members: int) -> torch.Tensor:
    """The inverse of to_groups: (B, M·C, H, W) → (M·B, C, H, W)."""
    return (
        y.reshape(y.shape[0], members, -1, *y.shape[2:])
        .transpose(0, 1)
        .reshape(-1, y.shape[1] // members, *y.shape[2:])
    )


class PackedConv2d(PackedLayer):
    """M convolutions as one grouped convolution: weight (M, C_out, C_in, k, k), bias (M, C_out)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members = self.weight.shape[0]
        y = F.conv2d(
            to_groups(x, members),
            self.weight.flatten(0, 1),
            self.bias.flatten(),
            self.stride,
            self.padding,
            groups=members,
        )
        return from_groups(y, members)


class PackedConvTranspose2d(PackedLayer):
    """M transposed convolutions as one grouped one: weight (M, C_in, C_out, k, k), bias (M, C_out)."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        members, _, _, *kernel = self.weight.shape
        output_padding = [0, 0]
        if output_size is not None:  # as nn.ConvTranspose2d: the padding that reaches the asked size
            output_padding = [
                size - ((length - 1) * stride - 2 * pad + k)
                for size, length, stride, pad, k in zip(
                    output_size[-2:], x.shape[-2:], self.stride, self.padding, kernel
                )
            ]
        y = F.conv_transpose2d(
            to_groups(x, members),
            self.weight.flatten(0, 1),
            self.bias.flatten(),
            self.stride,
            self.padding,
            output_padding,
            groups=members,
        )
        return from_groups(y, members)


PACKED_LAYERS = {nn.Linear: PackedLinear, nn.Conv2d: PackedConv2d, nn.ConvTranspose2d: PackedConvTranspose2d}


def pack_layers(template: nn.Module, members: list[nn.Module]) -> None:
    """Replace, in `template` (a copy of members[0]), every layer with parameters by its packed form."""
    for name, child in template.named_children():
        parts = [getattr(member, name) for member in members]
        packed = PACKED_LAYERS.get(type(child))
        if packed is not None:
            setattr(template, name, packed(parts))
        elif any(True for _ in child.parameters(recurse=False)):
            raise TypeError(f"cannot pack a {type(child).__name__} layer")
        else:
            pack_layers(child, parts)


def pack_models(models: list[Model]) -> Model:
    """One model training `models` side by side (same class, configuration up to the seed, and shapes)."""
    if not all(model.config.same_up_to_seed(models[0].config) for model in models):
        raise ValueError("only models of one configuration (up to the seed) can be packed")
    packed = copy.deepcopy(models[0])
    if packed.compiled:  # the copy's compiled objective is models[0]'s bound method: the pack compiles its own
        del packed.objective
        packed.compiled = False
    pack_layers(packed, models)
    log_sigma = torch.stack([model.log_sigma.detach() for model in models])
    if models[0].learns_sigma:
        packed.log_sigma = nn.Parameter(log_sigma)
    else:
        packed.log_sigma = log_sigma  # a registered buffer stays one (FIF's fixed σ)
    packed.members = len(models)
    return packed


def member_state(packed: Model, member: int) -> dict[str, torch.Tensor]:
    """Member `member`'s state_dict, in the solo model's layout (a solo model loads it as it is)."""
    return {name: value[member].clone() for name, value in packed.state_dict().items()}


def member_optimizer_state(optimizer: torch.optim.Optimizer, member: int) -> dict:
    """Member `member`'s Adam state_dict in the solo optimiser's layout (same parameter order, since the packed
    model's parameters come in the solo model's order): the moments sliced, the shared step count as it is."""
    state = optimizer.state_dict()
    sliced = {
        index: {key: value.clone() if key == "step" else value[member].clone() for key, value in entry.items()}
        for index, entry in state["state"].items()
    }
    return {"state": sliced, "param_groups": copy.deepcopy(state["param_groups"])}


def packed_optimizer_state(states: list[dict]) -> dict:
    """The inverse of member_optimizer_state: the members' Adam state_dicts (solo layout, one step count, which
    members trained in lockstep share) stacked into the packed optimiser's."""
    first = states[0]
    steps = {float(entry["step"]) for state in states for entry in state["state"].values()}
    if any(state["state"].keys() != first["state"].keys() for state in states) or len(steps) > 1:
        raise FiveError(
            "the seeds' checkpoints hold Adam states of different steps or parameters, so they "
            "cannot be packed: train them with separate `five train` calls"
        )
    # one device for the stack: a state read from a checkpoint is on the CPU, one handed on by a pack that trained
    # on a GPU is there (the packed optimiser's load_state_dict moves them to the parameters' device)
    stacked = {
        index: {
            key: value.clone()
            if key == "step"
            else torch.stack([state["state"][index][key].to(value.device) for state in states])
            for key, value in entry.items()
        }
        for index, entry in first["state"].items()
    }
    return {"state": stacked, "param_groups": copy.deepcopy(first["param_groups"])}


def member_batches(data: torch.Tensor, discrete_levels, member_indices: torch.Tensor, generators, model: Model):
    """A packed batch: each member's examples and noise drawn from its own generator, in the order its solo step
    draws them (dequantisation, then the model's noise), then joined in member blocks."""
    xs = [
        dequantize(data[indices], discrete_levels, generator) for indices, generator in zip(member_indices, generators)
    ]
    noises = [model.draw_noise(x, generator) for x, generator in zip(xs, generators)]
    joined = tuple(torch.cat(parts, dim) for parts, dim in zip(zip(*noises), model.noise_batch_dims))
    return torch.cat(xs), joined
