"""The training loop (spec §4–5): Adam, the whole data set on the device, per-epoch progress lines,
atomic checkpoints every N epochs and exact resume.

Determinism: all randomness of epoch e (shuffle, dequantisation, ε/u/probe draws) comes from a generator
seeded with (seed, e), so a run resumed from the checkpoint after epoch e draws exactly what an
uninterrupted run draws, without saving RNG state.
"""

from __future__ import annotations

import functools
import math
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from five import __version__
from five.base.config import SCHEDULE_SETTINGS, TrainConfig, check_packable
from five.base.errors import ConfigError, TrainingDiverged
from five.base.files import (
    BEST_NAME,
    CHECKPOINT_NAME,
    DATA_FINGERPRINT,
    FINISHED,
    TRAIN_JSON,
    atomic_copy,
    move_aside,
    read_train_record,
    remove_stale_temporaries,
    run_lock,
    write_json,
)
from five.data.catalog import input_files
from five.data.datasets import check_same_data, load_dataset
from five.model.estimators import no_cholesky_factor
from five.model.models import Model, build_model
from five.model.pack import member_optimizer_state, member_state, pack_models, packed_optimizer_state
from five.run.checkpoint import load_checkpoint, load_weights, save_checkpoint
from five.run.steps import Step, check_cuda_graph_mode, choose_step, model_batch, set_capturable, uses_cuda_graph
from five.run.validation import best_epoch, replayed_history, stalled, validate, validates_after, validation_batch


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch `epoch`'s random stream (shuffle, dequantisation, ε/u/probe draws)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(epoch_seed(seed, epoch))


def batch_sizes(examples: int, batch_size: int) -> list[int]:
    """The distinct batch sizes of an epoch: full batches, and the shorter last one where there is one."""
    return sorted({min(batch_size, examples), examples % batch_size} - {0}, reverse=True)


def train_epoch(step: Step, examples: int, batch_size: int, generators: list[torch.Generator]) -> torch.Tensor:
    """One pass over the `examples` training examples for each member of the step's model, each in the order
    its own generator shuffles them. Returns every step's losses, (steps, members), on the device: the step has
    no host sync, and the caller checks them once per epoch."""
    orders = torch.stack([torch.randperm(examples, generator=g, device=g.device) for g in generators])
    batches = orders.split(batch_size, dim=1)
    step_losses = torch.empty(len(batches), len(generators), device=orders.device)
    for index, indices in enumerate(batches):
        step_losses[index] = step(indices[0] if len(generators) == 1 else indices)
    return step_losses


def member_loss(step_losses: torch.Tensor, member: int, epoch: int) -> float:
    """A member's mean loss over the epoch; a non-finite loss is reported with the exact step where it first
    appeared."""
    losses = step_losses[:, member]
    finite = torch.isfinite(losses)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0])
        raise TrainingDiverged(epoch, first + 1, float(losses[first]))
    return float(losses.mean())


def build_optimizer(model: Model, config: TrainConfig, capturable: bool = False) -> torch.optim.Adam:
    """Adam over all parameters; ρ = log σ, where learned, in its own group at config.log_sigma_lr.
    `capturable` (for a CUDA graph) keeps its step counts on the device and fuses its update into one kernel."""
    log_sigma = [model.log_sigma] if model.learns_sigma else []
    weights = [p for p in model.parameters() if not any(p is q for q in log_sigma)]
    groups = [{"params": weights}] + ([{"params": log_sigma, "lr": config.log_sigma_lr}] if log_sigma else [])
    return torch.optim.Adam(groups, lr=config.lr, capturable=capturable, fused=capturable)


def _resume_state(
    out_dir: Path, config: TrainConfig, restart_if_changed: bool, log: Callable[[str], None]
) -> dict | None:
    """The checkpoint to resume from, if `out_dir` holds one of this configuration.

    More epochs than the checkpoint's is a continuation (epoch-seeded randomness makes it equal to a longer
    run). The weights never depend on when a run validates or stops (epochs, eval_every, patience,
    checkpoint_every), but its result, the best epoch, does: the run continues where it is what a run of this
    configuration would have been so far (_replay). Any other change, or a run of this configuration that would
    have ended earlier and that _shorter_run_from_history could not serve, is another run: an error, or with
    `restart_if_changed` (what the workflow uses after a config edit) the old run's files are moved to
    `out_dir/.superseded/<time>/`, never deleted.
    """
    path = out_dir / CHECKPOINT_NAME
    stale_files = [
        stale for name in (CHECKPOINT_NAME, BEST_NAME, TRAIN_JSON) for stale in remove_stale_temporaries(out_dir / name)
    ]
    for stale in stale_files:
        log(f"removed {stale.name}, left by a job killed while writing")
    if not path.exists():
        return None
    state = load_checkpoint(path)
    saved = TrainConfig.from_dict(state["config"])
    changes = [f"{k}: {getattr(saved, k)!r} → {getattr(config, k)!r}" for k in saved.differences(config)]
    changes += [
        f"{k}: not in the checkpoint (an older version of five) → {value!r}"
        for k, value in config.to_dict().items()
        if k not in state["config"] and value is not None
    ]
    if not changes:
        history, why = _replay(out_dir, state, config)
        if history is not None and len(history) == state["epoch"]:
            return state | {"history": history}
        why = why or f"a run of it ends at epoch {len(history)} of the {state['epoch']} trained"
        edited = [k for k in SCHEDULE_SETTINGS if getattr(saved, k) != getattr(config, k)]
        schedule = [f"{k}: {getattr(saved, k)!r} → {getattr(config, k)!r}" for k in edited]
        changes.append(f"{', '.join(schedule)} ({why})" if schedule else why)
    if not restart_if_changed:
        raise ConfigError(
            f"{out_dir} holds a run with another configuration ({', '.join(changes)}); "
            "use a new --out or --restart-if-changed"
        )
    target = move_aside(out_dir)
    log(
        f"{out_dir} held a run with another configuration ({', '.join(changes)}); moved its files to {target} "
        "and starting afresh"
    )
    return None


def _replay(out_dir: Path, state: dict, config: TrainConfig) -> tuple[list[dict] | None, str]:
    """The checkpoint's history as a run of `config` would have recorded it (replayed_history, which may end
    earlier), where the checkpoint's run is that run so far: validated wherever it would have been, with
    best.pt holding the epoch it would select. Else None, and why not."""
    history = replayed_history(state["history"], config)
    if history is None:
        return None, "a run of it validates after epochs this run did not (another eval_every, or epochs / 20)"
    best_path = out_dir / BEST_NAME
    best = load_checkpoint(best_path) if best_path.exists() else {"epoch": None}
    if best["epoch"] is not None and best["epoch"] > state["epoch"]:  # killed after saving best.pt, before the
        # checkpoint: retraining reaches that epoch again, and validates it again where the schedule is best.pt's
        # (when checkpoints are saved is not: it decides neither the weights nor where the run validates)
        best_config = best["config"] | {"checkpoint_every": config.checkpoint_every}
        if config.matches(best_config) and len(history) == state["epoch"]:
            return history, ""
        return None, f"best.pt is of epoch {best['epoch']}, after the checkpoint's, which a run of it may not select"
    selected = best_epoch(history)[0]
    if best["epoch"] != selected:
        return None, f"a run of it selects epoch {selected}, best.pt holds epoch {best['epoch']}"
    return history, ""


def _shorter_run_from_history(
    out_dir: Path,
    config: TrainConfig,
    device: torch.device,
    extra: dict | None,
    restart_if_changed: bool,
    needs_last_checkpoint: bool,
    log: Callable[[str], None],
) -> dict | None:
    """A run of `config` would have ended before the checkpoint's epoch (fewer epochs, or a patience that stops
    it earlier), nothing but the schedule changed: where the checkpoint's run validated wherever it would have
    and best.pt holds the epoch it would select (_replay), best.pt *is* its result, so keep it, record the
    history up to its end, and move the longer run aside (no retraining). Returns that run's train.json
    payload, else None. Never where the runs are to be evaluated at their last epoch (`needs_last_checkpoint`):
    a cut run has no checkpoint of it, so it is retrained."""
    checkpoint_path = out_dir / CHECKPOINT_NAME
    if not (restart_if_changed and checkpoint_path.exists()) or needs_last_checkpoint:
        return None
    state = load_checkpoint(checkpoint_path)
    if set(config.to_dict()) - set(state["config"]) or TrainConfig.from_dict(state["config"]).differences(config):
        return None
    history, _ = _replay(out_dir, state, config)
    if history is None or len(history) == state["epoch"]:
        return None
    return _cut(out_dir, config, device, extra, state["epoch"], history, log)


def _earlier_cut(
    out_dir: Path,
    config: TrainConfig,
    restart_if_changed: bool,
    needs_last_checkpoint: bool,
    log: Callable[[str], None],
) -> dict | None:
    """The train.json payload of a run an earlier call cut (_cut) where it is this config's run and no last
    checkpoint is needed; else None, refused without `restart_if_changed`, or with it moved aside."""
    record = read_train_record(out_dir / TRAIN_JSON)
    if record.get("truncated_from") is None:
        return None
    same = config.matches(record["config"])
    if same and not needs_last_checkpoint:
        log(f"{out_dir} holds this run, cut from a {record['truncated_from']}-epoch one; nothing to do")
        return record
    why = "without the last checkpoint --model-selection last needs" if same else "of another configuration"
    if not restart_if_changed:  # (a run of another configuration would be trained over: it has no checkpoint)
        raise ConfigError(f"{out_dir} holds a run cut from a longer one, {why}; use --restart-if-changed")
    log(f"{out_dir} held a run cut from a longer one, {why}; moved its files to {move_aside(out_dir)}")
    return None


def _cut(
    out_dir: Path,
    config: TrainConfig,
    device: torch.device,
    extra: dict | None,
    trained_epochs: int,
    history: list[dict],
    log: Callable[[str], None],
) -> dict:
    """Keep best.pt of the run trained for `trained_epochs` as the result of the shorter run whose `history` it
    replays: the longer run moves aside, and train.json records the shorter one. Returns that payload."""
    record_path = out_dir / TRAIN_JSON
    end, status = len(history), "stalled" if stalled(history, config.patience) else "complete"
    # how its epochs were trained (job, device, compile, CUDA graphs, model facts) is the longer run's record's,
    # read before anything moves; how it ended is the cut's (never the longer run's divergence)
    trained = read_train_record(record_path) if record_path.is_file() else {}
    trained.pop("error", None)
    target = move_aside(out_dir)
    atomic_copy(target / BEST_NAME, out_dir / BEST_NAME)  # not copy2: the mode a new file gets, whole or not at all
    wall_time = sum(entry["time_s"] or 0 for entry in history)
    ended = payload_of({"history": history, "wall_time_s": wall_time}, config, device, None, status)
    ended |= {key: trained[key] for key in ("device", "torch_version") if key in trained}  # its time_s are theirs
    payload = (extra or {}) | trained | ended | {"truncated_from": trained_epochs, "superseded": str(target)}
    write_json(record_path, payload)
    log(
        f"{out_dir}: a run of this configuration ends at epoch {end} ({status}), {trained_epochs} were trained; "
        f"its best epoch ({best_epoch(history)[0]}) is best.pt's, so that is this run's result (no retraining); "
        f"the longer run moved to {target} (no checkpoint of epoch {end} exists: evaluate with --model-selection best)"
    )
    return payload


@dataclass
class Run:
    """One seed's run and its folder, trained alone or as a member of a pack (five.model.pack) with the other seeds of
    its sweep point. `model` holds its weights (a pack copies them out where they are read); `result` is its
    train.json record once it stops, and `failure` the error where it diverged."""

    config: TrainConfig
    out_dir: Path
    on_epoch: Callable[[dict], None]
    extra: dict
    model: Model | None = None
    optimizer_state: dict | None = None
    history: list[dict] = field(default_factory=list)
    wall_time: float = 0.0
    epoch: int = 0
    result: dict | None = None
    failure: TrainingDiverged | None = None

    def record(self, status: str, device: torch.device, **fields) -> dict:
        """The train.json record in this state, written."""
        record = (
            payload_of(
                {"history": self.history, "wall_time_s": self.wall_time}, self.config, device, self.extra, status
            )
            | fields
        )
        write_json(self.out_dir / TRAIN_JSON, record)
        return record

    def stop(self, status: str, device: torch.device, **fields) -> None:
        self.result = self.record(status, device, **fields)


def train(
    config: TrainConfig,
    out_dir: Path,
    device: torch.device,
    log: Callable[[str], None] = print,
    data_dir: Path | None = None,
    restart_if_changed: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    extra: dict | None = None,
    compile_objective: bool = False,
    cuda_graph: str = "auto",
    needs_last_checkpoint: bool = False,
) -> dict:
    """Train (or resume) the run in `out_dir`; returns the train.json payload. A non-finite loss or validation NLL
    (or a FIF/FIVE posterior validation cannot factor) is recorded in train.json (status diverged) and raised as
    TrainingDiverged.

    `compile_objective` runs the objective through torch.compile (faster steps after a warm-up of seconds;
    same math, floating-point results may differ in the last bits). `cuda_graph` (auto, on, off) captures the
    training step as a CUDA graph (five.run.steps; auto: on CUDA, eager where the capture fails; the weights equal
    the eager run's within float32 round-off). `on_epoch` receives each history entry of a run that trains
    (replayed from the checkpoint on resume, so a tracker sees the whole run); `extra` is merged into
    train.json (e.g. the GPU and scheduler job that ran it).
    """
    [run] = train_seeds(
        [config],
        [out_dir],
        device,
        log,
        data_dir,
        restart_if_changed,
        lambda run: on_epoch,
        extra,
        compile_objective,
        cuda_graph,
        needs_last_checkpoint,
    )
    if run.failure is not None:
        raise run.failure
    return run.result


def train_seeds(
    configs: list[TrainConfig],
    out_dirs: list[Path],
    device: torch.device,
    log: Callable[[str], None] = print,
    data_dir: Path | None = None,
    restart_if_changed: bool = False,
    on_train: Callable[[Run], Callable[[dict], None] | None] | None = None,
    extra: dict | None = None,
    compile_objective: bool = False,
    cuda_graph: str = "auto",
    needs_last_checkpoint: bool = False,
    on_recorded: Callable[[Run], None] = lambda run: None,
) -> list[Run]:
    """Train (or resume) the runs of `configs` (one configuration up to the seed) in their `out_dirs`, those that
    need training packed into one model (five.model.pack). Each member trains exactly as it would alone: its seed's
    initial weights, random streams, Adam state, validation, best epoch and early stop; a member that stops
    (stalled or diverged) leaves the pack and the others go on; a finished one costs nothing. `on_train(run)` is
    called for each run that trains, before its history is replayed from its checkpoint, and returns the
    callback that receives its history entries (or None); `on_recorded(run)` for each run whose checkpoint already
    ends this configuration (an edit of its schedule or length) as soon as train.json records it anew.
    `needs_last_checkpoint`: the runs will be evaluated at their last epoch, so none is cut to its best checkpoint
    (_shorter_run_from_history). Returns the runs, each with its train.json record (`result`) and, where it
    diverged, the error (`failure`)."""
    check_cuda_graph_mode(cuda_graph, device)
    check_packable(configs, out_dirs)
    runs = [
        Run(config, Path(out_dir), lambda entry: None, dict(extra or {})) for config, out_dir in zip(configs, out_dirs)
    ]
    with ExitStack() as locks:
        for run in runs:
            locks.enter_context(run_lock(run.out_dir))
        loaded = functools.cache(lambda: load_dataset(configs[0].dataset, data_dir))
        _check_data_of_kept_runs(runs, loaded)
        _records_without_training(runs, device, restart_if_changed, needs_last_checkpoint, on_recorded, log)
        pending = [run for run in runs if run.result is None]
        if pending:
            dataset = loaded()
            for run in pending:
                _prepare(run, dataset, device, len(pending), restart_if_changed, compile_objective, log)
                if run.result is not None:  # its checkpoint ends this configuration: recorded anew
                    on_recorded(run)
        training = [run for run in pending if run.result is None]
        for run in training:  # only once every run is prepared: a failure before leaves no tracker started
            run.on_epoch = (on_train and on_train(run)) or run.on_epoch
            for entry in run.history:  # a resumed run's callback sees the whole run
                run.on_epoch(entry)
        if training:
            _train_pending(
                training, dataset, device, uses_cuda_graph(cuda_graph, device), cuda_graph, compile_objective, log
            )
    return runs


def _check_data_of_kept_runs(runs: list[Run], loaded: Callable[[], object]) -> None:
    """A run on a user's npz is kept or cut without training only on the contents it was trained on: each folder
    whose train.json records a data fingerprint and this configuration up to its schedule (a resumed run is
    checked as it is prepared; a run of another configuration is moved aside or refused there)."""
    for run in runs:
        path = run.out_dir / TRAIN_JSON
        if not path.is_file():
            continue
        record = read_train_record(path)
        stored = record.get("config")
        if DATA_FINGERPRINT in record and set(stored) == set(run.config.to_dict()):
            present = all(file.exists() for file in input_files(run.config.dataset))  # gone: nothing to compare,
            if present and not run.config.differences(TrainConfig.from_dict(stored)):  # and a kept run needs no data
                check_same_data(loaded(), run.out_dir)


def _records_without_training(
    runs: list[Run],
    device: torch.device,
    restart_if_changed: bool,
    needs_last_checkpoint: bool,
    on_recorded: Callable[[Run], None],
    log: Callable[[str], None],
) -> None:
    """The record of each run that needs no training: kept as it is (a finished run, or one an earlier call cut:
    _earlier_cut, _kept_record), or cut to its best epoch now (_shorter_run_from_history), which records it anew
    and is passed to `on_recorded` at once."""
    for run in runs:
        record_path, checkpoint_path = run.out_dir / TRAIN_JSON, run.out_dir / CHECKPOINT_NAME
        if record_path.exists() and not checkpoint_path.exists():
            run.result = _earlier_cut(run.out_dir, run.config, restart_if_changed, needs_last_checkpoint, log)
        else:
            run.result = _shorter_run_from_history(
                run.out_dir, run.config, device, run.extra, restart_if_changed, needs_last_checkpoint, log
            )
            if run.result is not None:
                on_recorded(run)
        run.result = run.result or _kept_record(run, log)


def _kept_record(run: Run, log: Callable[[str], None]) -> dict | None:
    """The run's train.json where it records the end of this very configuration (complete, stopped early or
    diverged): such a run is not trained again, and its record, with the facts of the job that trained it,
    is left as it is (a packed job reruns for an added seed; its finished seeds must not change)."""
    path = run.out_dir / TRAIN_JSON
    if not path.is_file():
        return None
    record = read_train_record(path)
    if record.get("status") not in FINISHED or not run.config.matches(record["config"]):
        return None
    if why := _not_the_records_weights(run.out_dir, record):
        log(f"{run.out_dir}: train.json records a finished run of this configuration, but {why}; not kept")
        return None
    log(f"{run.out_dir} is finished ({record['status']}, {record.get('epochs_completed')} epochs); nothing to do")
    if record["status"] == "diverged":
        run.failure = TrainingDiverged(
            record.get("epochs_completed", 0), 0, math.nan, f"{record.get('error', 'diverged')} (recorded earlier)"
        )
    return record


def _not_the_records_weights(out_dir: Path, record: dict) -> str:
    """Why a finished run's checkpoints are not those its train.json records ('' where they are): its best.pt must
    hold its best epoch, and its checkpoint.pt (a cut run has none of its end) its last, trained as its
    configuration trains them. A job of an edited configuration that resumed the run and was killed after
    saving one but before train.json leaves another run's weights there, which its evaluation would read (a
    diverged run's reads none)."""
    if record["status"] == "diverged":
        return ""
    config = TrainConfig.from_dict(record["config"])
    expected = {BEST_NAME: record.get("best_epoch")}
    if record.get("truncated_from") is None:
        expected[CHECKPOINT_NAME] = record.get("epochs_completed")
    for name, epoch in expected.items():
        if epoch is None or not (out_dir / name).is_file():
            continue  # nothing to evaluate there: the evaluation says so
        state = load_checkpoint(out_dir / name)
        differences = config.differences(TrainConfig.from_dict(state["config"]))
        if state["epoch"] != epoch or differences:
            other = f" of other settings ({', '.join(differences)})" if differences else ""
            return f"its {name} holds epoch {state['epoch']}{other}, not its epoch {epoch}"
    return ""


def _prepare(
    run: Run,
    dataset,
    device: torch.device,
    pack_size: int,
    restart_if_changed: bool,
    compile_objective: bool,
    log: Callable[[str], None],
) -> None:
    """The run's model with its seed's initial weights (refused where a pack of `pack_size` would not fit the
    device), or the state of its checkpoint; a run with nothing left to train gets its record."""
    torch.manual_seed(run.config.seed)  # the initial weights
    run.model = build_model(run.config, dataset, device, members=pack_size).to(device)
    run.extra |= {"compiled": compile_objective, **run.model.facts()}
    if dataset.fingerprint is not None:
        run.extra[DATA_FINGERPRINT] = dataset.fingerprint
    state = _resume_state(run.out_dir, run.config, restart_if_changed, log)
    if state is None:
        return
    check_same_data(dataset, run.out_dir)
    path = run.out_dir / CHECKPOINT_NAME
    load_weights(run.model, state["model"], path)
    load_weights(build_optimizer(run.model, run.config), state["optimizer"], path)  # it fits: one clear error if not
    run.optimizer_state, run.history = state["optimizer"], state["history"]
    run.wall_time, run.epoch, run.extra["cuda_graph"] = state["wall_time_s"], state["epoch"], state.get("cuda_graph")
    log(f"resuming {run.out_dir} after epoch {run.epoch}/{run.config.epochs}")
    patience = run.config.patience
    if stalled(run.history, patience):
        log(f"{run.out_dir} stopped early (validation NLL stalled for {patience} evaluations); nothing to do")
        run.stop("stalled", device)
    elif run.epoch >= run.config.epochs:
        log(f"{run.out_dir} already holds all {run.config.epochs} epochs; nothing to do")
        run.stop("complete", device)


def _train_pending(
    runs: list[Run],
    dataset,
    device: torch.device,
    capturable: bool,
    cuda_graph: str,
    compile_objective: bool,
    log: Callable[[str], None],
) -> None:
    """Runs resumed after the same epoch train as one pack; runs behind the others train until they catch up
    (a job killed between its seeds' checkpoints leaves them one checkpoint apart), then with them."""
    if not runs:
        return
    if dataset.note:
        log(dataset.note)
    data = dataset.split("train").to(device)  # the whole set stays on the device
    validation_x = validation_batch(dataset, device, log)
    while pending := [run for run in runs if run.result is None]:
        behind = min(run.epoch for run in pending)
        ahead = [run.epoch for run in pending if run.epoch > behind]
        _train_pack(
            [run for run in pending if run.epoch == behind],
            dataset,
            data,
            validation_x,
            device,
            capturable,
            cuda_graph,
            compile_objective,
            log,
            until=min(ahead, default=None),
        )


def _train_pack(
    runs: list[Run],
    dataset,
    data: torch.Tensor,
    validation_x: torch.Tensor,
    device: torch.device,
    capturable: bool,
    cuda_graph: str,
    compile_objective: bool,
    log: Callable[[str], None],
    until: int | None = None,
) -> None:
    """Train `runs` (resumed after the same epoch) as one model until one of them stops or epoch `until`; the
    weights and Adam state are then copied out, to go on in another pack."""
    config, members = runs[0].config, len(runs)
    model, optimizer = _packed_model_and_optimizer(runs, capturable, compile_objective)
    seeds = ", ".join(str(run.config.seed) for run in runs)
    log(
        f"training {config.model} on {config.dataset} (D={dataset.dim}, d={config.latent_dim}, "
        f"{sum(p.numel() for p in runs[0].model.parameters())} parameters) on {device}"
        + (f", seeds {seeds} packed into one model" if members > 1 else "")
    )
    generators = [torch.Generator(device=device) for _ in runs]  # reseeded each epoch; a CUDA graph reads them
    batch = model_batch(model, data, dataset.discrete_levels, members)
    shapes = [(size,) if members == 1 else (members, size) for size in batch_sizes(data.shape[0], config.batch_size)]
    step, graphed = choose_step(model, optimizer, batch, generators, shapes, cuda_graph, log)
    for run in runs:
        run.extra["cuda_graph"] = graphed
    model.train()
    for epoch in range(runs[0].epoch + 1, min(until or config.epochs, config.epochs) + 1):
        started = time.perf_counter()
        for run, generator in zip(runs, generators):
            generator.manual_seed(epoch_seed(run.config.seed, epoch))
        step_losses = train_epoch(step, data.shape[0], config.batch_size, generators).cpu()
        seconds = time.perf_counter() - started
        for member, run in enumerate(runs):
            _end_epoch(run, Member(model, optimizer, member), step_losses, epoch, seconds, validation_x, device, log)
        if any(run.result is not None for run in runs):
            break
    for member, run in enumerate(runs):
        Member(model, optimizer, member).copy_out(run)


def _packed_model_and_optimizer(runs: list[Run], capturable: bool, compile_objective: bool):
    """The runs' models packed into one (a run alone: its own) and one optimiser holding their Adam states."""
    model = runs[0].model if len(runs) == 1 else pack_models([run.model for run in runs])
    optimizer = build_optimizer(model, runs[0].config, capturable)
    states = [run.optimizer_state for run in runs]
    if states[0] is not None:
        optimizer.load_state_dict(states[0] if len(runs) == 1 else packed_optimizer_state(states))
    set_capturable(optimizer, capturable)
    if compile_objective:
        model.compile_objective()
    return model, optimizer


@dataclass
class Member:
    """Member `index` of a (packed) model and its optimiser; a solo model is a pack of one."""

    model: Model
    optimizer: torch.optim.Optimizer
    index: int

    def copy_out(self, run: Run) -> None:
        """The member's weights into run.model and its Adam state into run.optimizer_state."""
        if self.model is run.model:
            run.optimizer_state = self.optimizer.state_dict()
            return
        run.model.load_state_dict(member_state(self.model, self.index))
        run.optimizer_state = member_optimizer_state(self.optimizer, self.index)

    def sigma(self) -> float:
        return float(torch.exp(self.model.log_sigma.detach().reshape(-1)[self.index]))

    @property
    def size(self) -> int:
        """How many runs the pack trains (1: alone)."""
        return self.model.members


def _end_epoch(
    run: Run,
    member: Member,
    step_losses: torch.Tensor,
    epoch: int,
    seconds: float,
    validation_x: torch.Tensor,
    device: torch.device,
    log: Callable[[str], None],
) -> None:
    """A member's bookkeeping after an epoch: history, validation, best checkpoint, patience, checkpoints."""
    config = run.config
    prefix = "" if member.model is run.model else f"seed {config.seed}: "
    try:
        loss = member_loss(step_losses, member.index, epoch)
    except TrainingDiverged as error:
        run.history.append({"epoch": epoch, "loss": error.value, "sigma": None, "time_s": None})
        return _diverged(run, error, device, log, prefix)
    run.wall_time += seconds
    run.epoch = epoch
    entry = {"epoch": epoch, "loss": loss, "sigma": member.sigma(), "time_s": seconds, "pack_size": member.size}
    run.history.append(entry)
    line = (
        f"{prefix}epoch {epoch:>5}/{config.epochs}  loss {loss:12.4f}  sigma {entry['sigma']:.4f}  time {seconds:6.2f}s"
    )
    status = "complete" if epoch == config.epochs else "running"
    if validates_after(epoch, config):
        member.copy_out(run)
        try:
            status, line = _validate(run, entry, status, line, validation_x)
        except TrainingDiverged as error:
            return _diverged(run, error, device, log, prefix)
    run.on_epoch(entry)
    log(line)
    if status != "running" or epoch % config.checkpoint_every == 0:
        member.copy_out(run)
        _save_checkpoint(run, epoch, status)
        record = run.record(status, device)
        if status != "running":  # a run that stops is always checkpointed here
            run.result = record


def _save_checkpoint(run: Run, epoch: int, status: str) -> None:
    """checkpoint.pt: everything a resumed run needs to go on as if never stopped."""
    save_checkpoint(
        run.out_dir / CHECKPOINT_NAME,
        {
            "config": run.config.to_dict(),
            "epoch": epoch,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer_state,
            "history": run.history,
            "wall_time_s": run.wall_time,
            "cuda_graph": run.extra["cuda_graph"],
        },
    )


def _validate(run: Run, entry: dict, status: str, line: str, validation_x: torch.Tensor) -> tuple[str, str]:
    """Validation of the run's weights into its history entry; the best checkpoint, and the patience rule.
    Returns the run's status and progress line; a validation NLL that is not finite, or that FIF/FIVE's posterior
    cannot give, raises TrainingDiverged."""
    config, epoch = run.config, entry["epoch"]
    started = time.perf_counter()
    try:
        entry |= validate(run.model, validation_x)
    except torch.linalg.LinAlgError as error:  # FIF/FIVE: no likelihood bound, as a non-finite NLL gives none
        raise TrainingDiverged(epoch, 0, math.nan, f"no validation NLL at epoch {epoch}: {no_cholesky_factor(error)}")
    entry["validation_time_s"] = time.perf_counter() - started
    line += f"  val NLL {entry['val_nll']:10.3f}  val ELBO {entry['val_elbo']:10.3f}"
    if not math.isfinite(entry["val_nll"]):
        raise TrainingDiverged(
            epoch, 0, entry["val_nll"], f"non-finite validation NLL ({entry['val_nll']}) at epoch {epoch}"
        )
    if best_epoch(run.history)[0] == epoch:
        save_checkpoint(
            run.out_dir / BEST_NAME,
            {"config": config.to_dict(), "epoch": epoch, "model": run.model.state_dict(), "val_nll": entry["val_nll"]},
        )
        return status, line + "  (best)"
    if stalled(run.history, config.patience):
        return "stalled", line + f"  (no better validation NLL in {config.patience} evaluations: stopping)"
    return status, line


def _diverged(run: Run, error: TrainingDiverged, device: torch.device, log: Callable[[str], None], prefix: str) -> None:
    """A non-finite loss or validation NLL, or a posterior validation cannot factor: recorded in train.json; the
    message says what of the run is kept."""
    kept = (
        f"its last good checkpoint ({CHECKPOINT_NAME}) was kept"
        if (run.out_dir / CHECKPOINT_NAME).is_file()
        else "it had saved no checkpoint yet"
    )
    run.failure = TrainingDiverged(error.epoch, error.step, error.value, f"{error}; {kept}")
    log(f"{prefix}{run.failure}")
    run.stop("diverged", device, error=str(error))


def payload_of(state: dict, config: TrainConfig, device: torch.device, extra: dict | None, status: str) -> dict:
    """The train.json record: config, per-epoch history (with validation entries), wall time, device."""
    history = state["history"]
    best, best_value = best_epoch(history)
    return {
        "status": status,
        "config": config.to_dict(),
        "epochs_completed": len(history),
        "history": history,
        "best_epoch": best,
        "best_val_nll": best_value if best is not None else None,
        "wall_time_s": state["wall_time_s"],
        "device": str(device),
        "torch_version": torch.__version__,
        "five_version": __version__,
        "updated_at": time.time(),
        # the largest pack it trained in (its time_s are that pack's): 1 alone; per epoch in the history
        "pack_size": max((entry.get("pack_size") or 1 for entry in history), default=1),
        **(extra or {}),
    }
