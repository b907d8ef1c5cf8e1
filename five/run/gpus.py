"""Give each concurrent job its own GPU.

`snakemake --resources gpu=N` only caps how many GPU jobs run at once; it does not say which device each
one uses. A job claims a device by taking an exclusive lock on `<lock_dir>/gpu<ID>.lock` (flock, held for
the life of the process, released by the kernel even on kill -9), then narrows CUDA_VISIBLE_DEVICES to it
before CUDA is initialised.

Candidate devices: those already in CUDA_VISIBLE_DEVICES (as Slurm sets it), else 0..N−1 with N from
$FIVE_GPU_COUNT (also how tests fake GPUs on a machine without any), else from `nvidia-smi -L`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

GPU_COUNT_VARIABLE = "FIVE_GPU_COUNT"
_held: list = []  # open lock files: closing them (or the process ending) releases the claim


def candidate_devices() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [device.strip() for device in visible.split(",") if device.strip() and device.strip() != "-1"]
    if os.environ.get(GPU_COUNT_VARIABLE):
        return [str(i) for i in range(int(os.environ[GPU_COUNT_VARIABLE]))]
    if shutil.which("nvidia-smi"):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]
    return []


def claim_gpu(
    lock_dir: Path, log: Callable[[str], None] = print, poll_seconds: float = 1.0, timeout_seconds: float | None = None
) -> str | None:
    """Lock a free device and make it the only visible one; None when there are no GPUs at all.

    Waits while every device is held (more GPU jobs than devices means the --resources cap is larger than
    the machine: say so, rather than silently sharing a device).
    """
    devices = candidate_devices()
    if not devices:
        return None
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    started, warned = time.monotonic(), False
    while True:
        for device in devices:
            handle = open(lock_dir / f"gpu{device}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            _held.append(handle)
            os.environ["CUDA_VISIBLE_DEVICES"] = device
            return device
        if not warned:
            log(
                f"all {len(devices)} GPUs ({', '.join(devices)}) are held by other jobs; waiting for one "
                "(is --resources gpu larger than the number of GPUs?)"
            )
            warned = True
        if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
            raise TimeoutError(f"no GPU became free within {timeout_seconds} s")
        time.sleep(poll_seconds)
