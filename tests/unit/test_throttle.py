from __future__ import annotations

from tabpy.security.throttle import FailureThrottle
from tabpy.security.verification_cache import VerificationCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_blocks_after_the_limit_until_the_oldest_failure_ages_out() -> None:
    clock = Clock()
    throttle = FailureThrottle(3, 60, clock=clock)
    for _ in range(2):
        throttle.record_failure("10.0.0.1")
        clock.now += 10
    assert throttle.retry_after("10.0.0.1") is None
    throttle.record_failure("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 40  # first failure at 1000, window 60, now 1020
    assert throttle.retry_after("10.0.0.2") is None  # per client
    clock.now = 1060.5
    assert throttle.retry_after("10.0.0.1") is None


def test_zero_limit_turns_throttling_off() -> None:
    throttle = FailureThrottle(0)
    for _ in range(100):
        throttle.record_failure("c")
    assert throttle.retry_after("c") is None


def test_memory_is_bounded() -> None:
    throttle = FailureThrottle(5, max_clients=3)
    for client in ("a", "b", "c", "d"):
        for _ in range(10):
            throttle.record_failure(client)
    assert throttle.retry_after("a") is None  # forgotten first
    assert throttle.retry_after("d") is not None
    assert all(len(failures) <= 5 for failures in throttle._failures.values())


def test_cache_accepts_only_the_exact_verified_credentials() -> None:
    clock = Clock()
    cache = VerificationCache(lifetime=600, clock=clock)
    good = cache.fingerprint("alice", "P@ss:word", "hash-1")
    cache.add("alice", good)
    assert cache.contains("alice", cache.fingerprint("alice", "P@ss:word", "hash-1"))
    assert not cache.contains("alice", cache.fingerprint("alice", "P@ss:wore", "hash-1"))
    # A new stored hash (password changed in the file) invalidates the entry.
    assert not cache.contains("alice", cache.fingerprint("alice", "P@ss:word", "hash-2"))
    assert not cache.contains("bob", good)
    clock.now += 600
    assert not cache.contains("alice", good)
    assert len(cache) == 0


def test_cache_keeps_no_password_and_is_bounded() -> None:
    cache = VerificationCache(max_entries=2)
    for name in ("a", "b", "c"):
        cache.add(name, cache.fingerprint(name, "secret", "h"))
    assert len(cache) == 2
    assert not cache.contains("a", cache.fingerprint("a", "secret", "h"))
    assert b"secret" not in repr(cache._entries).encode()
    # Keys differ per process, so fingerprints cannot be precomputed elsewhere.
    assert VerificationCache().fingerprint("a", "s", "h") != cache.fingerprint("a", "s", "h")
