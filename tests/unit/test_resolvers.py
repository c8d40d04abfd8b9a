"""The simulated clients' DNS caches: the share a cluster gets lags the weights by one TTL,
keep-alive clients lag longer, and nothing moves without an answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sprintops_dev.resolvers import Resolvers

ODD = {"even": 0, "odd": 100}
TEN = {"even": 10, "odd": 90}


def _walk(resolvers: Resolvers, weights: dict[str, int], start: float, end: float) -> float:
    """Advances in quarter-second ticks, as the simulator does; the even share at `end`."""
    t = start
    share = 0.0
    while t <= end + 1e-9:
        share = resolvers.shares(t, weights, ttl=60)["even"]
        t += 0.25
    return share


def test_the_share_moves_over_one_ttl_not_at_once() -> None:
    clients = Resolvers()
    assert clients.shares(0, ODD, ttl=60) == {"even": 0.0, "odd": 1.0}
    assert _walk(clients, TEN, 0.25, 1) < 0.01  # a second after the change: almost nothing
    assert _walk(clients, TEN, 1.25, 30) == pytest.approx(0.05, abs=0.005)
    assert _walk(clients, TEN, 30.25, 60.5) == pytest.approx(0.10, abs=1e-9)


def test_keepalive_clients_follow_only_when_they_reconnect() -> None:
    clients = Resolvers(keepalive_share=0.2, keepalive_seconds=120)
    clients.shares(0, ODD, ttl=60)
    # After one TTL the plain clients all moved, half the keep-alive ones did.
    assert _walk(clients, TEN, 0.25, 60.5) == pytest.approx(0.8 * 0.1 + 0.2 * 0.1 / 2, abs=0.002)
    assert _walk(clients, TEN, 60.75, 121) == pytest.approx(0.1, abs=1e-9)


def test_no_answer_moves_nobody() -> None:
    clients = Resolvers()
    clients.shares(0, TEN, ttl=60)
    assert _walk(clients, {"even": 0, "odd": 0}, 0.25, 200) == pytest.approx(0.1)


def test_a_long_sleep_catches_up_in_one_period() -> None:
    clients = Resolvers()
    clients.shares(0, ODD, ttl=60)
    assert clients.shares(10_000, TEN, ttl=60)["even"] == pytest.approx(0.1)


@given(
    st.lists(
        st.tuples(st.integers(0, 100), st.floats(0.01, 30), st.sampled_from([1.0, 5.0, 60.0])),
        min_size=1,
        max_size=30,
    ),
    st.floats(0, 1),
)
def test_shares_are_a_split_between_the_weights_seen(
    changes: list[tuple[int, float, float]], keepalive: float
) -> None:
    clients = Resolvers(keepalive_share=keepalive, keepalive_seconds=90)
    t, low, high = 0.0, 1.0, 0.0
    for even, wait, ttl in changes:
        weights = {"even": even, "odd": 100 - even}
        low, high = min(low, even / 100), max(high, even / 100)
        shares = clients.shares(t, weights, ttl)
        assert sum(shares.values()) == pytest.approx(1.0)
        assert low - 1e-9 <= shares["even"] <= high + 1e-9
        t += wait
