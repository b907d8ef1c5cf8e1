"""MLflow through a real tracking server (issue 20): a sweep with `tracking_uri: http://…` and two concurrent
jobs logs every run's params, per-epoch metrics, evaluation and artifacts; with the server down, training
goes on (one warning line per job, the JSON files complete), and `five mlflow-sync` logs those runs once the
server is back. The server listens on 127.0.0.1 only, every wait is bounded, and the test stops what it started."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from workflow_runs import snakemake, snakemake_command, untracked_environment, write_config

from five.sweep.table import sweep_table

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {
    "experiment": "served",
    "seeds": [0, 1],
    "models": {"vae": {}},
    "datasets": {
        "digits": {"latent_dims": [2], "epochs": 2, "hidden_width": 8, "importance_samples": 4, "eval_every": 1}
    },
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`mlflow server` on a SQLite file and an artifacts folder in `folder`, on 127.0.0.1:port."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port, self.process = folder, port, None
        self.uri = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 120) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.folder / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "server.log", "a"),
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise AssertionError(
            f"mlflow server did not answer within {timeout} s: {(self.folder / 'server.log').read_text()[-2000:]}"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server and its workers
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


@pytest.fixture
def server(tmp_path):
    started = Server(tmp_path / "server", free_port())
    started.folder.mkdir()
    started.start()
    yield started
    started.stop()


def run_dirs(workdir: Path, config: dict) -> list[Path]:
    return [workdir / run_dir for run_dir in sweep_table(config)["run_dir"]]


def sweep(workdir: Path, config: dict):
    """The sweep's train and evaluate jobs (what logs to MLflow; the tables are not needed here)."""
    targets = [str(run_dir.relative_to(workdir) / "eval.json") for run_dir in run_dirs(workdir, config)]
    command = snakemake_command(workdir, write_config(workdir, config), "--cores", "2", *targets)
    return snakemake(command, env=untracked_environment(), timeout=600)


def logged_runs(uri: str) -> dict[str, object]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("served")
    return {run.data.tags["five.run_key"]: run for run in client.search_runs([experiment.experiment_id])}


def assert_fully_logged(uri: str, run_dirs: list[Path]) -> None:
    client, runs = MlflowClient(uri), logged_runs(uri)
    assert sorted(runs) == sorted(str(run_dir.resolve()) for run_dir in run_dirs)
    for run in runs.values():
        assert run.info.status == "FINISHED" and run.data.params["epochs"] == "2"
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 2
        assert len(client.get_metric_history(run.info.run_id, "val_nll")) == 2
        assert "eval_nll_nats" in run.data.metrics
        assert {"train.json", "eval.json"} <= {item.path for item in client.list_artifacts(run.info.run_id)}


def test_a_sweep_logs_through_a_server_and_survives_its_outage(server, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    config = CONFIG | {"tracking_uri": server.uri}
    result = sweep(work, config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "went on untracked" not in result.stdout + result.stderr
    assert f"MLflow: open {server.uri} in a browser" in result.stdout + result.stderr  # `mlflow ui` serves no server
    assert_fully_logged(server.uri, run_dirs(work, config))

    server.stop()  # a new seed trains and evaluates while the server is down
    config |= {"seeds": [0, 1, 2]}
    down = sweep(work, config)
    assert down.returncode == 0, down.stderr[-3000:]
    everything = run_dirs(work, config)
    assert all(json.loads((run_dir / "eval.json").read_text())["status"] == "complete" for run_dir in everything)
    new = [run_dir for run_dir in everything if run_dir.name == "s2"]
    for run_dir in new:
        point = run_dir.parent.relative_to(work / "results" / "served")  # its packed job's log: one per point
        log = (work / "logs" / "served" / "train" / point / "seeds.log").read_text()
        warnings = [line for line in log.splitlines() if line.startswith("warning: MLflow tracking")]
        assert len(warnings) == 1 and "five mlflow-sync" in warnings[0], log[-2000:]
    closing = down.stdout + down.stderr  # the closing summary says so too: the jobs' logs are not all one reads
    assert "MLflow: 2 jobs went on untracked" in closing and "-m five.cli mlflow-sync --experiment served" in closing

    server.start()  # back: the command the summary prints, run as printed from another folder (no
    # MLFLOW_TRACKING_URI of its own), logs the runs it missed from their JSON files and leaves the others alone
    printed = re.search(r"`(MLFLOW_TRACKING_URI=\S+ \S+ -m five.cli mlflow-sync [^`]+)` logs them", closing)
    assert printed, closing[-2000:]
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    synced = subprocess.run(
        ["bash", "-c", printed.group(1)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert synced.returncode == 0, synced.stderr[-2000:]
    assert f"MLflow store: {server.uri}" in synced.stdout, synced.stdout
    assert synced.stdout.count(": logged") == 1 and synced.stdout.count(": already in MLflow") == 2, synced.stdout
    assert_fully_logged(server.uri, everything)
