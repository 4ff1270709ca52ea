"""`topup serve` tunes the garbage collector of its processes (its pauses were the p99 tail)."""

from __future__ import annotations

import gc

from topup.entrypoints.api.app import tune_garbage_collector


def test_the_server_freezes_start_up_objects_and_collects_the_young_generation_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector(12_345)
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
