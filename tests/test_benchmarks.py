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
