"""The benchmark's reference formulation (per-probe loop, reverse-mode VJP) is the same estimator as five's:
same loss and gradients on the same model, so the speed comparison compares like with like."""

import pytest
import torch

from benchmarks.reference import REFERENCE_OBJECTIVES
from five.base.config import TrainConfig
from five.model.models import build_model
from five.run.timing import synthetic_dataset


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the probes and noise the model draws, too
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("model_name", ["fif", "five"])
@pytest.mark.parametrize("probes", [1, 3])
def test_reference_formulation_has_five_s_loss_and_gradients(model_name, probes, float64):
    dataset = synthetic_dataset((1, 8, 8), "mlp", n=16)
    torch.manual_seed(0)
    model = build_model(
        TrainConfig(model=model_name, dataset="bench", latent_dim=4, probes=probes, hidden_width=16), dataset
    ).double()
    x = dataset.split("train")[:6].double() / 255
    noise = model.draw_noise(x, torch.Generator().manual_seed(1))
    results = []
    for objective in (model.objective, lambda *args: REFERENCE_OBJECTIVES[model_name](model, *args)):
        loss = objective(x, *noise)["loss"].mean()
        results.append((loss, torch.autograd.grad(loss, model.trainable_parameters())))
    (ours, our_gradients), (reference, reference_gradients) = results
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    for a, b in zip(our_gradients, reference_gradients):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_the_vmap_pack_the_benchmark_times_trains_as_the_batched_layers_do(float64):
    """benchmarks.run's packed-vmap section compares two ways of packing one training: three Adam steps of a pack
    of 3 VAEs give each member the same losses and weights either way."""
    import copy

    from benchmarks.run import vmap_pack_step
    from five.model.pack import member_state, pack_models
    from five.run.steps import optimiser_step

    dataset = synthetic_dataset((1, 8, 8), "mlp", n=16)
    config = TrainConfig(model="vae", dataset="bench", latent_dim=3, hidden_width=16)
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(build_model(config, dataset).double())
    packed = pack_models([copy.deepcopy(member) for member in members])
    optimizer = torch.optim.Adam(packed.parameters(), lr=config.lr)
    by_vmap = vmap_pack_step(members, config.lr)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.rand(3, 5, *dataset.example_shape)
        eps = torch.randn(3, 5, 3, generator=generator)
        torch.testing.assert_close(
            optimiser_step(packed, optimizer, x.flatten(0, 1), (eps.flatten(0, 1),)),
            by_vmap(x, [eps]),
            rtol=1e-12,
            atol=0,
        )
    for m in range(3):
        for name, value in member_state(packed, m).items():
            torch.testing.assert_close(by_vmap.params[f"model.{name}"][m].detach(), value, rtol=1e-12, atol=1e-14)


def test_the_claims_null_simulation_runs_and_finds_normal_differences_at_the_stated_rate(capsys):
    """benchmarks/claims_null.py, whose figures config/README.md cites: every case runs, and normal differences
    at the boundary are decided near α (300 tables: at most 6%, over 4 standard errors above 2.5%)."""
    from benchmarks.claims_null import CASES, main, rates

    assert main(["--tables", "20"]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if "seeds:" in line]) == len(CASES)
    name, metric, boundary, seeds, draw = CASES[0]
    counts = rates(metric, boundary, seeds, draw, 300)
    assert name == "normal" and counts["supported"] / 300 <= 0.06 and counts["contradicted"] / 300 <= 0.06, counts
