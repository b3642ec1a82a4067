"""Node lists: Slurm hostlist expressions and PBS node files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from outpost_endpoint.launchers.nodelist import (
    NodeListError,
    block_nodes,
    expand_hostlist,
    read_nodefile,
    this_node,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vm", ["vm"]),
        ("nid[001-003,007],gpu01", ["nid001", "nid002", "nid003", "nid007", "gpu01"]),
        ("fake[1-2]", ["fake1", "fake2"]),
        ("n[8-11]", ["n8", "n9", "n10", "n11"]),
        ("n[08-11]", ["n08", "n09", "n10", "n11"]),
        ("a[1-2]b", ["a1b", "a2b"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
        ("x1000c0s0b0n0,x1000c0s0b1n[0-1]", ["x1000c0s0b0n0", "x1000c0s0b1n0", "x1000c0s0b1n1"]),
        ("", []),
    ],
)
def test_expand_hostlist(text: str, expected: list[str]) -> None:
    assert expand_hostlist(text) == expected


@pytest.mark.parametrize("text", ["nid[1-3", "nid1-3]", "nid[3-1]", "nid[a-b]", "a,,b", "n[[1]]"])
def test_bad_hostlists_are_errors_naming_the_list(text: str) -> None:
    with pytest.raises(NodeListError) as info:
        expand_hostlist(text)
    assert repr(text) in str(info.value)


def test_pbs_nodefile_is_deduplicated_in_order(tmp_path: Path) -> None:
    nodefile = tmp_path / "nodes"
    nodefile.write_text("nid0002\nnid0002\nnid0001 slots=4\n# comment\nnid0003:2\n\n")
    assert read_nodefile(nodefile) == ["nid0002", "nid0001", "nid0003"]


def test_block_nodes_prefers_pbs_then_slurm(tmp_path: Path) -> None:
    nodefile = tmp_path / "nodes"
    nodefile.write_text("a\nb\n")
    assert block_nodes({"PBS_NODEFILE": str(nodefile), "SLURM_JOB_NODELIST": "c"}) == ["a", "b"]
    assert block_nodes({"SLURM_JOB_NODELIST": "gpu[1-2]"}) == ["gpu1", "gpu2"]
    assert len(block_nodes({})) == 1


def test_unreadable_nodefile_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(NodeListError, match="missing"):
        read_nodefile(tmp_path / "missing")


def test_this_node_prefers_slurm_node_name() -> None:
    assert this_node({"SLURMD_NODENAME": "fake2"}) == "fake2"
    assert this_node({}) == os.uname().nodename.split(".")[0]
