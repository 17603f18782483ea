"""The estimators on small learning tasks: fixed seed, bounded budget, a stated threshold each.

* BinaryNet (binary weights and activations through ``sign_ste``) on scikit-learn's digits.
* Quantisation-aware training through ``round_ste`` against its full-precision twin.
* A discrete per-context choice learned through ``gumbel_softmax`` (hard and relaxed).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pgrad.estimators import gumbel_softmax, round_ste, sign_ste
from pgrad.nn import BinaryLinear, mlp


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    # Tiny models: thread start-up costs more than it saves, and one thread keeps runs repeatable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- BinaryNet on digits


class SignActivation(nn.Module):
    """``sign_ste(x, clip=1)``: BinaryNet's binary activation with the hard-tanh STE."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sign_ste(x, clip=1.0)


def _binary_net(in_features: int, hidden: int, classes: int) -> nn.Sequential:
    # Batch norm after every binary layer, as in BinaryNet: the ±1 weights give pre-activations
    # of scale sqrt(fan_in), and the sign needs them centred to carry information.
    return nn.Sequential(
        BinaryLinear(in_features, hidden),
        nn.BatchNorm1d(hidden),
        SignActivation(),
        BinaryLinear(hidden, hidden),
        nn.BatchNorm1d(hidden),
        SignActivation(),
        BinaryLinear(hidden, classes),
        nn.BatchNorm1d(classes),
    )


def _train_binary_net_on_digits(seed: int, epochs: int = 10) -> tuple[nn.Sequential, float]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.25, random_state=seed, stratify=labels
    )
    # Pixels are 0..16; centre them so the first layer's signs see both polarities.
    x_train = torch.tensor(x_train, dtype=torch.float32) / 8 - 1
    x_test = torch.tensor(x_test, dtype=torch.float32) / 8 - 1
    y_train, y_test = torch.tensor(y_train), torch.tensor(y_test)

    torch.manual_seed(seed)
    net = _binary_net(64, 256, 10)
    binary_layers = [m for m in net if isinstance(m, BinaryLinear)]
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    batches_per_epoch = -(-len(x_train) // 64)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * batches_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        for batch in torch.randperm(len(x_train), generator=generator).split(64):
            loss = F.cross_entropy(net(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            for layer in binary_layers:
                layer.clip_weights_()
    net.eval()
    with torch.no_grad():
        accuracy = (net(x_test).argmax(-1) == y_test).float().mean().item()
    return net, accuracy


def test_binary_net_learns_digits() -> None:
    net, accuracy = _train_binary_net_on_digits(seed=0)
    assert accuracy >= 0.90, f"BinaryNet test accuracy {accuracy:.3f} < 0.90 on digits"
    for layer in (m for m in net if isinstance(m, BinaryLinear)):
        assert layer.weight.abs().max().item() <= 1.0, "latent weights left [-1, 1]"
        assert bool((layer.binary_weight().abs() == 1).all())
    hidden = net[:3](torch.randn(5, 64))
    assert bool((hidden.abs() == 1).all()), "hidden activations are not binary"


# --------------------------------------------------------------------------- quantisation-aware


GRID = 8  # activations quantised to multiples of 1/8: 17 levels on tanh's [-1, 1]


class Quantise(nn.Module):
    """Round to the grid ``k / GRID``; ``mode`` picks the gradient: STE, none (plain), or off."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "ste":
            return round_ste(x * GRID) / GRID
        if self.mode == "plain":
            return torch.round(x * GRID) / GRID
        return x


def _regression_net(mode: str, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(2, 32),
        nn.Tanh(),
        Quantise(mode),
        nn.Linear(32, 32),
        nn.Tanh(),
        Quantise(mode),
        nn.Linear(32, 1),
    )


def _target(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(2 * x[:, :1]) * torch.cos(2 * x[:, 1:])


def _fit(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, steps: int = 1000) -> None:
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        loss = F.mse_loss(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()


def _mse(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return F.mse_loss(net(x), y).item()


def test_quantisation_aware_training_beats_post_training_quantisation() -> None:
    seed = 0
    generator = torch.Generator().manual_seed(seed)
    x_train = torch.rand(512, 2, generator=generator) * 2 - 1
    x_test = torch.rand(1024, 2, generator=generator) * 2 - 1
    y_train, y_test = _target(x_train), _target(x_test)

    full_precision = _regression_net("off", seed)
    _fit(full_precision, x_train, y_train)
    mse_full = _mse(full_precision, x_test, y_test)
    # Post-training quantisation: the full-precision weights, quantised activations.
    for module in full_precision:
        if isinstance(module, Quantise):
            module.mode = "ste"
    mse_post_training = _mse(full_precision, x_test, y_test)

    quantised = _regression_net("ste", seed)
    _fit(quantised, x_train, y_train)
    mse_quantised = _mse(quantised, x_test, y_test)

    no_gradient = _regression_net("plain", seed)
    _fit(no_gradient, x_train, y_train)
    mse_no_gradient = _mse(no_gradient, x_test, y_test)

    # The grid's rounding noise (variance (1/8)^2 / 12 per unit) sets a floor that no training
    # removes: measured with seed 0, full precision 8.7e-5, QAT 1.7e-3 (19x), post-training
    # quantisation 5.1e-3 (58x). QAT must stay within 25x of its twin and 2.5x below quantising
    # the trained twin after the fact; post-training quantisation fails both.
    assert mse_quantised <= 25 * mse_full, (
        f"QAT test MSE {mse_quantised:.2e} > 25 * full-precision {mse_full:.2e}"
    )
    assert 2.5 * mse_quantised <= mse_post_training, (
        f"QAT MSE {mse_quantised:.2e} not 2.5x below post-training quantisation "
        f"{mse_post_training:.2e}"
    )
    # Without the STE, round's zero gradient freezes both hidden layers.
    assert mse_no_gradient >= 10 * mse_quantised, (
        f"plain round MSE {mse_no_gradient:.2e} unexpectedly close to STE {mse_quantised:.2e}"
    )
    hidden = quantised[:3](x_test)
    assert torch.equal(hidden * GRID, torch.round(hidden * GRID)), "activations are off the grid"


# --------------------------------------------------------------------------- Gumbel-softmax choice

ARMS = 5
CONTEXT = 4


def _train_chooser(relaxation: str, seed: int, steps: int = 400) -> tuple[float, float, float]:
    """Learn to pick, per context ``x``, the arm with the smallest value ``(x @ table)_k``.

    The loss is ``choice · values``: a differentiable function of the (one-hot or relaxed)
    choice, so the gradient flows through the relaxation. ``relaxation`` is ``"hard"``
    (straight-through Gumbel-softmax: the forward pass commits to one arm), ``"gumbel"`` (soft
    Gumbel-softmax sample) or ``"softmax"`` (no noise: the loss is then the expected value under
    the policy). Testing is greedy (argmax of the logits) in every case. Returns the test
    accuracy, its mean regret, and the mean regret of a uniformly random choice.
    """
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(CONTEXT, ARMS, generator=generator)
    torch.manual_seed(seed)
    policy = mlp(CONTEXT, [32], ARMS)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    for _ in range(steps):
        contexts = torch.randn(256, CONTEXT, generator=generator)
        logits = policy(contexts)
        if relaxation == "hard":
            choice = gumbel_softmax(logits, tau=1.0, hard=True, generator=generator)
        elif relaxation == "gumbel":
            choice = gumbel_softmax(logits, tau=0.5, generator=generator)
        else:
            choice = logits.softmax(-1)
        loss = (choice * (contexts @ table)).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    contexts = torch.randn(4096, CONTEXT, generator=generator)
    values = contexts @ table
    with torch.no_grad():
        greedy = policy(contexts).argmax(-1)
    best = values.min(-1).values
    accuracy = (greedy == values.argmin(-1)).float().mean().item()
    regret = (values.gather(1, greedy[:, None]).squeeze(1) - best).mean().item()
    random_regret = (values.mean(-1) - best).mean().item()
    return accuracy, regret, random_regret


@pytest.mark.parametrize("relaxation", ["hard", "gumbel", "softmax"])
def test_relaxations_learn_discrete_choice(relaxation: str) -> None:
    accuracy, regret, random_regret = _train_chooser(relaxation, seed=0)
    assert accuracy >= 0.93, f"greedy accuracy {accuracy:.3f} < 0.93"
    assert regret <= 0.02, f"mean regret {regret:.4f} > 0.02 (random choice: {random_regret:.3f})"
