from __future__ import annotations

from tabpy.security.throttle import ADDRESS_FACTOR, USER_KEY_LENGTH, FailureThrottle, Lockout
from tabpy.security.verification_cache import VerificationCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the throttle --------------------------------------------------------------------------------


def test_blocks_after_the_limit_until_the_oldest_failure_ages_out() -> None:
    clock = Clock()
    throttle = FailureThrottle(3, 60, clock=clock)
    for _ in range(2):
        assert throttle.record_failure("10.0.0.1", "alice") is None
        clock.now += 10
    assert throttle.retry_after("10.0.0.1", "alice") is None
    lockout = throttle.record_failure("10.0.0.1", "alice")
    assert lockout == Lockout(3, 60, 40, per_user=True)  # first failure at 1000, now 1020
    assert throttle.retry_after("10.0.0.1", "alice") == 40
    assert throttle.retry_after("10.0.0.2", "alice") is None  # per address
    assert throttle.retry_after("10.0.0.1", "bob") is None  # and per user name
    clock.now = 1060.5
    assert throttle.retry_after("10.0.0.1", "alice") is None


def test_reservations_count_before_the_check_ends() -> None:
    throttle = FailureThrottle(3, 60, clock=Clock())
    running = [throttle.reserve("a", "alice") for _ in range(3)]
    # Three checks are running: a fourth may not start, whatever their outcome will be.
    assert throttle.retry_after("a", "alice") == 1
    running[0].release()  # that one was the right password
    assert throttle.retry_after("a", "alice") is None
    assert running[1].fail() is None
    assert running[2].fail() is None
    last = throttle.reserve("a", "alice")
    assert last.fail() == Lockout(3, 60, 60, per_user=True)  # the third failure locks out
    assert throttle.retry_after("a", "alice") == 60
    last.fail()  # ending a reservation twice changes nothing
    last.release()
    assert throttle.retry_after("a", "alice") == 60


def test_every_address_has_a_ceiling_over_all_user_names() -> None:
    throttle = FailureThrottle(2, 60, clock=Clock())
    names = [f"user{i}" for i in range(ADDRESS_FACTOR)]
    lockouts = [throttle.record_failure("a", name) for name in names for _ in range(2)]
    assert lockouts[1] == Lockout(2, 60, 60, per_user=True)  # each name's second failure
    assert lockouts[-1] == Lockout(2 * ADDRESS_FACTOR, 60, 60, per_user=False)
    assert sum(lockout is not None for lockout in lockouts) == ADDRESS_FACTOR
    assert throttle.retry_after("a", "someone-new") == 60
    assert throttle.retry_after("b", "someone-new") is None


def test_long_user_names_share_a_bounded_key() -> None:
    throttle = FailureThrottle(2, 60, clock=Clock())
    prefix = "x" * USER_KEY_LENGTH
    throttle.record_failure("a", prefix + "1")
    throttle.record_failure("a", prefix + "2")
    assert throttle.retry_after("a", prefix + "3") == 60
    assert all(len(key[1] or "") <= USER_KEY_LENGTH for key in throttle._by_user.buckets)


def test_zero_limit_turns_throttling_off() -> None:
    throttle = FailureThrottle(0)
    for _ in range(100):
        throttle.record_failure("c", "alice")
        throttle.reserve("c", "alice")
    assert throttle.retry_after("c", "alice") is None


def test_memory_is_bounded() -> None:
    throttle = FailureThrottle(5, max_keys=3)
    for client in ("a", "b", "c", "d"):
        for _ in range(10):
            throttle.record_failure(client, "alice")
    assert throttle.retry_after("a", "alice") is None  # forgotten first
    assert throttle.retry_after("d", "alice") is not None
    assert len(throttle._by_user.buckets) == 3 and len(throttle._by_address.buckets) == 3
    assert all(len(bucket.failures) <= 5 for bucket in throttle._by_user.buckets.values())


# --- the verification cache ----------------------------------------------------------------------


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


def test_cache_lifetime_is_extended_by_use() -> None:
    clock = Clock()
    cache = VerificationCache(lifetime=600, clock=clock)
    good = cache.fingerprint("alice", "secret", "hash")
    cache.add("alice", good)
    for _ in range(10):  # 5,000 s of use, every 500 s
        clock.now += 500
        assert cache.contains("alice", good)
    # A wrong password does not keep the entry alive.
    clock.now += 500
    assert not cache.contains("alice", cache.fingerprint("alice", "guess", "hash"))
    clock.now += 100
    assert not cache.contains("alice", good)


def test_cache_lifetime_zero_caches_nothing() -> None:
    cache = VerificationCache(lifetime=0)
    good = cache.fingerprint("alice", "secret", "hash")
    cache.add("alice", good)
    assert not cache.contains("alice", good) and len(cache) == 0


def test_cache_keeps_no_password_and_is_bounded() -> None:
    cache = VerificationCache(max_entries=2)
    for name in ("a", "b", "c"):
        cache.add(name, cache.fingerprint(name, "secret", "h"))
    assert len(cache) == 2
    assert not cache.contains("a", cache.fingerprint("a", "secret", "h"))
    assert b"secret" not in repr(cache._entries).encode()
    # Keys differ per process, so fingerprints cannot be precomputed elsewhere.
    assert VerificationCache().fingerprint("a", "s", "h") != cache.fingerprint("a", "s", "h")
