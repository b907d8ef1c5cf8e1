"""The training step, eager or captured as a CUDA graph.

On a GPU a step of these small networks is bound by kernel launches (hundreds per step, benchmarks/README.md),
not by arithmetic. A CUDA graph records the whole step once — the batch gathered from the on-device data by an
on-device index buffer, dequantisation, the model's noise and probes, the loss, its backward, Adam and the σ
projection — and replays it with one launch. What changes between replays lives in fixed buffers: the batch
indices (copied in before each replay) and the run's generator, whose seed and offset PyTorch's graph-safe
Philox reads at each replay and advances by what the step consumed, as an eager step does: a replay draws the
same numbers as the eager step it stands for.

Both kinds are a `Step`: batch indices ((B,), or (members, B) for a pack) → each member's loss, (members,), a
device tensor (no host sync).
"""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

from five.base.config import CUDA_GRAPH_MODES
from five.base.errors import ConfigError
from five.data.datasets import dequantize
from five.model.models import Model
from five.model.pack import member_batches

WARMUP_PASSES = 2  # forward + backward passes before a capture (lazy cuBLAS/cuDNN set-up must not be captured)
Step = Callable[[torch.Tensor], torch.Tensor]  # batch indices → each member's loss (members,)
T = TypeVar("T")
Batch = Callable[[torch.Tensor, list[torch.Generator]], tuple[torch.Tensor, tuple[torch.Tensor, ...]]]


def backward(model: Model, x: torch.Tensor, noise: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Each member's loss on the batch x with its drawn noise, (members,), and the gradients of their sum."""
    losses = model.member_losses(model.objective(x, *noise)["loss"])
    losses.sum().backward(inputs=model.trainable_parameters())
    return losses


def optimiser_step(
    model: Model, optimizer: torch.optim.Optimizer, x: torch.Tensor, noise: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """One optimiser step on the batch x with its drawn noise; returns each member's loss (members,), detached."""
    optimizer.zero_grad(set_to_none=True)
    losses = backward(model, x, noise)
    optimizer.step()
    model.project_parameters()
    return losses.detach()


def solo_batch(model: Model, data: torch.Tensor, discrete_levels: int | None) -> Batch:
    """The batch of a solo run: its examples, dequantised, and the model's noise, from the run's generator."""

    def batch(indices: torch.Tensor, generators: list[torch.Generator]):
        x = dequantize(data[indices], discrete_levels, generators[0])
        return x, model.draw_noise(x, generators[0])

    return batch


def model_batch(model: Model, data: torch.Tensor, discrete_levels: int | None, members: int) -> Batch:
    """The batch of a (packed) model of `members` runs: solo_batch for one, else each member's examples and noise
    from its own generator (five.model.pack.member_batches), indices (members, B)."""
    if members == 1:
        return solo_batch(model, data, discrete_levels)
    return lambda indices, generators: member_batches(data, discrete_levels, indices, generators, model)


def eager_step(model: Model, optimizer: torch.optim.Optimizer, batch: Batch, generators: list[torch.Generator]) -> Step:
    def step(indices: torch.Tensor) -> torch.Tensor:
        return optimiser_step(model, optimizer, *batch(indices, generators))

    return step


class GraphedStep:
    """The training step as one CUDA graph per shape of the batch indices (a full batch and the epoch's last,
    shorter one): `batch(indices, generators)` assembles the examples and noise (solo_batch, or a pack's).

    The optimiser must be capturable (`build_optimizer(..., capturable=True)`), the generators CUDA ones that
    the caller reseeds between epochs (never replaced: the graphs read their state)."""

    def __init__(
        self,
        model: Model,
        optimizer: torch.optim.Optimizer,
        batch: Batch,
        generators: list[torch.Generator],
        index_shapes: list[tuple[int, ...]],
    ):
        self.model, self.optimizer, self.batch, self.generators = model, optimizer, batch, generators
        initialise_optimizer_state(optimizer)
        self.graphs = {tuple(shape): self._capture(tuple(shape)) for shape in index_shapes}

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        graph, index_buffer, losses = self.graphs[tuple(indices.shape)]
        index_buffer.copy_(indices)
        graph.replay()
        return losses

    def _capture(self, shape: tuple[int, ...]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        device = self.generators[0].device
        index_buffer = torch.zeros(shape, dtype=torch.long, device=device)
        self._warm_up(index_buffer)
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        self.optimizer.zero_grad(set_to_none=True)  # the gradients are allocated inside the graph
        with torch.cuda.graph(graph):
            losses = optimiser_step(self.model, self.optimizer, *self.batch(index_buffer, self.generators))
        return graph, index_buffer, losses

    def _warm_up(self, index_buffer: torch.Tensor) -> None:
        """Forward and backward passes on a side stream with throwaway generators and no optimiser step: they
        set up what the capture must find ready, and change neither the weights nor the run's random streams."""
        generators = [torch.Generator(device=g.device).manual_seed(0) for g in self.generators]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_PASSES):
                backward(self.model, *self.batch(index_buffer, generators))
        torch.cuda.current_stream().wait_stream(stream)
        self.optimizer.zero_grad(set_to_none=True)


def initialise_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Create Adam's state where it has none, without moving a parameter. Adam creates its state at its first
    step, which a capture must not contain (every replay would reset it): a step with zero gradients creates
    it (m = v = 0, so the update is exactly 0), and its step count is set back to 0."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    fresh = [p for p in parameters if p not in optimizer.state]
    if not fresh:
        return
    for p in parameters:
        p.grad = torch.zeros_like(p) if any(p is q for q in fresh) else None
    optimizer.step()
    for p in fresh:
        optimizer.state[p]["step"].zero_()
    optimizer.zero_grad(set_to_none=True)


def set_capturable(optimizer: torch.optim.Optimizer, capturable: bool) -> None:
    """Make a (loaded) Adam capturable and fused, as build_optimizer does, or neither: a checkpoint carries the
    flags of the run that wrote it, and such an Adam keeps its step counts on the parameters' device."""
    for group in optimizer.param_groups:
        group["capturable"] = group["fused"] = capturable
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if "step" in state:
                device, dtype = (p.device, torch.float32) if capturable else (torch.device("cpu"), state["step"].dtype)
                state["step"] = state["step"].to(device=device, dtype=dtype)  # fused Adam counts in float32


def check_cuda_graph_mode(mode: str, device: torch.device) -> None:
    """One line, before any work, for a mode that cannot run here."""
    if mode not in CUDA_GRAPH_MODES:
        raise ConfigError(f"--cuda-graph must be one of {', '.join(CUDA_GRAPH_MODES)}, got {mode!r}")
    if mode == "on" and device.type != "cuda":
        raise ConfigError(
            f"--cuda-graph on needs a CUDA device, the run is on {device.type} "
            "(auto captures where it can and runs eagerly elsewhere)"
        )


def uses_cuda_graph(mode: str, device: torch.device) -> bool:
    """Whether the run should try to capture its step (`auto`: on CUDA)."""
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def failure_reason(error: Exception) -> str:
    """An exception's first line, for a one-line log or error."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def graphed_or_eager(
    run: Callable[[bool], T], mode: str, device: torch.device, log: Callable[[str], None]
) -> tuple[T, bool]:
    """`run(graphed)` as training steps under `mode`: with CUDA graphs where the mode and device say so, and
    under `auto` again eagerly, with one log line, where that fails (`on` fails instead); and whether graphed."""
    graphed = uses_cuda_graph(mode, device)
    try:
        return run(graphed), graphed
    except Exception as error:  # noqa: BLE001 - any failed capture: `on` reports it, `auto` runs eagerly
        if not graphed or mode == "on":
            raise
        log(f"the CUDA graph capture failed ({failure_reason(error)}); eager steps instead, as training runs them")
        return run(False), False


def choose_step(
    model: Model,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    generators: list[torch.Generator],
    index_shapes: list[tuple[int, ...]],
    mode: str,
    log: Callable[[str], None],
) -> tuple[Step, bool]:
    """The run's step and whether it is a CUDA graph, with one log line saying which runs and why. `auto`
    falls back to eager steps, with the reason, where a capture fails; `on` fails instead."""
    device = generators[0].device
    check_cuda_graph_mode(mode, device)
    if not uses_cuda_graph(mode, device):
        reason = "--cuda-graph off" if mode == "off" else f"on {device.type}"
        log(f"training step: eager ({reason})")
        return eager_step(model, optimizer, batch, generators), False
    try:
        step = GraphedStep(model, optimizer, batch, generators, index_shapes)
    except Exception as error:  # noqa: BLE001 - any failed capture: `on` reports it, `auto` runs eagerly
        reason = failure_reason(error)
        if mode == "on":
            raise ConfigError(f"--cuda-graph on: the training step could not be captured ({reason})") from error
        optimizer.zero_grad(set_to_none=True)
        set_capturable(optimizer, False)
        log(f"training step: eager (the CUDA graph capture failed: {reason})")
        return eager_step(model, optimizer, batch, generators), False
    sizes = sorted({shape[-1] for shape in index_shapes}, reverse=True)
    log(
        f"training step: CUDA graph (captured for batch size{'s' if len(sizes) > 1 else ''} "
        f"{' and '.join(map(str, sizes))})"
    )
    return step, True
