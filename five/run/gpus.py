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
import stat
import subprocess
import time
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from five.base.errors import FiveError
from five.base.files import check_output_dir, refuse_non_regular

GPU_COUNT_VARIABLE = "FIVE_GPU_COUNT"
MAX_GPU_COUNT = 4096  # more than any one machine has: a larger count is a typo
_held: list = []  # open lock files: closing them (or the process ending) releases the claim


def candidate_devices() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [device.strip() for device in visible.split(",") if device.strip() and device.strip() != "-1"]
    if os.environ.get(GPU_COUNT_VARIABLE):
        return [str(i) for i in range(gpu_count(os.environ[GPU_COUNT_VARIABLE]))]
    if shutil.which("nvidia-smi"):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        gpus = [line for line in listing.splitlines() if line.startswith("GPU ")]  # not their indented MIG lines
        return [str(index) for index in range(len(gpus))]
    return []


def gpu_count(value: str) -> int:
    """$FIVE_GPU_COUNT as a number of GPUs, or one line saying what it is instead."""
    digits = value.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 4 and int(digits) <= MAX_GPU_COUNT):
        raise FiveError(f"${GPU_COUNT_VARIABLE} is {value[:40]!r}, not a number of GPUs (0 to {MAX_GPU_COUNT})")
    return int(digits)


def lock_path(lock_dir: Path, device: str) -> Path:
    """The lock file of `device`: its id quoted into one file name (a MIG id such as MIG-GPU-…/1/0 holds
    slashes, which must not become folders)."""
    return Path(lock_dir) / f"gpu{quote(device, safe='')}.lock"


def open_lock(path: Path):
    """`path` opened for locking, created where it is not there: only a regular file, as run_lock's (the lock
    holder writes its process id into it); not following a link put there since the check."""
    refuse_non_regular(path, "the GPU lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, 0o644)
    except OSError as error:  # another user's lock, a name too long, a link made since the check
        raise FiveError(f"the GPU lock {path} cannot be opened ({error.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device put there since the check
        os.close(fd)
        refuse_non_regular(path, "the GPU lock")
    return os.fdopen(fd, "r+")


def claim_gpu(
    lock_dir: Path, log: Callable[[str], None] = print, poll_seconds: float = 1.0, timeout_seconds: float | None = None
) -> str | None:
    """Lock a free device and make it the only visible one; None when there are no GPUs at all.

    Waits while every device is held (more GPU jobs than devices means the --resources cap is larger than
    the machine: say so, rather than silently sharing a device).
    """
    lock_dir = Path(lock_dir)
    check_output_dir(lock_dir, "--gpu-lock-dir")
    devices = candidate_devices()
    if not devices:
        return None
    lock_dir.mkdir(parents=True, exist_ok=True)
    started, warned = time.monotonic(), False
    while True:
        for device in devices:
            handle = open_lock(lock_path(lock_dir, device))
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
