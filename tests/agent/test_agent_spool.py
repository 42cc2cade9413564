"""The on-disk spool: durable appends, oldest-first order, a size cap that drops the oldest (counted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sightglass.agent.spool import Spool


def test_append_and_drain_in_order(tmp_path: Path) -> None:
    s = Spool(tmp_path, 1 << 20)
    for i in range(5):
        s.append(f"payload-{i}".encode(), "rw", samples=10)
    assert len(s) == 5 and s.pending_samples() == 50
    seen = []
    while s.oldest():
        it = s.oldest()[0]
        seen.append(s.read(it))
        s.remove(it)
    assert seen == [f"payload-{i}".encode() for i in range(5)]
    assert s.size_bytes == 0


def test_size_cap_drops_oldest_and_counts(tmp_path: Path) -> None:
    s = Spool(tmp_path, 64 * 1024)
    for _ in range(10):
        s.append(b"x" * 10_000, "rw", samples=7)
    # 10 x 10 kB into 64 KiB: the oldest 4 are gone, counted as 28 samples
    assert len(s) == 6
    assert s.dropped_files == 4 and s.dropped_samples == 28
    assert s.size_bytes <= 64 * 1024
    assert [i.seq for i in s.oldest(10)] == list(range(5, 11))


def test_payload_larger_than_the_spool_is_dropped_alone(tmp_path: Path) -> None:
    s = Spool(tmp_path, 64 * 1024)
    s.append(b"a", "rw", samples=1)
    assert s.append(b"x" * 70_000, "rw", samples=99) is None
    assert len(s) == 1 and s.dropped_samples == 99


def test_restart_keeps_files_counters_and_order(tmp_path: Path) -> None:
    s = Spool(tmp_path, 64 * 1024)
    for _ in range(8):
        s.append(b"y" * 10_000, "rw", samples=3)
    (tmp_path / "00000000000000000099-5.rw.tmp").write_bytes(b"half a write")  # a crash mid-write
    s2 = Spool(tmp_path, 64 * 1024)
    assert [i.seq for i in s2.oldest(10)] == [i.seq for i in s.oldest(10)]
    assert s2.dropped_samples == s.dropped_samples == 6
    assert not list(tmp_path.glob("*.tmp"))
    item = s2.append(b"z", "cat", samples=1)
    assert item is not None and item.seq == s.oldest(10)[-1].seq + 1


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        Spool(tmp_path, 0)
    with pytest.raises(ValueError, match="kind"):
        Spool(tmp_path, 1 << 20).append(b"x", "exe")


def test_an_unwritable_spool_costs_the_cycle_not_the_agent(tmp_path: Path) -> None:
    from sightglass.agent.collection import Collection
    from sightglass.agent.config import AgentConfig
    from sightglass.agent.runner import Agent, SpoolSink

    class _One:
        name = "one"

        def collect(self, out: Collection) -> None:
            out.add("x", {}, 1.0)

    s = Spool(tmp_path / "spool", 1 << 20)
    agent = Agent(AgentConfig(hostname="n"), [_One()], SpoolSink(s), spool=s)
    agent.step()
    assert len(s) == 1
    real_append = s.append

    def full(payload: bytes, kind: str, samples: int = 0) -> None:
        raise OSError(28, "No space left on device")

    s.append = full  # type: ignore[method-assign]
    try:
        agent.step()
        agent.step()
    finally:
        s.append = real_append  # type: ignore[method-assign]
    assert agent.lost_cycles == 2
    col = agent.step()
    assert len(s) == 2
    lost = [
        v
        for k, v in zip(col.keys, col.values, strict=True)
        if k.metric == "sightglass_agent_lost_cycles_total"
    ]
    assert lost == [2.0]
