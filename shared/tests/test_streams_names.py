"""Stream keys: a partition and its DLQ share a hash tag; an intent always maps to one partition."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pm_shared.streams.names import ALL_STREAMS, dlq_key, parse_key, partition_of, spec, stream_key


def _slot_tag(key: str) -> str:
    return key[key.index("{") + 1 : key.index("}")]


def test_stream_and_dlq_share_a_hash_tag_and_partitions_do_not() -> None:
    assert _slot_tag(stream_key("pm:intents", 0)) == _slot_tag(dlq_key("pm:intents", 0))
    assert _slot_tag(stream_key("pm:intents", 0)) != _slot_tag(stream_key("pm:intents", 1))


def test_parse_key_inverts_both_key_kinds() -> None:
    assert parse_key(stream_key("pm:psp:ipps:jobs", 3)) == ("pm:psp:ipps:jobs", 3)
    assert parse_key(dlq_key("pm:psp:ipps:jobs", 3)) == ("pm:psp:ipps:jobs", 3)
    with pytest.raises(ValueError):
        parse_key("pm:intents")


def test_partition_is_stable_across_processes() -> None:
    code = "from pm_shared.streams.names import partition_of; print(partition_of('intent-42', 16))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == partition_of("intent-42", 16)


def test_partitions_spread_intents() -> None:
    used = {partition_of(f"intent-{i}", 8) for i in range(200)}
    assert used == set(range(8))
    assert {partition_of(f"intent-{i}", 1) for i in range(50)} == {0}


def test_every_stream_has_a_group_and_unknown_names_are_refused() -> None:
    assert all(s.groups for s in ALL_STREAMS)
    assert spec("pm:intents").groups == ("orchestrator",)
    with pytest.raises(ValueError, match="pm:intents"):
        spec("pm:intent")
