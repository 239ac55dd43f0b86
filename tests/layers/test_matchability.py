"""MatchabilityGate and gate_rows against hand-computed cases and a brute-force numpy oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from lookalike.core.errors import OptionError, ShapeError
from lookalike.layers.matchability import MatchabilityGate, gate_rows


def _unit(n: int, d: int, seed: int = 0) -> torch.Tensor:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(x, dim=1)


def test_gate_rows_hand_cases_and_cosine_identity():
    x = _unit(50, 8)
    q = torch.rand(50, generator=torch.Generator().manual_seed(1))
    y = gate_rows(x, q)
    assert y.shape == (50, 9)
    torch.testing.assert_close(y.norm(dim=1), torch.ones(50), atol=1e-6, rtol=0)
    ends = gate_rows(x[:2], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(ends[0], torch.cat([x[0], torch.zeros(1)]))
    torch.testing.assert_close(ends[1], torch.tensor([0.0] * 8 + [1.0]))
    qa, qb = float(q[0]), float(q[1])
    expected = np.sqrt(qa * qb) * float(x[0] @ x[1]) + np.sqrt((1 - qa) * (1 - qb))
    assert float(y[0] @ y[1]) == pytest.approx(expected, abs=1e-6)
    # an all-zero row (a flat patch) stays all zeros whatever its gate
    assert not gate_rows(torch.zeros(1, 8), torch.tensor([0.3])).any()
    with pytest.raises(ShapeError):
        gate_rows(x, q[:3])


def test_gate_equals_a_numpy_oracle_and_follows_the_dtype():
    torch.manual_seed(0)
    gate = lookalike.create("layer", "matchability_gate", dim=8, gamma=2.5)
    torch.nn.init.normal_(gate.score.weight)
    torch.nn.init.normal_(gate.score.bias)
    x = _unit(20, 8, seed=3)
    w = gate.score.weight.detach().double().numpy()[0]
    b = float(gate.score.bias.detach())
    xn = x.double().numpy()
    q = (1 / (1 + np.exp(-(xn @ w + b)))) ** 2.5
    want = np.concatenate([np.sqrt(q)[:, None] * xn, np.sqrt(1 - q)[:, None]], 1)
    np.testing.assert_allclose(gate(x).detach().numpy(), want, atol=1e-6)
    np.testing.assert_allclose(gate(x.double()).detach().numpy(), want, atol=1e-12)
    half = gate(x.bfloat16())
    assert half.dtype == torch.bfloat16
    np.testing.assert_allclose(half.float().detach().numpy(), want, atol=2e-2)


def test_an_untrained_gate_keeps_every_nearest_neighbour():
    """Zero head: q is the same for every row, so cosine rankings are unchanged (brute force)."""
    gate = MatchabilityGate(16, gamma=3.0)
    a, b = _unit(30, 16, seed=4), _unit(40, 16, seed=5)
    before = (a @ b.T).argmax(dim=1)
    after = (gate(a) @ gate(b).T).argmax(dim=1)
    assert torch.equal(before, after)


def test_a_low_gate_turns_a_row_into_a_hub():
    """A row with q near 0 outbids weak matches: the nearest neighbour of all, mutual of one."""
    gate = MatchabilityGate(4, gamma=1.0)
    with torch.no_grad():
        gate.score.weight.copy_(torch.tensor([[-20.0, 0.0, 0.0, 0.0]]))  # q(row 0 of b) ~ 0
    b = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    a = torch.nn.functional.normalize(torch.tensor([[0.0, 0.3, 0.0, 1.0], [0.0, 0.0, 0.3, 1.0]]))
    assert (a @ b.T).argmax(dim=1).tolist() == [1, 2]  # plain rows: two weak mutual matches
    ga, gb = gate(a), gate(b)
    nn_ab = (ga @ gb.T).argmax(dim=1)
    assert nn_ab.tolist() == [0, 0]  # cos .5 * .29 + .5 = .64 < sqrt(.5) = .71: the hub wins
    nn_ba = (gb @ ga.T).argmax(dim=1)
    assert sum(int(nn_ba[j]) == i for i, j in enumerate(nn_ab.tolist())) == 1


def test_gate_checks_its_inputs():
    with pytest.raises(OptionError):
        MatchabilityGate(8, gamma=0.0)
    with pytest.raises(OptionError):
        MatchabilityGate(0)
    gate = MatchabilityGate(8)
    with pytest.raises(ShapeError):
        gate(_unit(3, 7))
    with pytest.raises(ShapeError):
        gate(torch.rand(2, 3, 8))
