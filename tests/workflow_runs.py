"""The real Snakemake on a config written into a scratch folder, as the workflow tests run it."""

import atexit
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = Path(__file__).with_name("snakemake_forks.py")
IDLE_LAUNCHERS: queue.SimpleQueue = queue.SimpleQueue()  # one per thread that runs Snakemake at a time
FORKED: list[list[str]] = []  # the commands a launcher ran


def write_config(workdir: Path, config: dict | str) -> Path:
    """workdir/config.yaml holding `config` (a dict, or YAML text as given)."""
    path = workdir / "config.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


def snakemake_command(workdir: Path, config_path: Path, *args, python: str = sys.executable) -> list[str]:
    """Snakemake on the project's Snakefile with `workdir` as its working directory and `config_path` as its
    config, run by `python` (another interpreter: a user's other environment)."""
    snakefile = str(ROOT / "Snakefile")
    return [
        python,
        "-m",
        "snakemake",
        "-s",
        snakefile,
        "-d",
        str(workdir),
        "--configfile",
        str(config_path),
        *map(str, args),
    ]


def untracked_environment() -> dict[str, str]:
    """This process's environment without MLFLOW_TRACKING_URI: the workflow then tracks into its own results."""
    return {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}


def idle_launcher() -> subprocess.Popen:
    """A launcher no thread is using: an idle one that is still running, else a new one."""
    while True:
        try:
            launcher = IDLE_LAUNCHERS.get_nowait()
        except queue.Empty:
            break
        if launcher.poll() is None:
            return launcher
    launcher = subprocess.Popen(
        [sys.executable, str(LAUNCHER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    atexit.register(launcher.stdin.close)  # its end of input: it exits
    return launcher


def snakemake(command: list[str], env: dict[str, str] | None = None, timeout: float = 900):
    """subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout) for a snakemake_command,
    run by a child forked from a launcher (snakemake_forks.py) where `command` is this interpreter's."""
    if command[:3] != [sys.executable, "-m", "snakemake"]:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    launcher = idle_launcher()
    with tempfile.TemporaryDirectory() as scratch:
        stdout, stderr = Path(scratch, "stdout"), Path(scratch, "stderr")
        request = {"args": command[3:], "cwd": os.getcwd(), "env": dict(os.environ if env is None else env)}
        request |= {"stdout": str(stdout), "stderr": str(stderr), "timeout": timeout}
        launcher.stdin.write(json.dumps(request) + "\n")
        launcher.stdin.flush()
        reply = launcher.stdout.readline()
        assert reply, "the Snakemake launcher (tests/snakemake_forks.py) ended; its error is in the captured stderr"
        IDLE_LAUNCHERS.put(launcher)
        FORKED.append(command)
        returncode = json.loads(reply)["returncode"]
        if returncode is None:
            raise subprocess.TimeoutExpired(command, timeout)
        return subprocess.CompletedProcess(command, returncode, stdout.read_text(), stderr.read_text())


def run_snakemake(workdir: Path, config: dict | str, *args, check: bool = True, python: str = sys.executable):
    """Snakemake on `config` in `workdir` with two cores, untracked by this process's MLflow; with `check`, its
    success asserted."""
    command = snakemake_command(workdir, write_config(workdir, config), "--cores", "2", *args, python=python)
    result = snakemake(command, env=untracked_environment())
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def planned_jobs(result) -> dict[str, int]:
    """The job counts of a run's or dry run's 'Job stats' table ({} when Snakemake says there is nothing to do)."""
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    stats = text[text.index("Job stats:") :].split("\n\n")[0]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE) if name != "total"}


def assert_results_match_training(workdir: Path, experiment: str) -> None:
    """Every run of the experiment's runs.csv is tabled from its own finished train.json and from an evaluation of
    its best checkpoint made after that checkpoint was written."""
    for row in pd.read_csv(workdir / "results" / experiment / "runs.csv").to_dict("records"):
        run_dir = workdir / row["run_dir"]
        train = json.loads((run_dir / "train.json").read_text())
        evaluation = json.loads((run_dir / "eval.json").read_text())
        assert train["status"] == "complete" and train["epochs_completed"] == train["config"]["epochs"], run_dir
        assert evaluation["checkpoint_epoch"] == train["best_epoch"], run_dir
        assert (run_dir / "eval.json").stat().st_mtime >= (run_dir / "best.pt").stat().st_mtime, run_dir
        assert row["epochs_completed"] == train["epochs_completed"] and row["nll_nats"] == evaluation["nll_nats"], (
            run_dir
        )
