"""Ids: the fast encoder spells exactly the documented layout."""

from __future__ import annotations

import random

import pytest

from activityfeed.domain import ids

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def reference(ms: int, rand: int) -> str:
    """48 bits of milliseconds then 80 random bits, 26 Crockford base32 digits."""
    value = (ms << 80) | rand
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def test_new_id_is_the_millisecond_then_the_random_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    cases = [(0, 0), (2**48 - 1, 2**80 - 1), (1, 1)]
    cases += [(rng.randrange(2**48), rng.randrange(2**80)) for _ in range(2000)]
    for ms, rand in cases:
        monkeypatch.setattr(ids.secrets, "randbits", lambda _n, r=rand: r)
        assert ids.new_id("p_", now_ms=ms) == "p_" + reference(ms, rand)


def test_new_ids_sort_by_millisecond() -> None:
    made = [ids.new_id(now_ms=ms) for ms in (5, 6, 1_000_000, 2**47)]
    assert made == sorted(made)
    assert all(len(i) == 26 for i in made)
