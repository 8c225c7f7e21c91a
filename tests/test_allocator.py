"""The fast-allocator re-exec: which environment it sets, and that the CLI really re-executes."""

from __future__ import annotations

import subprocess
import sys

from bloodcell.allocator import GLIBC_TUNABLES, current_allocator, fast_env


def test_glibc_tuned_is_the_default() -> None:
    env = fast_env({"PATH": "/bin"})
    assert env is not None
    assert env["GLIBC_TUNABLES"] == GLIBC_TUNABLES
    assert env["BLOODCELL_ALLOCATOR_SET"] == "glibc-tuned"


def test_no_second_reexec_and_system_opt_out() -> None:
    assert fast_env({"BLOODCELL_ALLOCATOR_SET": "glibc-tuned"}) is None
    assert fast_env({"BLOODCELL_ALLOCATOR": "system"}) is None
    assert fast_env({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"}) is None


def test_current_allocator_reads_the_mark_the_reexec_sets() -> None:
    env = fast_env({"BLOODCELL_ALLOCATOR": "glibc-tuned"})
    assert env is not None and current_allocator(env) == "glibc-tuned"
    assert current_allocator({}) == "system"


def test_existing_tunables_are_kept() -> None:
    env = fast_env({"GLIBC_TUNABLES": "glibc.cpu.x86_foo=1"})
    assert env is not None
    assert env["GLIBC_TUNABLES"].startswith("glibc.cpu.x86_foo=1:glibc.malloc")


def test_unknown_choice_is_an_error() -> None:
    try:
        fast_env({}, choice="jemalloc")
    except ValueError as exc:
        assert "jemalloc" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_reexec_sets_the_environment_in_the_child() -> None:
    """A heavy command run as a program sees the tuned allocator in its own environment."""
    code = (
        "import os, sys\n"
        "from bloodcell.allocator import reexec_with_fast_allocator\n"
        "if os.environ.get('BLOODCELL_ALLOCATOR_SET'):\n"
        "    print(os.environ['GLIBC_TUNABLES']); sys.exit(0)\n"
        "reexec_with_fast_allocator(['--version'])\n"
        "print('not re-executed')\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    # The child is `python -m bloodcell.cli --version` with the tuned allocator.
    assert out.stdout.strip().startswith("bloodcell ")


def test_which_commands_reexecute() -> None:
    """Training-like commands always; predict and serve only on the torch engine, where the
    allocator pays; the ONNX start-up path does not pay for a second interpreter."""
    from bloodcell.cli import wants_fast_allocator

    assert wants_fast_allocator(["train", "--data", "d"]) and wants_fast_allocator(["run"])
    assert wants_fast_allocator(["audit", "RUN"])  # torch eager over thousands of images
    assert not wants_fast_allocator(["predict", "RUN", "x.jpg"])
    assert not wants_fast_allocator(["predict", "RUN", "x.jpg", "--engine", "onnx"])
    assert wants_fast_allocator(["predict", "RUN", "x.jpg", "--engine", "torch"])
    assert wants_fast_allocator(["serve", "RUN", "--engine=torch"])
    assert not wants_fast_allocator(["serve", "RUN"]) and not wants_fast_allocator(["--help"])
    assert not wants_fast_allocator(["data", "verify"])
