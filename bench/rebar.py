"""Bias and variance of gradient estimators on the REBAR toy problem.

The problem (Tucker et al., 2017, "REBAR: Low-variance, unbiased gradient estimates for discrete
latent variable models") is

    minimise  E[(b - t)^2],   b ~ Bernoulli(p),   p = sigmoid(theta),   t = 0.45,

whose exact gradient is d/dtheta E = p (1 - p) (1 - 2t): the expectation is
p (1 - t)^2 + (1 - p) t^2, its derivative in p is (1 - t)^2 - t^2 = 1 - 2t, and dp/dtheta is
p (1 - p). With t = 0.45 the two outcomes cost 0.3025 and 0.2025, so the signal (their
difference, 0.1) is small next to the cost level (about 0.25): a hard case for the score function.

The rows:

* ``score function``: REINFORCE (Williams, 1992) through ``pgrad.estimators.score_function``;
* ``SF, b = E[f]``: the same with the constant baseline E[f] (known here; an EMA of the cost
  estimates it in practice). At p = 1/2 both outcomes then give the same estimate, so its
  variance is exactly zero; the column says ``exact``;
* ``leave-one-out k``: k samples per estimate, each baselined by the mean cost of the others;
* ``Gumbel soft τ``: binary concrete (Maddison et al., 2017; Jang et al., 2017): the cost of a
  relaxed b = sigmoid((theta + logistic noise) / τ), via ``pgrad.estimators.gumbel_softmax``;
* ``Gumbel hard τ``: the exact Bernoulli sample in the forward pass (Gumbel-max), the relaxed
  sample's gradient in the backward pass (straight-through Gumbel-softmax);
* ``STE``: b = p + sg[bernoulli(p) - p], the sample forward and the identity back to p.

For each theta the table draws ``--samples`` function evaluations and reports, per estimator:

* ``n``: function evaluations per gradient estimate (k for leave-one-out, else 1); every row
  spends the same total, so leave-one-out has k times fewer estimates;
* ``mean``: the average estimate; ``bias``: mean minus the exact gradient;
* ``bias/SE``: the bias in standard errors of the mean. Within about ±3 the estimator is
  consistent with being unbiased at this sample size; far outside, the bias is real;
* ``variance``: the variance of one estimate; ``var×n`` puts rows with different ``n`` on the
  same footing (the variance of an average of estimates that spends the same evaluations).

What to expect: the score-function rows (plain, with a constant baseline, leave-one-out) are
unbiased, and baselines cut their variance by orders of magnitude because they remove the cost
level that multiplies the noisy score. The relaxed and straight-through rows (Gumbel-softmax soft
and hard, STE) have low variance but are biased: they differentiate a surrogate, not the
expectation. (The STE with b = p + sg[bernoulli(p) - p] has mean gradient 2 (p - t) p (1 - p),
which happens to equal the exact one at p = 1/2 for this quadratic cost, so it is unbiased only
at theta = 0.)

Run: ``python bench/rebar.py [--samples N] [--seed S] [--tau TAU] [--k K]``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pgrad.baselines import leave_one_out as leave_one_out_baseline
from pgrad.estimators import gumbel_softmax, score_function

TARGET = 0.45
THETAS = (-1.0, 0.0, 1.0)

Estimator = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""Maps thetas ``[M]`` (one copy per estimate) to surrogate losses ``[M]`` to differentiate."""


def exact_gradient(theta: float) -> float:
    """d/dtheta E[(b - t)^2] for b ~ Bernoulli(sigmoid(theta))."""
    p = 1.0 / (1.0 + math.exp(-theta))
    return p * (1.0 - p) * (1.0 - 2.0 * TARGET)


def expected_cost(theta: float) -> float:
    p = 1.0 / (1.0 + math.exp(-theta))
    return p * (1.0 - TARGET) ** 2 + (1.0 - p) * TARGET**2


def _cost(b: torch.Tensor) -> torch.Tensor:
    return (b - TARGET) ** 2


def score(baseline: float = 0.0) -> Estimator:
    """REINFORCE (Williams, 1992) through ``score_function``, with a constant baseline."""

    def surrogate(thetas: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        samples = torch.bernoulli(thetas.detach().sigmoid(), generator=generator)
        log_prob = torch.distributions.Bernoulli(logits=thetas).log_prob(samples)
        return score_function(log_prob, _cost(samples), baseline)

    return surrogate


def leave_one_out(k: int) -> Estimator:
    """k samples per estimate; each sample's baseline is the mean cost of the other k - 1."""

    def surrogate(thetas: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        logits = thetas[:, None].expand(-1, k)
        samples = torch.bernoulli(logits.detach().sigmoid(), generator=generator)
        log_prob = torch.distributions.Bernoulli(logits=logits).log_prob(samples)
        costs = _cost(samples)
        # Each row of k samples is one group: its baselines never see their own sample.
        return score_function(log_prob, costs, leave_one_out_baseline(costs, k)).mean(1)

    return surrogate


def gumbel(tau: float, hard: bool) -> Estimator:
    """Binary concrete: a two-class Gumbel-softmax over logits ``(theta, 0)``; b is class 0.

    Soft: b = sigmoid((theta + logistic noise) / tau) in (0, 1), the cost of the relaxed b.
    Hard: b is the exact Bernoulli(p) sample (Gumbel-max), with the soft sample's gradient.
    """

    def surrogate(thetas: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        logits = torch.stack([thetas, torch.zeros_like(thetas)], dim=-1)
        b = gumbel_softmax(logits, tau=tau, hard=hard, generator=generator)[:, 0]
        return _cost(b)

    return surrogate


def straight_through(thetas: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """STE (Bengio et al., 2013): the forward pass uses the sample, the backward pass treats it as p."""
    p = thetas.sigmoid()
    b = p + (torch.bernoulli(p.detach(), generator=generator) - p).detach()
    return _cost(b)


def estimates(estimator: Estimator, theta: float, count: int, seed: int) -> torch.Tensor:
    """``count`` independent gradient estimates ``[count]`` of d/dtheta E at ``theta``."""
    # One copy of theta per estimate, so one backward pass yields every estimate separately.
    thetas = torch.full((count,), theta, dtype=torch.float64, requires_grad=True)
    surrogate = estimator(thetas, torch.Generator().manual_seed(seed))
    (gradients,) = torch.autograd.grad(surrogate.sum(), thetas)
    return gradients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000, help="function evaluations per row")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first row")
    parser.add_argument("--tau", type=float, default=0.5, help="Gumbel-softmax temperature")
    parser.add_argument("--k", type=int, default=4, help="samples per leave-one-out estimate")
    args = parser.parse_args()
    if args.samples < 2 * args.k:
        parser.error(f"--samples must be at least 2 * k = {2 * args.k}, got {args.samples}")
    if args.k < 2:
        parser.error(f"--k must be at least 2, got {args.k}")

    start = time.perf_counter()
    console = Console()
    for theta in THETAS:
        exact = exact_gradient(theta)
        rows: list[tuple[str, int, Estimator]] = [
            ("score function", 1, score()),
            ("SF, b = E[f]", 1, score(baseline=expected_cost(theta))),
            (f"leave-one-out k={args.k}", args.k, leave_one_out(args.k)),
            (f"Gumbel soft τ={args.tau:g}", 1, gumbel(args.tau, hard=False)),
            (f"Gumbel hard τ={args.tau:g}", 1, gumbel(args.tau, hard=True)),
            ("STE", 1, straight_through),
        ]
        p = 1.0 / (1.0 + math.exp(-theta))
        table = Table(
            title=f"θ = {theta:+g}   p = {p:.3f}   exact dE/dθ = {exact:.5f}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        table.add_column("estimator", no_wrap=True)
        for name in ("n", "mean", "bias", "bias/SE", "variance", "var×n"):
            table.add_column(name, justify="right")
        for index, (name, evals, estimator) in enumerate(rows):
            # A distinct seed per row: rows sharing samples would share their sampling error.
            gradients = estimates(estimator, theta, args.samples // evals, args.seed + index)
            mean, variance = gradients.mean().item(), gradients.var().item()
            bias = mean - exact
            standard_error = math.sqrt(variance / len(gradients))
            # A zero-variance estimator (e.g. the E[f] baseline at p = 1/2, where both outcomes
            # give the same estimate) has only rounding error left: bias/SE would be noise.
            if standard_error <= 1e-9 * abs(exact):
                bias_in_se, variance_text, scaled_text = "exact", "0", "0"
            else:
                bias_in_se = f"{bias / standard_error:+.1f}"
                variance_text, scaled_text = f"{variance:.2e}", f"{variance * evals:.2e}"
            table.add_row(
                escape(name),
                str(evals),
                f"{mean:.5f}",
                f"{bias:+.5f}",
                bias_in_se,
                variance_text,
                scaled_text,
            )
        console.print(table)
    console.print(
        f"{args.samples} function evaluations per row, seed {args.seed}, "
        f"{time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
