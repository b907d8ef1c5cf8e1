"""The `five` command line: argument parsing only; five.jobs does what each command does.

Errors in the user's input print one line `five: error: …` and exit with a non-zero code.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from five.base.config import (
    CUDA_GRAPH_MODES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_FIF_BETA,
    DEFAULT_IMPORTANCE_SAMPLES,
    DEFAULT_LOG_SIGMA_LR,
    DEFAULT_LR,
    DEFAULT_PROBES,
    MODEL_SELECTIONS,
    STEP_TIMING_ROUNDS,
)
from five.base.errors import FiveError, one_line
from five.base.files import path_problem, shown_path
from five.base.metrics import TABLED_SPLIT

DATA_DIR_HELP = "data root for mnist/cifar10 (default: $FIVE_DATA_DIR, else ./data)"


# torch.func/torchvision may trigger a deprecation warning inside torch on first import; it is not the user's
# concern and would break the one-line error contract.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)


def add_job_options(parser: argparse.ArgumentParser, tracked: bool = True) -> None:
    """Options of a job of the workflow; a `tracked` one logs its runs to MLflow (a run key for each run folder),
    an untracked one offers no MLflow options (it would ignore them)."""
    if tracked:
        add_tracking_options(parser)
    else:
        parser.set_defaults(mlflow_experiment=None, mlflow_run_key=None, mlflow_artifact_location=None)
    parser.add_argument(
        "--gpu-lock-dir",
        type=given_path,
        help="claim a GPU no other job holds, via lock files in this folder (workflow jobs)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads of PyTorch in this job (default: PyTorch's, one per core; the workflow "
        "passes the job's Snakemake threads so that parallel jobs do not oversubscribe)",
    )


def add_tracking_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mlflow-experiment", type=given_name, help="log to this MLflow experiment (URI from $MLFLOW_TRACKING_URI)"
    )
    parser.add_argument(
        "--mlflow-run-key",
        type=given_key,
        nargs="+",
        help="identifies the sweep point in MLflow (default: the run folder); one per run folder",
    )
    parser.add_argument(
        "--mlflow-artifact-location",
        type=given_text,
        help="where a new MLflow experiment keeps its artifacts (the first job creates it)",
    )


def given_path(text: str) -> Path:
    """A path option's value; an empty one is refused (Path("") would be the current folder)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path was given")
    problem = path_problem(Path(text))
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{shown_path(text)} {problem}")
    return Path(text)


def given_file(text: str) -> Path:
    """An output file's path: as given_path, and not spelled as a folder (Path drops a trailing '/', so
    `--out run/eval.json/` would write the file eval.json where a folder was meant)."""
    if text.endswith(("/", "/.")):
        raise argparse.ArgumentTypeError(f"{shown_path(text)} names a folder (it ends in '/'), not a file")
    return given_path(text)


def given_key(text: str) -> str:
    """A run key's value; an empty one is refused (it would silently stand for the run folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty key was given")
    return text


MLFLOW_NAME_MAX = 500  # MLflow refuses longer experiment names


def given_text(text: str) -> str:
    """A text option's value: not empty, one line of visible text."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty value was given")
    if not one_line(text):
        raise argparse.ArgumentTypeError(f"{ascii(text)} holds a control character (a newline or escape)")
    return text


def given_name(text: str) -> str:
    """A name option's value (an MLflow experiment); an empty one, or one MLflow would refuse, is refused."""
    given_text(text)
    if len(text) > MLFLOW_NAME_MAX:
        raise argparse.ArgumentTypeError(f"a name of {len(text)} characters (MLflow takes at most {MLFLOW_NAME_MAX})")
    return text


class OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"five: error: {message} (see `{self.prog} --help`)\n")


def add_train_command(commands) -> None:
    """`five train`: one run, or a sweep point's seeds packed"""
    train = commands.add_parser("train", help="train (or resume) one run")
    train.add_argument(
        "--settings",
        type=given_path,
        help="a JSON file of the run's settings, the options below by their field names (latent_dim, …), in place "
        "of them: the workflow writes one per sweep point (training.json)",
    )
    train.add_argument("--model", help="vae, fcvae, fif or five")
    train.add_argument("--dataset", help="digits, manifold, mnist, cifar10 or npz:PATH")
    train.add_argument("--latent-dim", type=int, help="d")
    train.add_argument(
        "--probes", type=int, help=f"Hutchinson budget K, 1 <= K <= d (fif, five; default {DEFAULT_PROBES})"
    )
    train.add_argument("--epochs", type=int, help=f"default {DEFAULT_EPOCHS}")
    train.add_argument("--batch-size", type=int, help=f"default {DEFAULT_BATCH_SIZE}")
    train.add_argument("--lr", type=float, help=f"Adam learning rate (default {DEFAULT_LR:g})")
    train.add_argument(
        "--log-sigma-lr",
        type=float,
        help=f"Adam learning rate of ρ = log σ (vae, fcvae, five; default {DEFAULT_LOG_SIGMA_LR:g}, see config/README.md)",
    )
    train.add_argument("--beta", type=float, help=f"FIF reconstruction weight (fif only; default {DEFAULT_FIF_BETA:g})")
    train.add_argument(
        "--surrogate-point",
        help="five only: where the decoder tangents J_g·v are taken, mean (default) or sample (method.md §1.4)",
    )
    train.add_argument("--architecture", help="mlp or conv (default: the data set's)")
    train.add_argument("--hidden-width", type=int, help="trunk width (default: the data set's)")
    train.add_argument("--checkpoint-every", type=int, help="epochs between checkpoints (default: every epoch)")
    train.add_argument("--eval-every", type=int, help="epochs between validation evaluations (default: epochs/20)")
    train.add_argument(
        "--patience", type=int, help="stop when this many validation evaluations bring no better NLL (default: off)"
    )
    train.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        help="seed(s); several train as one packed model, each exactly as alone (one --out each)",
    )
    add_train_job_options(train)


def add_train_job_options(train) -> None:
    """Where and how `five train` runs: device, data, run folders, step options, the job's options."""
    train.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu or cuda")
    train.add_argument("--data-dir", type=given_path, help=DATA_DIR_HELP)
    train.add_argument(
        "--out", type=given_path, nargs="+", required=True, help="run folder, one per seed; an existing one is resumed"
    )
    train.add_argument(
        "--restart-if-changed",
        action="store_true",
        help="if --out holds a run of another configuration, start afresh instead of failing",
    )
    train.add_argument(
        "--compile", action="store_true", help="torch.compile the objective: faster steps after a warm-up of seconds"
    )
    train.add_argument(
        "--cuda-graph",
        default="auto",
        choices=CUDA_GRAPH_MODES,
        help="capture the training step as a CUDA graph: auto (on CUDA, eager where the capture "
        "fails; default), on (fail if it cannot), off",
    )
    train.add_argument(
        "--model-selection",
        default="best",
        choices=MODEL_SELECTIONS,
        help="how the runs will be evaluated: best (default) or last, which needs each run's last checkpoint, so "
        "a run of fewer epochs is retrained, never cut to its best checkpoint",
    )
    train.add_argument(
        "--record-divergence",
        action="store_true",
        help="a non-finite loss is recorded in train.json (status diverged) and exits 0",
    )
    add_job_options(train)


def add_evaluate_command(commands) -> None:
    """`five evaluate`: test likelihood and collapse metrics of trained runs"""
    evaluate = commands.add_parser("evaluate", help="evaluate trained runs")
    evaluate.add_argument(
        "--run",
        type=given_path,
        nargs="+",
        required=True,
        help="run folder(s) written by `five train`; several are evaluated in turn in one process",
    )
    evaluate.add_argument(
        "--importance-samples",
        type=int,
        default=DEFAULT_IMPORTANCE_SAMPLES,
        help=f"N of the IWAE estimate (default {DEFAULT_IMPORTANCE_SAMPLES})",
    )
    evaluate.add_argument("--split", default=TABLED_SPLIT)
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--data-dir", type=given_path, help=DATA_DIR_HELP)
    evaluate.add_argument(
        "--image-dir",
        type=given_path,
        nargs="+",
        help="also write reconstructions.png and samples.png here (one per run folder)",
    )
    evaluate.add_argument(
        "--model-selection", default="best", help="best (the epoch with the best validation NLL; default) or last"
    )
    evaluate.add_argument(
        "--sigma",
        default="own",
        help="own (the model's: learned, or FIF's fixed 1/√(2β); default) or fitted (the σ that "
        "maximises the validation IWAE for the trained f, g; FIF then also reports its own)",
    )
    evaluate.add_argument(
        "--cache-dir",
        type=given_path,
        help="reuse quantities every evaluation of a sweep computes alike (manifold: the true "
        "posterior of the test points) from this folder",
    )
    evaluate.add_argument(
        "--out", type=given_file, nargs="+", required=True, help="the JSON file to write, one per run folder"
    )
    add_job_options(evaluate)


def add_sweep_commands(commands) -> None:
    """`five estimate` and `five time-steps`: a sweep's cost"""
    add_estimate_command(commands)
    add_time_steps_command(commands)


def add_estimate_command(commands) -> None:
    estimate = commands.add_parser("estimate", help="predict a sweep's device-hours before running it")
    estimate.add_argument("--configfile", type=given_path, required=True, help="the sweep's config (as for snakemake)")
    estimate.add_argument(
        "--device",
        default="auto",
        help="where to time the steps: auto, cpu or cuda (time on the kind of device the jobs will use)",
    )
    estimate.add_argument("--gpus", type=int, default=1, help="devices the sweep runs on at once (wall-clock)")
    estimate.add_argument(
        "--pack-seeds",
        action="store_true",
        help="also time each sweep point's seeds packed into one model (five.model.pack) and report the "
        "device-hours with packing",
    )
    estimate.add_argument(
        "--data-dir",
        type=given_path,
        help="data root for mnist/cifar10 (default: the config's data_dir, as the workflow's jobs; missing files: "
        "random images of their shape stand in)",
    )
    estimate.add_argument(
        "--out-dir",
        type=given_path,
        help="where estimate.csv and estimate.md go (default: results/<experiment>, where the workflow reads it)",
    )


def add_time_steps_command(commands) -> None:
    timing = commands.add_parser(
        "time-steps",
        help="time the training steps of several configurations side by side in one process (the sweep's cost claim)",
    )
    timing.add_argument("--dataset", required=True, help="the data set whose steps are timed")
    timing.add_argument(
        "--points",
        required=True,
        help='JSON list of configurations: {"model", "latent_dim", "probes", "surrogate_point", '
        '"batch_size", "hidden_width", "architecture"} (missing keys: the defaults)',
    )
    timing.add_argument(
        "--rounds",
        type=int,
        default=STEP_TIMING_ROUNDS,
        help="rounds, each timing every configuration in turn (pairs for the claims)",
    )
    timing.add_argument("--device", default="auto")
    timing.add_argument(
        "--cuda-graph",
        default="auto",
        choices=CUDA_GRAPH_MODES,
        help="time the steps as training runs them: captured as CUDA graphs on CUDA (auto)",
    )
    timing.add_argument("--compile", action="store_true", help="torch.compile the objective, as training with it does")
    timing.add_argument("--data-dir", type=given_path, help=DATA_DIR_HELP)
    timing.add_argument(
        "--out", type=given_file, required=True, help="the CSV file to write (one row per round and configuration)"
    )
    add_job_options(timing, tracked=False)


def add_other_commands(commands) -> None:
    """`five download` and the MLflow commands"""
    download = commands.add_parser("download", help="fetch MNIST or CIFAR-10 (the only command that downloads)")
    download.add_argument("--dataset", required=True, help="mnist or cifar10")
    download.add_argument("--data-dir", type=given_path, help=DATA_DIR_HELP)
    init = commands.add_parser("mlflow-init", help="create the MLflow experiment before jobs start")
    init.add_argument("--experiment", type=given_name, required=True)
    init.add_argument("--artifact-location", type=given_text, help="where artifacts go (default: MLflow's)")

    sync = commands.add_parser(
        "mlflow-sync",
        help="log finished run folders that MLflow lacks (trained while "
        "the tracking server was down) from their JSON files",
    )
    sync.add_argument("--experiment", type=given_name, required=True)
    sync.add_argument(
        "--artifact-location", type=given_text, help="where artifacts go if the experiment is new (default: MLflow's)"
    )
    sync.add_argument("runs", nargs="+", type=given_path, help="run folders (e.g. results/EXPERIMENT/*/*/*/*/*)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="five", description="Train and evaluate the four models of the FIVE benchmark (VAE, FC-VAE, FIF, FIVE)."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)

    for add in (add_train_command, add_evaluate_command, add_sweep_commands, add_other_commands):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from five import jobs

        getattr(jobs, "run_" + args.command.replace("-", "_"))(args)
    except FiveError as error:
        print(f"five: error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
