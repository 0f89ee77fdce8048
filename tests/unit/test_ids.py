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


def test_a_batch_of_ids_is_the_same_layout_sorted(monkeypatch: pytest.MonkeyPatch) -> None:
    """``new_ids`` reads the randomness once for the batch and spells each id exactly as
    ``new_id`` would for the same bits, in ascending order."""
    rng = random.Random(7)
    for n in (1, 2, 3, 1000):
        ms = rng.randrange(2**48)
        rands = [rng.randrange(2**80) for _ in range(n)]
        if n >= 2:
            rands[0], rands[1] = 2**80 - 1, 0
        pool = b"".join(r.to_bytes(10, "big") for r in rands)
        monkeypatch.setattr(ids.os, "urandom", lambda k, pool=pool: pool[:k])
        assert ids.new_ids(n, now_ms=ms) == sorted(reference(ms, r) for r in rands)
