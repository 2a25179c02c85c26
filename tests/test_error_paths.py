"""One error path for the CLI and the hooks: stable codes and exits, Ctrl-C is 130 without a
traceback, a missing git is told apart from a missing repository, and CATALYTIC_DEBUG=1 shows
the traceback of an internal error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from .helpers import DEFAULT_POLICY, catalytic, wait_blocked_in


def _without_git(tmp_path: Path) -> dict[str, str]:
    """PATH with this interpreter but no git."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(sys.executable, bindir / "python")
    return {**os.environ, "PATH": str(bindir)}


def test_missing_git_is_not_a_missing_repository(make_repo, tmp_path: Path) -> None:
    repo = make_repo({"a.txt": "a"}, policy=DEFAULT_POLICY)
    env = _without_git(tmp_path)
    for args in (["hook", "pre-commit"], ["check", "--staged"]):
        proc = catalytic(*args, cwd=repo, env=env)
        assert proc.returncode == 2, proc.stderr
        assert "GIT_MISSING" in proc.stderr and "Traceback" not in proc.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    proc = catalytic("check", "--staged", "--json", cwd=plain)
    assert proc.returncode == 2 and '"code":"NOT_A_REPOSITORY"' in proc.stdout


def _interrupt(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Start a real process blocked on its stdin, send it SIGINT as a terminal's Ctrl-C would."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "catalytic_hooks", *args],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_blocked_in(proc.pid, "pipe")  # its stdin
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_ctrl_c_in_a_hook_exits_130_without_a_traceback(make_repo) -> None:
    repo = make_repo({"a.txt": "a"}, policy=DEFAULT_POLICY)
    done = _interrupt(["hook", "pre-push", "origin", "/nowhere"], repo)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "catalytic: interrupted"


def _bug_injector(tmp_path: Path) -> dict[str, str]:
    """A sitecustomize that makes the commit check raise an unexpected exception: an internal
    bug cannot be produced on purpose otherwise."""
    d = tmp_path / "inject"
    d.mkdir()
    (d / "sitecustomize.py").write_text(
        "import catalytic_hooks.enforce.checks as c\n"
        "def boom(*a, **k):\n    raise RuntimeError('injected bug')\n"
        "c.check_staged = boom\n"
        "import catalytic_hooks.enforce.hookmain as h\n"
        "h.check_staged = boom\n"
    )
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(d), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }


def test_internal_error_traceback_only_with_debug(make_repo, tmp_path: Path) -> None:
    repo = make_repo({"a.txt": "a"}, policy=DEFAULT_POLICY)
    env = _bug_injector(tmp_path)
    quiet = catalytic("hook", "pre-commit", cwd=repo, env=env)
    assert quiet.returncode == 3
    assert "internal error (a bug in catalytic-hooks): RuntimeError: injected bug" in quiet.stderr
    assert "Traceback" not in quiet.stderr
    loud = catalytic("hook", "pre-commit", cwd=repo, env={**env, "CATALYTIC_DEBUG": "1"})
    assert loud.returncode == 3
    assert "Traceback (most recent call last)" in loud.stderr and "injected bug" in loud.stderr
    cli = catalytic("check", "--staged", cwd=repo, env={**env, "CATALYTIC_DEBUG": "1"})
    assert cli.returncode == 3 and "Traceback (most recent call last)" in cli.stderr


def test_atomic_write_completes_partial_writes(tmp_path: Path, monkeypatch) -> None:
    """os.write may write fewer bytes than asked (a signal, a quota): the file is still whole.
    A short write cannot be provoked on a local disk, so os.write is made to write 3 bytes."""
    from catalytic_hooks.fs import files

    real = os.write
    monkeypatch.setattr(files.os, "write", lambda fd, data: real(fd, bytes(data[:3])))
    data = bytes(range(256)) * 40
    files.atomic_write(tmp_path / "f.bin", data)
    assert (tmp_path / "f.bin").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_write_sliced_writes_whole_in_small_pieces(tmp_path: Path, monkeypatch) -> None:
    """A stream's buffers reach the page cache in writes of at most 16 KiB (the reason is at
    WRITE_SLICE), and short writes are completed. A short write cannot be provoked on a local
    disk, so os.write writes at most 5,000 bytes of every other call."""
    from catalytic_hooks.fs import files

    real, asked = os.write, []

    def short(fd: int, data: memoryview) -> int:
        asked.append(len(data))
        return real(fd, bytes(data[:5000]) if len(asked) % 2 else data)

    monkeypatch.setattr(files.os, "write", short)
    data = os.urandom(3 * 16384 + 7)
    fd = os.open(tmp_path / "f.bin", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        files.write_sliced(fd, memoryview(data))
    finally:
        os.close(fd)
    assert (tmp_path / "f.bin").read_bytes() == data
    # written: 5,000 + 16,384 + 5,000 + 16,384 + 5,000 + 1,391
    assert max(asked) == 16384 and len(asked) == 6
