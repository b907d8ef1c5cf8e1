"""Concurrent jobs get distinct GPUs (faked with FIVE_GPU_COUNT on a machine without any)."""

import os
import subprocess
import sys
import time

import pytest

from five.run import gpus

CLAIM_AND_HOLD = """
import sys, time
from five.run.gpus import claim_gpu
device = claim_gpu(sys.argv[1], log=lambda line: print(line, file=sys.stderr), poll_seconds=0.05)
import os
print(device, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(float(sys.argv[2]))
"""


def claimers(tmp_path, count, hold, env):
    return [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM_AND_HOLD, str(tmp_path / "locks"), str(hold)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(count)
    ]


def test_n_concurrent_jobs_get_n_distinct_devices(tmp_path):
    env = {**os.environ, "FIVE_GPU_COUNT": "4"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    processes = claimers(tmp_path, 4, hold=2.0, env=env)
    outputs = [process.communicate(timeout=60)[0].split() for process in processes]
    claimed = [device for device, visible in outputs]
    assert sorted(claimed) == ["0", "1", "2", "3"]
    assert all(device == visible for device, visible in outputs)  # each sees only its own device


def test_a_job_waits_for_a_free_device_and_respects_cuda_visible_devices(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "3,5"}  # as a scheduler would set it
    env.pop("FIVE_GPU_COUNT", None)
    started = time.monotonic()
    first_two = claimers(tmp_path, 2, hold=1.5, env=env)
    time.sleep(0.5)
    third = claimers(tmp_path, 1, hold=0, env=env)[0]
    first = sorted(process.communicate(timeout=60)[0].split()[0] for process in first_two)
    out, err = third.communicate(timeout=60)
    assert first == ["3", "5"]
    assert out.split()[0] in {"3", "5"} and "waiting" in err
    assert time.monotonic() - started >= 1.5  # it got a device only after one was released


def test_no_gpus_means_no_claim(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("FIVE_GPU_COUNT", "0")
    assert gpus.claim_gpu(tmp_path) is None


def test_the_gpus_nvidia_smi_lists_are_counted_without_their_mig_lines(monkeypatch):
    """`nvidia-smi -L` lists a GPU's MIG instances on indented lines below it: they are not devices of their own
    (counting them made GPU 1 device 3, a device CUDA does not have)."""
    listing = (
        "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)\n"
        "  MIG 3g.40gb     Device  0: (UUID: MIG-bbbb)\n"
        "  MIG 3g.40gb     Device  1: (UUID: MIG-cccc)\n"
        "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-dddd)\n"
    )
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(gpus.GPU_COUNT_VARIABLE, raising=False)
    monkeypatch.setattr(gpus.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(gpus.subprocess, "run", lambda *args, **kwargs: subprocess.CompletedProcess(args, 0, listing))
    assert gpus.candidate_devices() == ["0", "1"]


def test_a_killed_job_releases_its_device(tmp_path):
    env = {**os.environ, "FIVE_GPU_COUNT": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    holder = claimers(tmp_path, 1, hold=60, env=env)[0]
    assert holder.stdout.readline().split()[0] == "0"
    holder.kill()  # kill -9: the kernel drops the flock
    holder.wait()
    taker = claimers(tmp_path, 1, hold=0, env=env)[0]
    assert taker.communicate(timeout=30)[0].split()[0] == "0"


@pytest.fixture(autouse=True)
def _restore_cuda_visible_devices():
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    yield
    if before is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = before
