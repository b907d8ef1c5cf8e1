"""Shared trunks: shapes for MNIST/CIFAR-size images, JVP/vmap through the conv net, heads per model."""

import pytest
import torch

from five.base.config import TrainConfig
from five.base.errors import ConfigError
from five.data.datasets import Dataset
from five.model.models import build_model
from five.model.nets import build_trunks
from five.run.device import choose_device


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 16, 16)])
def test_conv_trunks_map_images_to_features_and_back_to_the_same_shape(shape):
    encoder, decoder = build_trunks("conv", shape, latent_dim=5, width=32)
    x = torch.randn(2, *shape)
    assert encoder(x).shape == (2, 32)
    assert decoder(torch.randn(2, 5)).shape == (2, *shape)


def test_conv_net_rejects_images_too_small_and_flat_data():
    with pytest.raises(ConfigError, match="too small .* at least 16×16, as \\(C, H, W\\)\\); the MLP"):
        build_trunks("conv", (1, 15, 16), 4, 16)
    build_trunks("conv", (1, 16, 16), 4, 16)  # the smallest the message names
    with pytest.raises(ConfigError, match="needs \\(C, H, W\\) images"):
        build_trunks("conv", (64,), 4, 16)


def image_dataset(shape=(1, 16, 16), levels=4):
    train = torch.randint(0, levels, (8, *shape), dtype=torch.uint8)
    return Dataset("tiny-images", {"train": train, "test": train}, levels, "conv", 32)


@pytest.mark.parametrize("model", ["vae", "fcvae", "fif", "five"])
def test_every_model_runs_its_loss_and_posterior_through_the_conv_net(model):
    dataset = image_dataset()
    config = TrainConfig(
        model=model,
        dataset="tiny-images",
        latent_dim=3,
        hidden_width=32,
        probes=2 if model in ("fif", "five") else None,
    )
    net = build_model(config, dataset)
    x = torch.rand(4, 1, 16, 16)
    terms = net.loss_terms(x, torch.Generator().manual_seed(0))
    loss = terms["loss"].mean()
    loss.backward()
    assert terms["loss"].shape == (4,) and torch.isfinite(loss)
    assert all(p.grad is not None for p in net.encoder_trunk.parameters())
    posterior = net.posterior(x)
    assert posterior.mean.shape == (4, 3) and posterior.scale_tril.shape == (4, 3, 3)
    assert bool((posterior.scale_tril.diagonal(dim1=-2, dim2=-1) > 0).all())


def test_heads_differ_only_in_width():
    dataset = Dataset("flat", {"train": torch.zeros(4, 10), "test": torch.zeros(4, 10)}, None, "mlp", 16)
    widths = {}
    for model in ("vae", "fcvae", "fif", "five"):
        net = build_model(TrainConfig(model=model, dataset="flat", latent_dim=4), dataset)
        widths[model] = net.head.out_features
        assert sum(p.numel() for p in net.decoder.parameters()) == 4 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    assert widths == {"vae": 8, "fcvae": 8 + 6, "fif": 4, "five": 4}


def test_fcvae_off_diagonal_head_starts_at_zero_and_fif_sigma_is_fixed():
    dataset = Dataset("flat", {"train": torch.zeros(4, 10), "test": torch.zeros(4, 10)}, None, "mlp", 16)
    fcvae = build_model(TrainConfig(model="fcvae", dataset="flat", latent_dim=4), dataset)
    assert torch.count_nonzero(fcvae.head.weight[8:]) == 0 and torch.count_nonzero(fcvae.head.bias[8:]) == 0
    fif = build_model(TrainConfig(model="fif", dataset="flat", latent_dim=4, beta=10.0), dataset)
    assert "log_sigma" not in dict(fif.named_parameters())
    assert float(torch.exp(2 * fif.log_sigma)) == pytest.approx(1 / 20)


def test_device_choice():
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            choose_device("cuda")


def test_the_latent_residual_mlp_adds_its_blocks_to_its_input():
    """§4: the conv nets' latent residual MLP is z + MLP(z): with its last layer at zero it is the identity."""
    from five.model.nets import ResidualMLP

    residual = ResidualMLP(4, hidden=8).double()
    z = torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(residual(z), z + residual.net(z))
    torch.nn.init.zeros_(residual.net[-1].weight)
    torch.nn.init.zeros_(residual.net[-1].bias)
    torch.testing.assert_close(residual(z), z)
