"""The training step as a CUDA graph (five.run.steps): it equals the eager step, draws the same random numbers,
resumes exactly, and is refused or skipped in one line where it cannot run.

The CUDA tests run where a GPU is present (benchmarks/gpu/check.sh runs them on the lent GPU machine) and are
skipped with the reason elsewhere; the CPU tests below them run everywhere."""

import json
import subprocess
import sys

import pytest
import torch

from five.base.config import MODELS, TrainConfig, cuda_graph_mode
from five.base.errors import ConfigError
from five.data.datasets import Dataset
from five.model.estimators import orthonormal_columns
from five.model.models import build_model
from five.model.pack import pack_models
from five.run.steps import GraphedStep, eager_step, model_batch
from five.run.train import batch_sizes, build_optimizer, train, train_seeds

CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA device (CUDA graphs); benchmarks/gpu/check.sh runs these on a GPU",
)
EXAMPLES, BATCH, EPOCHS = 200, 32, 2  # 6 full batches and a last one of 8: both graphs of an epoch replay
CASES = [
    (model, probes, architecture)
    for architecture in ("mlp", "conv")
    for model, probes in (("vae", None), ("fcvae", None), ("fif", 1), ("fif", 4), ("five", 1), ("five", 4))
]


def images(architecture: str) -> Dataset:
    levels = torch.randint(0, 256, (EXAMPLES, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return Dataset("bench", {"train": levels}, 256, architecture, 64)


def steps_run(model_name, probes, architecture, graphed: bool, step_class=GraphedStep, pack: int = 1):
    """Per-step losses and the parameters before and after EPOCHS epochs, stepped as train_epoch does (reseeded
    generators, shuffled indices): a CUDA graph or the eager step; with `pack`, that many seeds as one model."""
    dataset = images(architecture)
    config = TrainConfig(
        model=model_name,
        dataset="bench",
        latent_dim=4,
        probes=probes,
        batch_size=BATCH,
        lr=1e-3,
        architecture=architecture,
        hidden_width=64,
    )
    members = []
    for seed in range(pack):
        torch.manual_seed(seed)
        members.append(build_model(config, dataset).to(CUDA))
    model = members[0] if pack == 1 else pack_models(members)
    start = torch.cat([p.detach().flatten() for p in model.parameters()])
    optimizer = build_optimizer(model, config, capturable=graphed)
    data = dataset.split("train").to(CUDA)
    generators = [torch.Generator(device=CUDA) for _ in range(pack)]
    batch = model_batch(model, data, 256, pack)
    shapes = [(size,) if pack == 1 else (pack, size) for size in batch_sizes(EXAMPLES, BATCH)]
    step = (
        step_class(model, optimizer, batch, generators, shapes)
        if graphed
        else eager_step(model, optimizer, batch, generators)
    )
    losses = []
    for epoch in range(EPOCHS):
        for member, generator in enumerate(generators):
            generator.manual_seed(1000 * member + epoch)
        orders = [torch.randperm(EXAMPLES, generator=generator, device=CUDA).split(BATCH) for generator in generators]
        for indices in zip(*orders):
            losses.append(step(indices[0] if pack == 1 else torch.stack(indices)).clone())
    return torch.cat(losses), start, torch.cat([p.detach().flatten() for p in model.parameters()])


def weight_deviation(run, reference) -> float:
    """‖θ − θ_ref‖ / ‖θ_ref − θ_0‖ after the steps: how far apart two runs ended, as a share of how far training
    moved the weights. Adam turns round-off into whole steps where a gradient entry is cancellation-small
    (its first update is lr·sign(g)), so single entries can differ by a few lr; the share stays tiny."""
    _, start, end = reference
    return float((run[2] - end).norm() / (end - start).norm())


def assert_same_run(graph, eager):
    # float32 round-off: the graph runs the same kernels; Adam's bias correction is computed on the device, and
    # cuDNN may pick another (equally valid) convolution algorithm inside a capture
    torch.testing.assert_close(graph[0], eager[0], rtol=1e-4, atol=1e-4)
    deviation = weight_deviation(graph, eager)
    print(f"weights: graph vs eager {deviation:.2e} of the distance trained")
    assert deviation < 1e-3, deviation


@needs_cuda
@pytest.mark.parametrize("model, probes, architecture", CASES)
def test_graph_steps_equal_eager_steps(model, probes, architecture):
    eager = steps_run(model, probes, architecture, graphed=False)
    print(f"weights: eager vs eager {weight_deviation(steps_run(model, probes, architecture, False), eager):.2e}")
    assert_same_run(steps_run(model, probes, architecture, graphed=True), eager)


@needs_cuda
@pytest.mark.parametrize("model, probes, architecture", [("vae", None, "mlp"), ("five", 1, "mlp"), ("fif", 1, "conv")])
def test_a_packed_graph_step_equals_the_packed_eager_step(model, probes, architecture):
    assert_same_run(
        steps_run(model, probes, architecture, graphed=True, pack=3),
        steps_run(model, probes, architecture, graphed=False, pack=3),
    )


class StaleBatch(GraphedStep):
    """A broken graph step: replays without refreshing its index buffer (always the batch it was captured on)."""

    def __call__(self, indices):
        graph, _, loss = self.graphs[tuple(indices.shape)]
        graph.replay()
        return loss


@needs_cuda
def test_a_graph_replayed_with_a_stale_batch_is_told_apart():
    eager = steps_run("five", 1, "mlp", graphed=False)
    with pytest.raises(AssertionError):
        assert_same_run(steps_run("five", 1, "mlp", graphed=True, step_class=StaleBatch), eager)


@needs_cuda
def test_a_graph_replay_draws_what_the_eager_calls_draw():
    generator = torch.Generator(device=CUDA)
    graph = torch.cuda.CUDAGraph()
    graph.register_generator_state(generator)
    warm = torch.randn(1000, device=CUDA, generator=generator)  # noqa: F841 - lazy set-up before the capture
    with torch.cuda.graph(graph):
        drawn = (
            torch.randn(1000, device=CUDA, generator=generator) + torch.rand(37, device=CUDA, generator=generator).sum()
        )
    generator.manual_seed(7)
    replayed = []
    for _ in range(3):
        graph.replay()
        replayed.append(drawn.clone())
    generator.manual_seed(7)
    for value in replayed:
        expected = (
            torch.randn(1000, device=CUDA, generator=generator) + torch.rand(37, device=CUDA, generator=generator).sum()
        )
        assert torch.equal(value, expected)


def digits_config(model, **overrides):
    values = dict(model=model, dataset="digits", latent_dim=4, epochs=3, hidden_width=64, batch_size=128, eval_every=1)
    return TrainConfig(**(values | overrides))


@needs_cuda
@pytest.mark.parametrize("model", MODELS)
def test_graph_and_eager_training_have_the_same_validation_trajectory(model, tmp_path):
    logs: list[str] = []
    graph = train(digits_config(model), tmp_path / "graph", CUDA, log=logs.append, cuda_graph="on")
    eager = train(digits_config(model), tmp_path / "eager", CUDA, log=lambda line: None, cuda_graph="off")
    assert graph["cuda_graph"] is True and eager["cuda_graph"] is False
    assert any(line.startswith("training step: CUDA graph") for line in logs)
    graph_nll = torch.tensor([entry["val_nll"] for entry in graph["history"]])
    eager_nll = torch.tensor([entry["val_nll"] for entry in eager["history"]])
    torch.testing.assert_close(graph_nll, eager_nll, rtol=1e-3, atol=1e-3)


@needs_cuda
@pytest.mark.parametrize("model", ["vae", "five"])
def test_a_resumed_graph_run_equals_an_uninterrupted_one(model, tmp_path):
    train(digits_config(model, epochs=3), tmp_path / "straight", CUDA, log=lambda line: None, cuda_graph="on")
    train(digits_config(model, epochs=2), tmp_path / "resumed", CUDA, log=lambda line: None, cuda_graph="on")
    train(digits_config(model, epochs=3), tmp_path / "resumed", CUDA, log=lambda line: None, cuda_graph="on")
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)["model"]
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["model"]
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=name)


@needs_cuda
@pytest.mark.parametrize("graph", ["on", "off"])
def test_an_added_seed_that_catches_up_then_packs_ends_as_alone(graph, tmp_path):
    """Seeds 1 and 2 trained for 2 epochs; then seeds 0–2 for 3: seed 0 catches up alone (its Adam state on the
    GPU), then joins the others, resumed from their checkpoints (theirs read onto the CPU) in one pack."""
    configs = [digits_config("five", seed=seed, probes=1) for seed in (0, 1, 2)]
    shorter = [TrainConfig(**(config.to_dict() | {"epochs": 2})) for config in configs[1:]]
    quiet = lambda line: None  # noqa: E731
    train_seeds(shorter, [tmp_path / "packed" / f"s{c.seed}" for c in shorter], CUDA, log=quiet, cuda_graph=graph)
    runs = train_seeds(
        configs, [tmp_path / "packed" / f"s{c.seed}" for c in configs], CUDA, log=quiet, cuda_graph=graph
    )
    assert [entry["pack_size"] for entry in runs[0].result["history"]] == [1, 1, 3]
    for config in configs:
        alone = train(config, tmp_path / "solo" / f"s{config.seed}", CUDA, log=quiet, cuda_graph=graph)
        packed = runs[config.seed].result
        torch.testing.assert_close(
            torch.tensor([entry["val_nll"] for entry in packed["history"]]),
            torch.tensor([entry["val_nll"] for entry in alone["history"]]),
            rtol=1e-3,
            atol=1e-3,
        )


# --- everywhere --------------------------------------------------------------------------------------------------
def test_cuda_graph_on_without_cuda_is_one_line_before_any_work(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "five.cli",
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--latent-dim",
            "2",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--cuda-graph",
            "on",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--cuda-graph on needs a CUDA device" in lines[0], result.stderr
    assert not (out / "checkpoint.pt").exists()


def test_auto_trains_eagerly_on_cpu_and_says_so(tmp_path):
    logs: list[str] = []
    result = train(digits_config("vae", epochs=1), tmp_path, torch.device("cpu"), log=logs.append)
    assert "training step: eager (on cpu)" in logs
    assert result["cuda_graph"] is False
    assert json.loads((tmp_path / "train.json").read_text())["cuda_graph"] is False


def test_train_refuses_an_unknown_mode():
    with pytest.raises(ConfigError, match="--cuda-graph must be one of auto, on, off"):
        train(digits_config("vae"), "unused", torch.device("cpu"), cuda_graph="sometimes")


def test_yaml_on_and_off_are_modes():
    assert [cuda_graph_mode(value) for value in (True, False, "auto", "on", "off")] == [
        "on",
        "off",
        "auto",
        "on",
        "off",
    ]


def test_probe_orthonormalisation_is_the_qr_factor_up_to_column_signs():
    columns = torch.randn(8, 5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # (K, B, d)
    q = orthonormal_columns(columns)
    reference = torch.linalg.qr(columns.permute(1, 2, 0)).Q.permute(2, 0, 1)
    signs = torch.sign((q * reference).sum(-1, keepdim=True))
    torch.testing.assert_close(q, signs * reference, rtol=0, atol=1e-12)


def test_probe_orthonormalisation_reaches_round_off_in_float32_at_a_full_budget_of_many_directions():
    # One pass of modified Gram–Schmidt leaves errors of 4e-3 in this set of 256 draws; two classical passes 6e-7.
    columns = torch.randn(64, 256, 64, generator=torch.Generator().manual_seed(0))  # (K, B, d), float32
    q = orthonormal_columns(columns).permute(1, 0, 2)  # (B, K, d)
    gram = q @ q.transpose(1, 2)
    torch.testing.assert_close(gram, torch.eye(64).expand_as(gram), rtol=0, atol=1e-5)
