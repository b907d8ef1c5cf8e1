"""How much cuDNN's TF32 convolutions move a conv run's evaluation: its metrics in float32 against TF32.

    .venv/bin/python -m benchmarks.tf32 RUN_DIR [--importance-samples N]
    .venv/bin/python -m benchmarks.tf32 --write-digits16 FILE.npz   # conv-sized offline images to train one on

On CUDA, PyTorch runs float32 convolutions in TF32 by default (`torch.backends.cudnn.conv.fp32_precision`
"tf32"; matmuls stay IEEE float32), so a conv run evaluated on an Ampere-or-later GPU is not evaluated in float32.
On CUDA this evaluates RUN_DIR with that setting, then with "ieee". On the CPU, which has no TF32, it emulates
it: every float32 operand of every convolution, forward and derivative (input and weight gradients, the JVP
tangents and encoder Jacobians of FIF/FIVE), rounded to TF32's 10-bit mantissa (to nearest, ties to even),
accumulation left in float32, as tensor cores do. Both print each metric both ways and the difference.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

CONVOLUTIONS = (torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default)
SHOWN_METRICS = ("nll_nats", "elbo_nats", "nll_bits_per_dim", "active_units_eigen", "informative_directions")
TF32_DROPPED_BITS = 13  # float32 keeps 23 mantissa bits, TF32 10


def to_tf32(x):
    """A float32 tensor rounded to TF32's precision (nearest, ties to even); anything else as it is."""
    if not (isinstance(x, torch.Tensor) and x.dtype == torch.float32):
        return x
    bits = x.view(torch.int32)
    half, kept_lowest = 1 << (TF32_DROPPED_BITS - 1), (bits >> TF32_DROPPED_BITS) & 1
    return ((bits + (half - 1) + kept_lowest) & ~((1 << TF32_DROPPED_BITS) - 1)).view(torch.float32)


class EmulatedTF32Convolutions(TorchDispatchMode):
    """Inside it, every convolution (and its backward) computes on TF32-rounded operands; counts them."""

    def __init__(self):
        super().__init__()
        self.convolutions = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in CONVOLUTIONS:
            self.convolutions += 1
            args = tuple(to_tf32(arg) for arg in args)
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def cudnn_conv_precision(precision: str):
    previous = torch.backends.cudnn.conv.fp32_precision
    torch.backends.cudnn.conv.fp32_precision = precision
    try:
        yield
    finally:
        torch.backends.cudnn.conv.fp32_precision = previous


def write_digits16(path: Path) -> None:
    """The digits' splits as 16×16 images (each pixel doubled), an npz the conv net takes (it needs ≥ 16×16)."""
    import numpy as np

    from five.data.datasets import load_digits

    digits = load_digits()
    splits = {name: digits.split(name).numpy().reshape(-1, 1, 8, 8) for name in ("train", "validation", "test")}
    doubled = {name: images.repeat(2, axis=2).repeat(2, axis=3) for name, images in splits.items()}
    np.savez(path, discrete_levels=np.array(digits.discrete_levels), **doubled)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?", help="a trained run's folder (train.json, best.pt)")
    parser.add_argument("--importance-samples", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--write-digits16", type=Path, metavar="FILE", help="write the 16×16 digits there, and stop")
    args = parser.parse_args(argv)
    if args.write_digits16:
        write_digits16(args.write_digits16)
        return 0
    if args.run_dir is None:
        parser.error("give a run folder (or --write-digits16 FILE)")
    from five.run.device import choose_device
    from five.run.evaluate import evaluate_run

    device = choose_device(args.device)
    evaluate = lambda: evaluate_run(args.run_dir, device, args.importance_samples, log=lambda line: None)  # noqa: E731
    if device.type == "cuda":
        with cudnn_conv_precision("ieee"):
            exact = evaluate()
        with cudnn_conv_precision("tf32"):
            tf32 = evaluate()
        how = f"cuDNN TF32 on {torch.cuda.get_device_name()}"
    else:
        exact = evaluate()
        with EmulatedTF32Convolutions() as mode:
            tf32 = evaluate()
        how = f"TF32 emulated on the CPU in {mode.convolutions} convolution calls"
        if mode.convolutions == 0:
            print("no convolution ran: the run is not a conv run, and TF32 does not touch its matmuls")
    print(f"{args.run_dir} ({args.importance_samples} importance samples), float32 against {how}:")
    for key in SHOWN_METRICS + (("wall_time_s",) if device.type == "cuda" else ()):  # emulation's time: not TF32's
        if isinstance(exact.get(key), (int, float)):
            print(
                f"  {key:24} float32 {exact[key]:12.5f}  TF32 {tf32[key]:12.5f}  difference {tf32[key] - exact[key]:+.5f}"
            )
    return 0


if __name__ == "__main__":
    from five.base.errors import FiveError

    try:
        sys.exit(main())
    except FiveError as error:  # a run folder that cannot be evaluated: one line
        print(f"benchmarks.tf32: error: {error}", file=sys.stderr)
        sys.exit(2)
