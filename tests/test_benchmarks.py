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


def test_the_tf32_emulation_rounds_to_ten_mantissa_bits_to_nearest_even():
    from benchmarks.tf32 import to_tf32

    ulp = 2.0**-10  # TF32's spacing just above 1
    x = torch.tensor([1 + ulp, 1 + ulp / 2, 1 + 3 * ulp / 2, 1 + ulp / 2 + 2.0**-20, -(1 + 3 * ulp / 2), 3.0])
    expected = torch.tensor([1 + ulp, 1.0, 1 + 2 * ulp, 1 + ulp, -(1 + 2 * ulp), 3.0])
    assert torch.equal(to_tf32(x), expected)  # ties to the even neighbour, else to the nearest
    values = torch.randn(10_000, generator=torch.Generator().manual_seed(0))
    rounded = to_tf32(values)
    assert torch.all(rounded.view(torch.int32) & 0x1FFF == 0)
    assert torch.all((rounded - values).abs() <= values.abs() * 2.0**-11)
    assert to_tf32(values.double()).dtype == torch.float64 and torch.equal(to_tf32(values.double()), values.double())


def test_the_tf32_emulation_rounds_the_operands_of_every_convolution_forward_and_backward():
    from benchmarks.tf32 import EmulatedTF32Convolutions, to_tf32

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=generator, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, generator=generator, requires_grad=True)
    grad_out = torch.randn(2, 4, 6, 6, generator=generator)
    with EmulatedTF32Convolutions() as mode:
        y = torch.nn.functional.conv2d(x, weight)
        grad_x, grad_weight = torch.autograd.grad(y, (x, weight), grad_out)
    assert mode.convolutions == 2  # the forward and its backward
    rounded_x, rounded_weight = to_tf32(x.detach()), to_tf32(weight.detach())
    torch.testing.assert_close(y, torch.nn.functional.conv2d(rounded_x, rounded_weight), rtol=0, atol=0)
    expected_x, expected_weight, _ = torch.ops.aten.convolution_backward(
        to_tf32(grad_out),
        rounded_x,
        rounded_weight,
        None,
        [1, 1],
        [0, 0],
        [1, 1],
        False,
        [0, 0],
        1,
        [True, True, False],
    )
    torch.testing.assert_close(grad_x, expected_x, rtol=0, atol=0)
    torch.testing.assert_close(grad_weight, expected_weight, rtol=0, atol=0)
    assert not torch.equal(y, torch.nn.functional.conv2d(x, weight))  # the rounding is seen at all
