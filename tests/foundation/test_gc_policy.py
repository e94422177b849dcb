"""The collector policy: survivors of a full collection are frozen, a thaw reclaims their cycles."""

from __future__ import annotations

import gc
import weakref

import pytest

from server.gc_policy import GC_PAUSE, GcPolicy, collector_policy


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector can free it


@pytest.fixture
def policy():
    policy = GcPolicy(thaw_s=600)
    policy.install()
    yield policy
    policy.uninstall()


def test_install_freezes_what_survived_start_up(policy) -> None:
    assert gc.get_freeze_count() > 1_000
    assert policy._on_gc in gc.callbacks


def test_full_collections_walk_only_what_is_newer(policy) -> None:
    survivor = Node()
    gc.collect()
    assert not any(obj is survivor for obj in gc.get_objects(generation=2))
    newer = Node()
    assert any(obj is newer for obj in gc.get_objects())


def test_frozen_cycles_wait_for_the_thaw_then_are_reclaimed(policy) -> None:
    node = Node()
    gc.collect()  # the node survives this full collection, so it is frozen
    gone = weakref.ref(node)
    del node
    gc.collect()
    assert gone() is not None  # frozen: the collector does not see the dead cycle yet
    policy.thaw()
    assert gone() is None
    assert gc.get_freeze_count() > 0  # the survivors of the thaw's collection are frozen again


def test_pauses_are_measured_per_generation(policy) -> None:
    before = GC_PAUSE.labels("2")._sum.get()
    gc.collect()
    assert GC_PAUSE.labels("2")._sum.get() > before


def test_uninstall_hands_everything_back(policy) -> None:
    policy.uninstall()
    assert gc.get_freeze_count() == 0
    assert policy._on_gc not in gc.callbacks


async def test_zero_leaves_the_collector_alone() -> None:
    callbacks = list(gc.callbacks)
    async with collector_policy(0):
        gc.collect()
        assert gc.get_freeze_count() == 0
        assert gc.callbacks == callbacks


async def test_the_context_installs_and_removes_the_policy() -> None:
    callbacks = len(gc.callbacks)
    async with collector_policy(600):
        assert len(gc.callbacks) == callbacks + 1
        assert gc.get_freeze_count() > 0
    assert len(gc.callbacks) == callbacks
    assert gc.get_freeze_count() == 0
