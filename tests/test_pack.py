"""Packed models (five.model.pack): M seeds trained as one batched model equal M solo runs, in float64, step by step.

Ground truth: the solo runs themselves (same seeds, same generators, same batches). A packed layer that mixed
members, a loss that averaged over members instead of summing, or one member's NaN reaching another would each
break one of these."""

import pytest
import torch

from five.base.config import TrainConfig
from five.data.datasets import Dataset
from five.model.models import build_model
from five.model.pack import member_batches, member_optimizer_state, member_state, pack_models
from five.run.steps import eager_step, optimiser_step, solo_batch
from five.run.train import build_optimizer

EXAMPLES, BATCH, SEEDS = 100, 32, (0, 1, 2)  # 3 full batches and a last one of 4
# every model on discrete (digits-like) and continuous (manifold-like) flat data; the packed convolutions once
# per kind of layer stack (encoder convs, decoder transposed convs) with the cheapest and the richest objective
CASES = [
    (model, probes, data)
    for data in ("digits", "manifold")
    for model, probes in (("vae", None), ("fcvae", None), ("fif", 1), ("fif", 2), ("five", 1), ("five", 2))
]
CASES += [("vae", None, "images"), ("five", 1, "images")]
LEVELS = {"digits": 17, "manifold": None, "images": 17}


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def dataset(kind: str) -> Dataset:
    generator = torch.Generator().manual_seed(5)
    if kind == "manifold":
        points = torch.randn(EXAMPLES, 10, generator=generator, dtype=torch.float64)
        return Dataset("bench", {"train": points}, None, "mlp", 32)
    shape = (64,) if kind == "digits" else (1, 16, 16)
    levels = torch.randint(0, 17, (EXAMPLES, *shape), dtype=torch.uint8, generator=generator)
    return Dataset("bench", {"train": levels}, 17, "mlp" if kind == "digits" else "conv", 32)


def configuration(model: str, probes, kind: str) -> TrainConfig:
    return TrainConfig(
        model=model,
        dataset="bench",
        latent_dim=3,
        probes=probes,
        batch_size=BATCH,
        lr=1e-3,
        architecture="conv" if kind == "images" else "mlp",
        hidden_width=32,
    )


def member(config, data_set, seed):
    torch.manual_seed(seed)
    return build_model(config, data_set)


def orders(seed):
    """A member's epoch: its generator draws the shuffle first, then every batch's noise, as train_epoch does."""
    generator = torch.Generator().manual_seed(1000 + seed)
    return generator, torch.randperm(EXAMPLES, generator=generator).split(BATCH)


def solo_run(config, data_set, seed):
    model = member(config, data_set, seed)
    optimizer = build_optimizer(model, config)
    generator, batches = orders(seed)
    step = eager_step(
        model, optimizer, solo_batch(model, data_set.split("train"), data_set.discrete_levels), [generator]
    )
    losses = torch.stack([step(indices)[0] for indices in batches])
    return model, optimizer, losses


def packed_run(config, data_set, poison=None):
    members = [member(config, data_set, seed) for seed in SEEDS]
    if poison is not None:
        poison(members)
    model = pack_models(members)
    optimizer = build_optimizer(model, config)
    generators, batches = zip(*(orders(seed) for seed in SEEDS))
    data = data_set.split("train")
    step = eager_step(
        model,
        optimizer,
        lambda indices, gens: member_batches(data, data_set.discrete_levels, indices, gens, model),
        list(generators),
    )
    losses = torch.stack([step(torch.stack(indices)) for indices in zip(*batches)])  # (steps, members)
    return model, optimizer, losses


def assert_member_equals_solo(packed, optimizer, losses, solo, index, tolerance=1e-9):
    model, solo_optimizer, solo_losses = solo
    torch.testing.assert_close(losses[:, index], solo_losses, rtol=0, atol=tolerance)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(member_state(packed, index)[name], value, rtol=0, atol=tolerance, msg=name)
    moments = member_optimizer_state(optimizer, index)["state"]
    for key, entry in solo_optimizer.state_dict()["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(moments[key][name], entry[name], rtol=0, atol=tolerance)
        assert float(moments[key]["step"]) == float(entry["step"])


@pytest.mark.parametrize("model, probes, kind", CASES)
def test_a_packed_epoch_equals_each_members_solo_epoch(model, probes, kind):
    config, data_set = configuration(model, probes, kind), dataset(kind)
    packed, optimizer, losses = packed_run(config, data_set)
    for index, seed in enumerate(SEEDS):
        assert_member_equals_solo(packed, optimizer, losses, solo_run(config, data_set, seed), index)


@pytest.mark.parametrize("model, probes, kind", [("five", 2, "digits"), ("fcvae", None, "images")])
def test_each_member_gets_exactly_its_solo_gradient(model, probes, kind):
    """One backward of the packed loss: member m's slice of every gradient is its solo gradient (a mean over
    members would scale it by 1/M, a packed layer that mixed members would mix them)."""
    config, data_set = configuration(model, probes, kind), dataset(kind)
    members = [member(config, data_set, seed) for seed in SEEDS]
    packed = pack_models(members)
    data, indices = data_set.split("train"), torch.arange(len(SEEDS) * BATCH).reshape(len(SEEDS), BATCH)
    generators = [torch.Generator().manual_seed(seed) for seed in SEEDS]
    x, noise = member_batches(data, data_set.discrete_levels, indices, generators, packed)
    optimiser_step(packed, build_optimizer(packed, config), x, noise)  # the gradients stay until the next step
    for index, (solo, rows) in enumerate(zip(members, indices)):
        generator = torch.Generator().manual_seed(SEEDS[index])
        solo_x, solo_noise = solo_batch(solo, data, data_set.discrete_levels)(rows, [generator])
        optimiser_step(solo, build_optimizer(solo, config), solo_x, solo_noise)
        for (name, parameter), solo_parameter in zip(packed.named_parameters(), solo.parameters()):
            torch.testing.assert_close(parameter.grad[index], solo_parameter.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_a_member_that_diverges_alone_leaves_the_others_as_their_solo_runs():
    config, data_set = configuration("five", 1, "digits"), dataset("digits")

    def poison(members):  # member 1's decoder makes non-finite reconstructions from its first step
        with torch.no_grad():
            members[1].decoder[0].weight.fill_(float("inf"))

    packed, optimizer, losses = packed_run(config, data_set, poison)
    assert not torch.isfinite(losses[:, 1]).any()
    for index in (0, 2):
        assert_member_equals_solo(packed, optimizer, losses, solo_run(config, data_set, SEEDS[index]), index)


def test_a_pack_of_one_is_the_solo_model():
    config, data_set = configuration("vae", None, "images"), dataset("images")
    packed = pack_models([member(config, data_set, 0)])
    solo = member(config, data_set, 0)
    x = data_set.split("train")[:5].to(torch.get_default_dtype()) / 17
    torch.testing.assert_close(
        packed.decode(packed.encode(x)[:, :3]), solo.decode(solo.encode(x)[:, :3]), rtol=0, atol=1e-12
    )


def test_members_at_different_adam_steps_are_refused_in_one_line():
    from five.base.errors import FiveError
    from five.model.pack import packed_optimizer_state

    config, data_set = configuration("vae", None, "digits"), dataset("digits")
    states = []
    for seed, steps in ((0, 1), (1, 2)):
        model = member(config, data_set, seed)
        optimizer = build_optimizer(model, config)
        for _ in range(steps):
            for parameter in model.parameters():
                parameter.grad = torch.zeros_like(parameter)
            optimizer.step()
        states.append(optimizer.state_dict())
    with pytest.raises(FiveError, match="different steps"):
        packed_optimizer_state(states)
    assert float(packed_optimizer_state([states[1], states[1]])["state"][0]["step"]) == 2


def test_members_adam_states_on_different_devices_are_stacked_on_one():
    """A seed resumed from its checkpoint brings its Adam moments on the CPU; one that caught up in a pack of its own
    on a GPU brings them there. The meta device stands in for the GPU (torch.stack refuses a mix of devices)."""
    from five.model.pack import packed_optimizer_state

    config, data_set = configuration("vae", None, "digits"), dataset("digits")
    states = []
    for seed in (0, 1):
        model = member(config, data_set, seed)
        optimizer = build_optimizer(model, config)
        for parameter in model.parameters():
            parameter.grad = torch.ones_like(parameter)
        optimizer.step()
        states.append(optimizer.state_dict())
    for entry in states[0]["state"].values():  # the first member's moments elsewhere (its step count stays here)
        entry.update({key: value.to("meta") for key, value in entry.items() if key != "step"})
    stacked = packed_optimizer_state(states)["state"]
    assert {value.device.type for entry in stacked.values() for key, value in entry.items() if key != "step"} == {
        "meta"
    }
    assert all(entry["exp_avg"].shape[0] == 2 for entry in stacked.values())
