"""The training loop (spec §4–5): Adam, the whole data set on the device, per-epoch progress lines,
atomic checkpoints every N epochs and exact resume.

Determinism: all randomness of epoch e (shuffle, dequantisation, ε/u/probe draws) comes from a generator
seeded with (seed, e), so a run resumed from the checkpoint after epoch e draws exactly what an
uninterrupted run draws, without saving RNG state.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from five import __version__
from five.checkpoint import (BEST_NAME, CHECKPOINT_NAME, TRAIN_JSON, load_checkpoint, load_weights, move_aside,
                             read_json, remove_stale_temporaries, run_lock, save_checkpoint, write_json)
from five.config import TrainConfig
from five.data import load_dataset
from five.errors import ConfigError, TrainingDiverged
from five.models import Model, build_model
from five.steps import Step, check_cuda_graph_mode, choose_step, set_capturable, solo_batch, uses_cuda_graph
from five.validation import best_epoch, default_eval_every, evaluations_since_best, validate, validation_batch


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch `epoch`'s random stream (shuffle, dequantisation, ε/u/probe draws)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(epoch_seed(seed, epoch))


def batch_sizes(examples: int, batch_size: int) -> list[int]:
    """The distinct batch sizes of an epoch: full batches, and the shorter last one where there is one."""
    return sorted({min(batch_size, examples), examples % batch_size} - {0}, reverse=True)


def train_epoch(step: Step, examples: int, batch_size: int, generator: torch.Generator, epoch: int) -> float:
    """One pass over the `examples` training examples (on the generator's device). Returns the mean loss.

    Step losses stay on the device and are checked once per epoch, so the step has no host sync; a
    non-finite loss is still reported with the exact epoch and step where it first appeared.
    """
    order = torch.randperm(examples, generator=generator, device=generator.device)
    batches = order.split(batch_size)
    step_losses = torch.empty(len(batches), device=generator.device)
    for index, indices in enumerate(batches):
        step_losses[index] = step(indices)[0]
    finite = torch.isfinite(step_losses)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0])
        raise TrainingDiverged(epoch, first + 1, float(step_losses[first]))
    return float(step_losses.mean())


def build_optimizer(model: Model, config: TrainConfig, capturable: bool = False) -> torch.optim.Adam:
    """Adam over all parameters; ρ = log σ, where learned, in its own group at config.log_sigma_lr.
    `capturable` (for a CUDA graph) keeps its step counts on the device and fuses its update into one kernel."""
    log_sigma = [model.log_sigma] if isinstance(model.log_sigma, torch.nn.Parameter) else []
    weights = [p for p in model.parameters() if not any(p is q for q in log_sigma)]
    groups = [{"params": weights}] + ([{"params": log_sigma, "lr": config.log_sigma_lr}] if log_sigma else [])
    return torch.optim.Adam(groups, lr=config.lr, capturable=capturable, fused=capturable)


def _resume_state(out_dir: Path, config: TrainConfig, restart_if_changed: bool,
                  log: Callable[[str], None]) -> dict | None:
    """The checkpoint to resume from, if `out_dir` holds one of this configuration.

    More epochs than the checkpoint's is a continuation (epoch-seeded randomness makes it equal to a longer
    run); stopping rules (patience, eval_every, checkpoint_every) never restart a run, since the weights do
    not depend on them. Any other change, or fewer epochs than already trained that _shorter_run_from_history
    could not serve, is another run: an error, or with `restart_if_changed` (what the workflow uses after a
    config edit) the old run's files are moved to `out_dir/.superseded/<time>/`, never deleted.
    """
    path = out_dir / CHECKPOINT_NAME
    stale_files = [stale for name in (CHECKPOINT_NAME, BEST_NAME, TRAIN_JSON)
                   for stale in remove_stale_temporaries(out_dir / name)]
    for stale in stale_files:
        log(f"removed {stale.name}, left by a job killed while writing")
    if not path.exists():
        return None
    state = load_checkpoint(path)
    saved = TrainConfig.from_dict(state["config"])
    changes = [f"{k}: {getattr(saved, k)!r} → {getattr(config, k)!r}" for k in saved.differences(config)]
    changes += [f"{k}: not in the checkpoint (an older version of five) → {value!r}"
                for k, value in config.to_dict().items() if k not in state["config"] and value is not None]
    if state["epoch"] > config.epochs:
        changes.append(f"epochs: {state['epoch']} already trained → {config.epochs} (the best epoch lies beyond "
                       "them or validation ran on another schedule, so the shorter run is retrained)")
    if not changes:
        return state
    if not restart_if_changed:
        raise ConfigError(f"{out_dir} holds a run with another configuration ({', '.join(changes)}); "
                          "use a new --out or --restart-if-changed")
    target = move_aside(out_dir)
    log(f"{out_dir} held a run with another configuration ({', '.join(changes)}); moved its files to {target} "
        "and starting afresh")
    return None


def resolved_eval_every(config: TrainConfig) -> int:
    return config.eval_every or default_eval_every(config.epochs)


def _shorter_run_from_history(out_dir: Path, config: TrainConfig, device: torch.device, extra: dict | None,
                              restart_if_changed: bool, log: Callable[[str], None]) -> dict | None:
    """Fewer epochs than already trained, nothing else changed: when the best epoch so far lies within the
    shorter run and validation ran on the same schedule, the shorter run's best checkpoint *is* best.pt, so
    keep it, record the history up to the shorter run's end, and move the longer run aside (no retraining).
    Returns that run's train.json payload (also when an earlier call made it), else None."""
    record_path, checkpoint_path, best_path = out_dir / TRAIN_JSON, out_dir / CHECKPOINT_NAME, out_dir / BEST_NAME
    if record_path.exists() and not checkpoint_path.exists():
        record = read_json(record_path)
        if record.get("truncated_from") is not None:
            if record["config"] == config.to_dict():
                log(f"{out_dir} holds this run, cut from a {record['truncated_from']}-epoch one; nothing to do")
                return record
            if restart_if_changed:
                log(f"{out_dir} held a run cut from a longer one; moved its files to {move_aside(out_dir)}")
        return None
    if not (restart_if_changed and checkpoint_path.exists() and best_path.exists()):
        return None
    state, best = load_checkpoint(checkpoint_path), load_checkpoint(best_path)
    saved = TrainConfig.from_dict(state["config"])
    if (state["epoch"] <= config.epochs or best["epoch"] > config.epochs or set(config.to_dict()) - set(state["config"])
            or saved.differences(config, ignore=("epochs", "checkpoint_every"))
            or resolved_eval_every(saved) != resolved_eval_every(config)):
        return None
    history = [entry for entry in state["history"] if entry["epoch"] <= config.epochs]
    target = move_aside(out_dir)
    shutil.copy2(target / BEST_NAME, best_path)
    wall_time = sum(entry["time_s"] or 0 for entry in history)
    payload = payload_of({"history": history, "wall_time_s": wall_time}, config, device, extra, "complete") | {
        "truncated_from": state["epoch"], "superseded": str(target)}
    write_json(record_path, payload)
    log(f"{out_dir}: {config.epochs} epochs asked, {state['epoch']} trained; the best epoch ({best['epoch']}) lies "
        f"within them, so its checkpoint is this run's result (no retraining); the longer run moved to {target} "
        f"(no checkpoint of epoch {config.epochs} exists: evaluate with --model-selection best)")
    return payload


def train(config: TrainConfig, out_dir: Path, device: torch.device, log: Callable[[str], None] = print,
          data_dir: Path | None = None, restart_if_changed: bool = False,
          on_epoch: Callable[[dict], None] | None = None, extra: dict | None = None,
          compile_objective: bool = False, cuda_graph: str = "auto") -> dict:
    """Train (or resume) the run in `out_dir`; returns the train.json payload.

    `compile_objective` runs the objective through torch.compile (faster steps after a warm-up of seconds;
    same math, floating-point results may differ in the last bits). `cuda_graph` (auto, on, off) captures the
    training step as a CUDA graph (five.steps; auto: on CUDA, eager where the capture fails; the weights equal
    the eager run's within float32 round-off). `on_epoch` receives each history entry
    (replayed from the checkpoint on resume, so a tracker sees the whole run); `extra` is merged into
    train.json (e.g. the GPU and scheduler job that ran it).
    """
    out_dir = Path(out_dir)
    check_cuda_graph_mode(cuda_graph, device)
    with run_lock(out_dir):
        return _train_locked(config, out_dir, device, log, data_dir, restart_if_changed, on_epoch, extra,
                             compile_objective, cuda_graph)


def _train_locked(config: TrainConfig, out_dir: Path, device: torch.device, log: Callable[[str], None],
                  data_dir: Path | None, restart_if_changed: bool, on_epoch: Callable[[dict], None] | None,
                  extra: dict | None, compile_objective: bool, cuda_graph: str) -> dict:
    shorter = _shorter_run_from_history(out_dir, config, device, extra, restart_if_changed, log)
    if shorter is not None:
        return shorter
    dataset = load_dataset(config.dataset, data_dir)
    torch.manual_seed(config.seed)  # the initial weights
    model = build_model(config, dataset, device).to(device)
    capturable = uses_cuda_graph(cuda_graph, device)
    optimizer = build_optimizer(model, config, capturable)
    if compile_objective:
        model.compile_objective()
    extra = {**(extra or {}), "compiled": compile_objective, **model.facts()}
    history: list[dict] = []
    wall_time = 0.0
    start_epoch = 0
    on_epoch = on_epoch or (lambda entry: None)
    state = _resume_state(out_dir, config, restart_if_changed, log)
    if state is not None:
        load_weights(model, state["model"], out_dir / CHECKPOINT_NAME)
        load_weights(optimizer, state["optimizer"], out_dir / CHECKPOINT_NAME)
        set_capturable(optimizer, capturable)
        history, wall_time, start_epoch = state["history"], state["wall_time_s"], state["epoch"]
        log(f"resuming {out_dir} after epoch {start_epoch}/{config.epochs}")
        for entry in history:
            on_epoch(entry)
    if state is not None and state.get("stalled") and config.patience is not None \
            and evaluations_since_best(history) >= config.patience:
        log(f"{out_dir} stopped early (validation NLL stalled for {config.patience} evaluations); nothing to do")
        return payload_of(state, config, device, extra, "stalled")
    data = dataset.split("train").to(device)  # the whole set stays on the device
    validation_x = validation_batch(dataset, device, log)
    eval_every = resolved_eval_every(config)
    log(f"training {config.model} on {config.dataset} (D={dataset.dim}, d={config.latent_dim}, "
        f"{sum(p.numel() for p in model.parameters())} parameters) on {device}")
    generator = torch.Generator(device=device)  # reseeded each epoch; a CUDA graph reads its state
    if start_epoch < config.epochs:
        step, extra["cuda_graph"] = choose_step(
            model, optimizer, solo_batch(model, data, dataset.discrete_levels), [generator],
            [(size,) for size in batch_sizes(data.shape[0], config.batch_size)], cuda_graph, log)
    else:  # nothing to train: the record keeps how the run was trained
        extra["cuda_graph"] = state.get("cuda_graph")

    def payload(status: str) -> dict:
        return payload_of({"history": history, "wall_time_s": wall_time}, config, device, extra, status)

    def checkpoint(epoch: int, status: str) -> None:
        save_checkpoint(out_dir / CHECKPOINT_NAME, {
            "config": config.to_dict(), "epoch": epoch, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "history": history, "wall_time_s": wall_time,
            "stalled": status == "stalled", "cuda_graph": extra["cuda_graph"]})
        write_json(out_dir / TRAIN_JSON, payload(status))

    model.train()
    for epoch in range(start_epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        try:
            generator.manual_seed(epoch_seed(config.seed, epoch))
            loss = train_epoch(step, data.shape[0], config.batch_size, generator, epoch)
        except TrainingDiverged as error:
            history.append({"epoch": epoch, "loss": error.value, "sigma": None, "time_s": None})
            write_json(out_dir / TRAIN_JSON, payload("diverged") | {"error": str(error)})
            raise
        seconds = time.perf_counter() - started
        wall_time += seconds
        sigma = float(torch.exp(model.log_sigma.detach()))
        entry = {"epoch": epoch, "loss": loss, "sigma": sigma, "time_s": seconds}
        history.append(entry)
        line = f"epoch {epoch:>5}/{config.epochs}  loss {loss:12.4f}  sigma {sigma:.4f}  time {seconds:6.2f}s"
        status = "complete" if epoch == config.epochs else "running"
        if epoch % eval_every == 0 or epoch == config.epochs:
            started = time.perf_counter()
            entry |= validate(model, validation_x)
            entry["validation_time_s"] = time.perf_counter() - started
            line += f"  val NLL {entry['val_nll']:10.3f}  val ELBO {entry['val_elbo']:10.3f}"
            if not math.isfinite(entry["val_nll"]):
                error = f"non-finite validation NLL ({entry['val_nll']}) at epoch {epoch}"
                write_json(out_dir / TRAIN_JSON, payload("diverged") | {"error": error})
                raise TrainingDiverged(epoch, 0, entry["val_nll"], error)
            if best_epoch(history)[0] == epoch:
                save_checkpoint(out_dir / BEST_NAME, {"config": config.to_dict(), "epoch": epoch,
                                                      "model": model.state_dict(), "val_nll": entry["val_nll"]})
                line += "  (best)"
            elif config.patience is not None and evaluations_since_best(history) >= config.patience:
                status = "stalled"
                line += f"  (no better validation NLL in {config.patience} evaluations: stopping)"
        on_epoch(entry)
        log(line)
        if status != "running" or epoch % config.checkpoint_every == 0:
            checkpoint(epoch, status)
        if status == "stalled":
            return payload(status)
    if start_epoch >= config.epochs:
        log(f"{out_dir} already holds all {config.epochs} epochs; nothing to do")
    result = payload("complete")
    write_json(out_dir / TRAIN_JSON, result)
    return result


def payload_of(state: dict, config: TrainConfig, device: torch.device, extra: dict | None, status: str) -> dict:
    """The train.json record: config, per-epoch history (with validation entries), wall time, device."""
    history = state["history"]
    best, best_value = best_epoch(history)
    return {"status": status, "config": config.to_dict(), "epochs_completed": len(history), "history": history,
            "best_epoch": best, "best_val_nll": best_value if best is not None else None,
            "wall_time_s": state["wall_time_s"], "device": str(device), "torch_version": torch.__version__,
            "five_version": __version__, "updated_at": time.time(), **(extra or {})}
