"""Which process writes the run folder: rank 0 as torchrun, Lightning's launcher or SLURM
say, before the Trainer knows."""

from __future__ import annotations

import pytest

from bloodcell.train.devices import is_rank_zero, local_device

RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "SLURM_LOCALID")


@pytest.mark.parametrize(
    ("env", "zero"),
    [
        ({}, True),
        ({"RANK": "0", "LOCAL_RANK": "1"}, True),
        ({"RANK": "3"}, False),
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
        ({"NODE_RANK": "0"}, True),
        ({"LOCAL_RANK": "0", "GROUP_RANK": "2"}, False),
        ({"SLURM_PROCID": "1"}, False),
    ],
)
def test_rank_zero_from_the_launchers_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], zero: bool
) -> None:
    for key in RANK_VARS:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert is_rank_zero() is zero


def test_local_device_is_this_processes_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in RANK_VARS:
        monkeypatch.delenv(key, raising=False)
    assert local_device("cuda") == "cuda:0"
    monkeypatch.setenv("SLURM_LOCALID", "2")
    assert local_device("cuda") == "cuda:2"
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (local_device("cuda"), local_device("cpu")) == ("cuda:1", "cpu")
