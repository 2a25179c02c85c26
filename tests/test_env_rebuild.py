"""Environments (DESIGN §13): what a run records is the command's interpreter's environment;
`replay --rebuild-env` and `env rebuild` rebuild it exactly, hash-checked, from a wheelhouse, a
primary index and fallbacks; faults have stable codes; the cache is re-checked before reuse.

Real parts only: wheels written in the tests, PEP 503 indexes served over HTTP on 127.0.0.1,
real virtual environments made by uv and by pip, catalytic run in this interpreter while the
command runs the project's venv."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from catalytic_hooks.bundle.model import store_path
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.environment.build import RebuildOptions, rebuild
from catalytic_hooks.environment.cache import cache_root, prune
from catalytic_hooks.provenance.environment import HASH_ONE_LINER, fingerprint

from .helpers import SEED_A, catalytic, git, key_file, signer, write_files
from .wheels import (
    closed_port_url,
    make_venv,
    make_wheel,
    pip_freeze,
    quiet_env,
    serve,
    sha256_file,
    simple_index,
    uv_bin,
)

JOB = """\
import pathlib, tinylib, helper_pkg
out = pathlib.Path("outputs"); out.mkdir(exist_ok=True)
(out / "value.txt").write_text(tinylib.VALUE + str(helper_pkg.X))
"""

POLICY = """\
durable_roots = ["outputs"]
tmp_roots = ["_tmp"]
run_roots = ["_runs"]
lock_files = ["requirements.lock"]
trusted_validators = ".catalytic/allowed_validators"
"""


@dataclass
class Kit:
    base: Path
    lib1: Path
    lib2: Path
    helper: Path
    helper_other: Path  # same name and version, other bytes
    wheelhouse: Path
    lock: str


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    base = tmp_path_factory.mktemp("envkit")
    built = base / "built"
    lib1 = make_wheel(built / "1", "tinylib", "1.0", {"tinylib/__init__.py": 'VALUE = "one"\n'})
    lib2 = make_wheel(built / "2", "tinylib", "2.0", {"tinylib/__init__.py": 'VALUE = "two"\n'})
    helper = make_wheel(built / "h", "Helper.Pkg", "1.0", {"helper_pkg/__init__.py": "X = 1\n"})
    other = make_wheel(
        built / "o",
        "Helper.Pkg",
        "1.0",
        {"helper_pkg/__init__.py": "X = 1\n"},
        extra="rebuilt elsewhere",
    )
    house = base / "wheelhouse"
    house.mkdir()
    for w in (lib1, helper):
        shutil.copyfile(w, house / w.name)
    lock = (
        f"tinylib==1.0 \\\n    --hash={sha256_file(lib1)}\n"
        f"helper-pkg==1.0 \\\n    --hash={sha256_file(helper)}\n"
    )
    return Kit(base, lib1, lib2, helper, other, house, lock)


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture(scope="module")
def recorded(kit: Kit) -> dict[str, Any]:
    """An environment as a run records it: a uv venv holding tinylib 1.0 and helper-pkg 1.0,
    hashes from the declared lock file."""
    venv = make_venv(kit.base / "recorded-venv", [kit.lib1, kit.helper])
    top = kit.base / "recorded-top"
    top.mkdir()
    (top / "requirements.lock").write_text(kit.lock)
    env = {**os.environ, "PATH": f"{venv}{os.pathsep}{os.environ['PATH']}"}
    return fingerprint(top, ("requirements.lock",), 0, env=env, command=["python", "job.py"])


def _project(make_repo: Any, kit: Kit) -> Path:
    repo = make_repo(
        {"job.py": JOB, "requirements.lock": kit.lock, ".gitignore": "_tmp/\n"}, policy=POLICY
    )
    assert (
        catalytic("trust", "add", "ci", f"ed25519:{signer(SEED_A).public_hex}", cwd=repo).returncode
        == 0
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "trust")
    return repo


def _with(venv_bin: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}


# -- recording ----------------------------------------------------------------------------------


def test_the_commands_environment_is_recorded_not_the_tools(
    recorded: dict[str, Any], kit: Kit
) -> None:
    py = recorded["python"]
    assert py["executable"] == str(kit.base / "recorded-venv" / "bin" / "python")
    assert py["found_by"] == "command" and py["venv"] is True
    assert (py["implementation"], py["version"]) == (
        "cpython",
        ".".join(map(str, sys.version_info[:3])),
    )
    # catalytic's own dependencies (cryptography, typer, ...) are not in the command's venv
    assert recorded["distributions"] == ["helper-pkg==1.0", "tinylib==1.0"]
    pkgs = {p["name"]: p for p in recorded["packages"]}
    assert pkgs["tinylib"]["hashes"] == [sha256_file(kit.lib1)]  # from the lock file
    assert pkgs["helper-pkg"]["hashes"] == [sha256_file(kit.helper)]
    assert pkgs["tinylib"]["installer"] == "uv" and pkgs["tinylib"]["wheel_tags"] == [
        "py3-none-any"
    ]
    assert recorded["lock_files"] == {
        "requirements.lock": "sha256:" + __import__("hashlib").sha256(kit.lock.encode()).hexdigest()
    }
    assert recorded["system"]["os"] == "Linux" and recorded["system"]["libc"]


@pytest.mark.slow
def test_catalytic_installed_as_a_tool_records_the_commands_environment(
    make_repo: Any, kit: Kit, tmp_path: Path
) -> None:
    """catalytic in a venv of its own, its script linked into a bin directory on PATH (what
    pipx and `uv tool` do); the user's project venv activated; the command runs `python`. The
    record is the project venv's interpreter and pins, not the tool's."""
    import site
    import sysconfig

    repo = _project(make_repo, kit)
    tool = tmp_path / "tool-venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tool)], check=True, env=quiet_env()
    )
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(tool), "platbase": str(tool)}))
    # the project and its dependencies visible to the tool's interpreter only, as an install
    # with --no-deps next to installed dependencies would make them
    root = Path(__file__).resolve().parent.parent
    purelib.joinpath("catalytic-tool.pth").write_text(
        "".join(f"{d}\n" for d in [str(root), *site.getsitepackages()])
    )
    script = (root / "scripts" / "catalytic").read_text()
    assert script.startswith("#!python\n")  # setuptools rewrites it to the venv's python
    (tool / "bin" / "catalytic").write_text(f"#!{tool}/bin/python\n" + script[len("#!python\n") :])
    (tool / "bin" / "catalytic").chmod(0o755)
    exposed = tmp_path / "local-bin"  # ~/.local/bin: the script only, not the tool's python
    exposed.mkdir()
    (exposed / "catalytic").symlink_to(tool / "bin" / "catalytic")

    project = make_venv(tmp_path / "project-venv", [kit.lib1, kit.helper])
    env = {
        **quiet_env(),
        "PATH": os.pathsep.join([str(exposed), str(project), os.environ["PATH"]]),
        "VIRTUAL_ENV": str(project.parent),
    }
    proc = subprocess.run(
        [
            "catalytic",
            "run",
            "--run-id",
            "t1",
            "--sign",
            str(key_file(tmp_path)),
            "--",
            "python",
            "job.py",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr
    assert (repo / "outputs" / "value.txt").read_text() == "one1"  # ran the project's python
    recorded = json.loads((repo / "_runs/t1/TASK_SPEC.json").read_text())["environment"]
    py = recorded["python"]
    assert py["executable"] == str(project / "python") and py["venv"] is True
    assert py["executable"] != str(tool / "bin" / "python")
    # the project's pins only: none of catalytic's own (typer, cryptography, ...)
    assert recorded["distributions"] == ["helper-pkg==1.0", "tinylib==1.0"]
    assert (
        recorded["environment_hash"]
        == fingerprint(kit.base, (), 0, env=_with(project))["environment_hash"]
    )
    tools_view = fingerprint(
        kit.base,
        (),
        0,
        env={**quiet_env(), "PATH": f"{tool / 'bin'}{os.pathsep}{os.environ['PATH']}"},
    )
    assert "typer" in {p["name"] for p in tools_view["packages"]}  # what the seed recorded


def test_the_documented_one_liner_reproduces_the_environment_hash(
    recorded: dict[str, Any], kit: Kit
) -> None:
    venv = kit.base / "recorded-venv" / "bin"
    out = subprocess.run(
        ["bash", "-c", HASH_ONE_LINER],
        capture_output=True,
        text=True,
        env=_with(venv),
        cwd=kit.base,
        check=True,
    ).stdout
    assert "sha256:" + out.split()[0] == recorded["environment_hash"]
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert HASH_ONE_LINER in readme


@pytest.mark.slow
def test_pip_and_uv_installs_of_one_lock_hash_equal_while_pip_freeze_differs(kit: Kit) -> None:
    """The same wheels installed by pip and by uv from different paths: pip freeze names each
    machine's path (and pip's hash fragment), the canonical environment hash does not."""
    a, b = kit.base / "copy-a", kit.base / "copy-b"
    for d in (a, b):
        d.mkdir()
        for w in (kit.lib1, kit.helper):
            shutil.copyfile(w, d / w.name)
    by_pip = make_venv(kit.base / "by-pip", sorted(a.iterdir()), installer="pip")
    by_uv = make_venv(kit.base / "by-uv", sorted(b.iterdir()), installer="uv")
    fps = [fingerprint(kit.base, (), 0, env=_with(v)) for v in (by_pip, by_uv)]
    assert fps[0]["environment_hash"] == fps[1]["environment_hash"]
    freezes = [pip_freeze(v) for v in (by_pip, by_uv)]
    assert freezes[0] != freezes[1] and b"@ file://" in freezes[0]
    # the seed's value is recorded beside it, as `pip freeze | sha256sum` computes it
    for fp, frozen in zip(fps, freezes, strict=True):
        assert fp["pip_freeze_sha256"] == sha256_of(frozen)
    assert fps[0]["pip_freeze_sha256"] != fps[1]["pip_freeze_sha256"]
    pkgs = {p["name"]: p for p in fps[0]["packages"]}  # pip records the wheel's hash
    assert pkgs["tinylib"]["hashes"] == [sha256_file(kit.lib1)]


def sha256_of(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- the must-show end to end ---------------------------------------------------------------------


@pytest.mark.slow
def test_rebuild_env_replays_exact_after_the_users_environment_changed(
    make_repo: Any, kit: Kit, tmp_path: Path
) -> None:
    repo = _project(make_repo, kit)
    venv = make_venv(tmp_path / "project-venv", [kit.lib1, kit.helper])
    proc = catalytic(
        "run",
        "--run-id",
        "r1",
        "--sign",
        str(key_file(tmp_path)),
        "--",
        "python",
        "job.py",
        cwd=repo,
        env=_with(venv),
    )
    assert proc.returncode == 0, proc.stderr
    assert "untracked path" not in proc.stderr
    run = repo / "_runs" / "r1"
    spec = json.loads((run / "TASK_SPEC.json").read_text())
    env = spec["environment"]
    assert env["python"]["executable"] == str(venv / "python")
    assert env["distributions"] == ["helper-pkg==1.0", "tinylib==1.0"]
    # the declared lock file travels in the bundle, covered by TASK_SPEC (and so signed)
    assert (run / store_path(env["lock_files"]["requirements.lock"])).read_text() == kit.lock
    assert catalytic("verify", str(run), "--json", cwd=repo).returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "run r1")

    # the user's environment moves on
    subprocess.run(
        [
            uv_bin(),
            "pip",
            "install",
            "-q",
            "--no-config",
            "--python",
            str(venv / "python"),
            "--offline",
            str(kit.lib2),
        ],
        check=True,
    )
    proc = catalytic("replay", "_runs/r1", "--json", cwd=repo, env=_with(venv))
    plain = json.loads(proc.stdout)["details"]
    fields = {d["field"] for d in plain["environment"]["differences"]}
    assert {"distribution tinylib", "environment_hash"} <= fields
    assert plain["verdict"] == "drift-verified" and proc.returncode == 1

    proc = catalytic(
        "replay",
        "_runs/r1",
        "--rebuild-env",
        "--offline",
        "--find-links",
        str(kit.wheelhouse),
        "--json",
        cwd=repo,
        env=_with(venv),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads(proc.stdout)["details"]
    assert rep["verdict"] == "exact"
    rebuilt = rep["environment"]["rebuilt"]
    assert rebuilt["environment_hash"] == env["environment_hash"]
    assert rep["environment"]["differences"] == []
    assert [
        (p["name"], p["source"], p["file"], p["sha256"], p["hash_checked"])
        for p in rebuilt["packages"]
    ] == [
        ("helper-pkg", "find-links", kit.helper.name, sha256_file(kit.helper), True),
        ("tinylib", "find-links", kit.lib1.name, sha256_file(kit.lib1), True),
    ]
    assert "| `tinylib` | `1.0` | find-links" in Path(rep["report_md"]).read_text()
    # the second replay reuses the cached environment after re-checking it
    proc = catalytic(
        "replay",
        "_runs/r1",
        "--rebuild-env",
        "--offline",
        "--find-links",
        str(kit.wheelhouse),
        "--json",
        cwd=repo,
        env=_with(venv),
    )
    again = json.loads(proc.stdout)["details"]
    assert again["verdict"] == "exact" and again["environment"]["rebuilt"]["cached"] is True
    assert again["environment"]["rebuilt"]["packages"] == rebuilt["packages"]
    # the nightly validation replays in the rebuilt environment too
    proc = catalytic(
        "validate",
        "--rebuild-env",
        "--offline",
        "--find-links",
        str(kit.wheelhouse),
        "--json",
        cwd=repo,
        env=_with(venv),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["verdict"] for r in json.loads(proc.stdout)["details"]["results"]] == ["exact"]
    # from an archive file too: export its lock, rebuild it (the cached one, re-checked)
    archive = tmp_path / "r1.catalytic.zip"
    assert catalytic("archive", "create", "_runs/r1", "-o", str(archive), cwd=repo).returncode == 0
    proc = catalytic("env", "export", str(archive), cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert f"tinylib==1.0 \\\n    --hash={sha256_file(kit.lib1)}" in proc.stdout
    proc = catalytic(
        "env",
        "export",
        str(archive),
        "--format",
        "pylock",
        "--offline",
        "--find-links",
        str(kit.wheelhouse),
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr
    assert f'path = "{kit.wheelhouse / kit.lib1.name}"' in proc.stdout
    proc = catalytic(
        "env",
        "rebuild",
        str(archive),
        "--offline",
        "--find-links",
        str(kit.wheelhouse),
        "--json",
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    done = json.loads(proc.stdout)["details"]
    assert done["cached"] is True and done["environment_hash"] == env["environment_hash"]


# -- sources ----------------------------------------------------------------------------------


def _opts(**kw: Any) -> RebuildOptions:
    return RebuildOptions(**{"cache": False, **kw})


def _code(exc: pytest.ExceptionInfo[CatalyticError]) -> ErrorCode:
    return exc.value.code


def test_an_offline_rebuild_from_a_wheelhouse_checks_every_hash(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path
) -> None:
    """The default run's representative of `replay --rebuild-env --offline` (the end-to-end
    replay is a slow test): exactly the recorded pins, each from the wheelhouse and checked
    against the recorded hash, no index asked, the rebuilt hash equal to the recorded one."""
    done = rebuild(
        recorded,
        _opts(
            into=tmp_path / "e",
            offline=True,
            index=closed_port_url(),
            find_links=[str(kit.wheelhouse)],
        ),
    )
    assert done.venv == tmp_path / "e" and not done.cached
    assert done.report["environment_hash"] == recorded["environment_hash"]
    assert [
        (
            p["name"],
            p["version"],
            p["source"],
            p["location"],
            p["file"],
            p["sha256"],
            p["hash_checked"],
        )
        for p in done.report["packages"]
    ] == [
        (
            "helper-pkg",
            "1.0",
            "find-links",
            str(kit.wheelhouse),
            kit.helper.name,
            sha256_file(kit.helper),
            True,
        ),
        (
            "tinylib",
            "1.0",
            "find-links",
            str(kit.wheelhouse),
            kit.lib1.name,
            sha256_file(kit.lib1),
            True,
        ),
    ]
    assert done.report["events"] == []  # the index (down) was never asked: --offline
    # the rebuilt interpreter imports the pinned bytes, and nothing else is installed
    out = subprocess.run(
        [str(done.python), "-c", "import tinylib, helper_pkg; print(tinylib.VALUE, helper_pkg.X)"],
        capture_output=True,
        text=True,
        env=quiet_env(),
        check=True,
    ).stdout
    assert out == "one 1\n"
    site = next((tmp_path / "e").glob("lib/python*/site-packages"))
    assert sorted(p.name for p in site.glob("*.dist-info")) == [
        "Helper_Pkg-1.0.dist-info",
        "tinylib-1.0.dist-info",
    ]


@pytest.mark.slow
def test_the_pip_fallback_rebuilds_the_same_environment(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path
) -> None:
    """Without uv: `python -m venv --without-pip` and one `pip install --require-hashes`."""
    done = rebuild(
        recorded,
        _opts(into=tmp_path / "e", offline=True, find_links=[str(kit.wheelhouse)], installer="pip"),
    )
    assert done.report["installer"] == "pip"
    assert done.report["environment_hash"] == recorded["environment_hash"]
    assert [p["hash_checked"] for p in done.report["packages"]] == [True, True]
    installers = sorted((tmp_path / "e").glob("lib/python*/site-packages/*.dist-info/INSTALLER"))
    assert [i.read_text().strip() for i in installers] == ["pip", "pip"]


def test_modules_planted_in_the_working_directory_are_not_what_pip_runs(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m venv` and `python -m pip` put the working directory first on the import
    path: a `venv.py` or a `pip/` in a shared directory the rebuild is started from (/tmp, a
    download folder, a repository that commits them) ran in their place. Started isolated
    (`-I`), the standard modules run and the planted ones never do."""
    here = tmp_path / "shared"
    (here / "pip").mkdir(parents=True)
    marker = tmp_path / "planted-ran"
    plant = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\nraise SystemExit(1)\n"
    (here / "venv.py").write_text(plant)
    (here / "pip" / "__init__.py").write_text(plant)
    (here / "pip" / "__main__.py").write_text(plant)
    monkeypatch.chdir(here)
    done = rebuild(
        recorded,
        _opts(into=tmp_path / "e", offline=True, find_links=[str(kit.wheelhouse)], installer="pip"),
    )
    assert done.report["installer"] == "pip"
    assert done.report["environment_hash"] == recorded["environment_hash"]
    assert not marker.exists()


def test_the_primary_lacking_a_package_the_fallback_serves_it_and_the_report_says_so(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path
) -> None:
    primary = tmp_path / "primary"
    simple_index(primary, [kit.lib1])  # has tinylib only
    fallback = tmp_path / "fallback"
    simple_index(fallback, [kit.lib1, kit.helper])
    with serve(primary) as p_url, serve(fallback) as f_url:
        done = rebuild(
            recorded,
            _opts(into=tmp_path / "e1", index=f"{p_url}/simple", fallbacks=[f"{f_url}/simple"]),
        )
    assert [
        (p["name"], p["source"], p["location"], p["sha256"], p["hash_checked"])
        for p in done.report["packages"]
    ] == [
        ("helper-pkg", "fallback 1", f"{f_url}/simple", sha256_file(kit.helper), True),
        ("tinylib", "primary", f"{p_url}/simple", sha256_file(kit.lib1), True),
    ]
    # the order the sources were asked in, logged: the primary first, then the fallback
    assert done.report["events"] == [
        {"package": "helper-pkg", "source": "primary", "event": "does not have helper-pkg"}
    ]
    assert done.report["environment_hash"] == recorded["environment_hash"]


@pytest.mark.slow
def test_primary_down_or_all_down_the_fallback_serves_or_the_package_is_named(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path
) -> None:
    fallback = tmp_path / "fallback"
    simple_index(fallback, [kit.lib1, kit.helper])
    with serve(fallback) as f_url:
        # primary down: everything from the fallback, and the report says so
        down = closed_port_url()
        done2 = rebuild(
            recorded, _opts(into=tmp_path / "e2", index=down, fallbacks=[f"{f_url}/simple"])
        )
        assert {p["source"] for p in done2.report["packages"]} == {"fallback 1"}
        assert {e["event"] for e in done2.report["events"]} == {"unreachable (connection refused)"}
        # byte-identical report when rebuilt again
        done3 = rebuild(
            recorded, _opts(into=tmp_path / "e3", index=down, fallbacks=[f"{f_url}/simple"])
        )
        assert json.dumps(done3.report["packages"]) == json.dumps(done2.report["packages"])
        assert done3.report["events"] == done2.report["events"]
        # all down: the package is named
        with pytest.raises(CatalyticError) as exc:
            rebuild(
                recorded, _opts(into=tmp_path / "e4", index=down, fallbacks=[closed_port_url()])
            )
        assert _code(exc) is ErrorCode.ENV_REBUILD_FAILED
        assert exc.value.details["package"] == "helper-pkg"
        assert not (tmp_path / "e4").exists()


def test_a_fallback_offering_other_bytes_for_a_recorded_pin_is_refused(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path
) -> None:
    primary = tmp_path / "primary"
    simple_index(primary, [kit.lib1])
    confused = tmp_path / "confused"
    simple_index(confused, [kit.helper_other])
    with serve(primary) as p_url, serve(confused) as f_url, pytest.raises(CatalyticError) as exc:
        rebuild(
            recorded,
            _opts(into=tmp_path / "e", index=f"{p_url}/simple", fallbacks=[f"{f_url}/simple"]),
        )
    assert _code(exc) is ErrorCode.ENV_HASH_REFUSED
    d = exc.value.details
    assert (d["package"], d["source"]) == ("helper-pkg", "fallback 1")
    assert d["offered"] == [
        {"file": kit.helper_other.name, "sha256": sha256_file(kit.helper_other)}
    ]
    assert not (tmp_path / "e").exists()


def test_a_tampered_wheel_in_the_wheelhouse_is_refused_before_install(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path
) -> None:
    house = tmp_path / "house"
    house.mkdir()
    shutil.copyfile(kit.lib1, house / kit.lib1.name)
    shutil.copyfile(kit.helper_other, house / kit.helper.name)  # the recorded name, other bytes
    with pytest.raises(CatalyticError) as exc:
        rebuild(recorded, _opts(into=tmp_path / "e", offline=True, find_links=[str(house)]))
    assert _code(exc) is ErrorCode.ENV_HASH_REFUSED
    assert exc.value.details["offered"][0]["sha256"] == sha256_file(kit.helper_other)
    assert not (tmp_path / "e").exists()  # the venv made meanwhile is gone


def test_no_wheel_for_this_platform_names_package_version_and_platform(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path
) -> None:
    house = tmp_path / "house"
    make_wheel(house, "tinylib", "1.0", {"tinylib/__init__.py": ""}, tag="cp27-cp27m-win32")
    shutil.copyfile(kit.helper, house / kit.helper.name)
    with pytest.raises(CatalyticError) as exc:
        rebuild(recorded, _opts(into=tmp_path / "e", offline=True, find_links=[str(house)]))
    assert _code(exc) is ErrorCode.ENV_NO_WHEEL
    assert "tinylib 1.0" in exc.value.message and "cp311" in exc.value.message
    assert exc.value.details["platform"].startswith("cpython")


def test_a_package_missing_everywhere_is_named(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path
) -> None:
    house = tmp_path / "house"
    house.mkdir()
    shutil.copyfile(kit.lib1, house / kit.lib1.name)
    with pytest.raises(CatalyticError) as exc:
        rebuild(recorded, _opts(into=tmp_path / "e", offline=True, find_links=[str(house)]))
    assert _code(exc) is ErrorCode.ENV_REBUILD_FAILED
    assert exc.value.details["package"] == "helper-pkg"
    assert "find-links: does not have helper-pkg" in exc.value.message


HOSTILE = [
    ("name", "--index-url=http://evil.invalid"),
    ("name", "tinylib ; rm -rf /"),
    ("name", "Tinylib"),  # not normalised: a name this tool did not write
    ("version", "-1"),
    ("version", "1.0 --hash=sha256:" + "0" * 64),
    ("version", "1.0\n--index-url http://evil.invalid"),
    ("hashes", ["md5:0123"]),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE, ids=[repr(v)[:30] for _, v in HOSTILE])
def test_a_hostile_pin_is_refused_before_any_installer_runs(
    recorded: dict[str, Any], field: str, value: Any, tmp_path: Path
) -> None:
    doc = json.loads(json.dumps(recorded))
    doc["packages"][0][field] = value
    with pytest.raises(CatalyticError) as exc:
        rebuild(doc, _opts(into=tmp_path / "e", offline=True, find_links=[str(tmp_path)]))
    assert _code(exc) is ErrorCode.ENV_PIN_INVALID
    assert not (tmp_path / "e").exists()


def test_pins_without_a_recorded_hash_refuse_the_rebuild_unless_allowed(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path
) -> None:
    """What uv's and pip's --require-hashes do with an unhashed requirement: refused, every
    such package named, nothing fetched or created; --allow-unhashed takes it unchecked and
    says so."""
    doc = json.loads(json.dumps(recorded))
    for p in doc["packages"]:
        if p["name"] == "tinylib":
            p["hashes"] = []  # installed from an index, no hashed lock file declared
    house = tmp_path / "house"
    house.mkdir()
    for w in (kit.lib1, kit.helper):
        shutil.copyfile(w, house / w.name)
    with pytest.raises(CatalyticError) as exc:
        rebuild(doc, _opts(into=tmp_path / "e", offline=True, find_links=[str(house)]))
    assert _code(exc) is ErrorCode.ENV_UNHASHED
    assert exc.value.details["packages"] == ["tinylib"]
    assert "--allow-unhashed" in exc.value.message and "lock_files" in exc.value.message
    assert not (tmp_path / "e").exists()
    assert sorted(p.name for p in house.iterdir()) == sorted([kit.lib1.name, kit.helper.name])
    done = rebuild(
        doc, _opts(into=tmp_path / "e", offline=True, find_links=[str(house)], allow_unhashed=True)
    )
    assert [(p["name"], p["sha256"], p["hash_checked"]) for p in done.report["packages"]] == [
        ("helper-pkg", sha256_file(kit.helper), True),
        ("tinylib", sha256_file(kit.lib1), False),
    ]
    assert done.report["environment_hash"] == recorded["environment_hash"]


def test_a_missing_interpreter_names_the_version(recorded: dict[str, Any], tmp_path: Path) -> None:
    doc = json.loads(json.dumps(recorded))
    doc["python"]["version"] = "3.4.9"
    with pytest.raises(CatalyticError) as exc:
        rebuild(doc, _opts(into=tmp_path / "e", offline=True))
    assert _code(exc) is ErrorCode.ENV_PYTHON_MISSING
    assert "3.4.9" in exc.value.message and exc.value.details["needed"] == "3.4.9"


# -- installs from the repository ---------------------------------------------------------------

# A PEP 517 backend kept in the repository (`backend-path`), so that building needs nothing
# fetched: its editable wheel holds a .pth naming the source directory, as setuptools' and
# hatchling's do.
IN_TREE_BACKEND = """\
import base64, hashlib, os, zipfile

NAME, VERSION = "inrepo", "0.1"
INFO = f"{NAME}-{VERSION}.dist-info"


def _b64(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel(directory, files):
    meta = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n\\n"
    tag = "Root-Is-Purelib: true\\nTag: py3-none-any\\n\\n"
    files = {**files, f"{INFO}/METADATA": meta, f"{INFO}/WHEEL": "Wheel-Version: 1.0\\n" + tag}
    rec = "".join(f"{p},sha256={_b64(d.encode())},{len(d.encode())}\\n" for p, d in files.items())
    files[f"{INFO}/RECORD"] = rec + f"{INFO}/RECORD,,\\n"
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
    return name


def build_wheel(directory, config_settings=None, metadata_directory=None):
    src = os.path.join(os.getcwd(), "src", NAME, "__init__.py")
    return _wheel(directory, {f"{NAME}/__init__.py": open(src).read()})


def build_editable(directory, config_settings=None, metadata_directory=None):
    return _wheel(directory, {f"_{NAME}.pth": os.path.join(os.getcwd(), "src") + "\\n"})
"""

IN_REPO = {
    "inrepo/pyproject.toml": (
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["_build"]\n'
    ),
    "inrepo/_build/backend.py": IN_TREE_BACKEND,
    "inrepo/src/inrepo/__init__.py": 'WHERE = "recorded"\n',
}


def test_an_editable_install_inside_the_repository_is_rebuilt_from_the_replays_checkout(
    make_repo: Any, kit: Kit, tmp_path: Path
) -> None:
    repo = make_repo({**IN_REPO, "requirements.lock": kit.lock}, policy=POLICY)
    venv = make_venv(tmp_path / "project-venv", [kit.lib1, kit.helper])
    subprocess.run(
        [
            uv_bin(),
            "pip",
            "install",
            "-q",
            "--no-config",
            "--python",
            str(venv / "python"),
            "--offline",
            "--no-build-isolation",
            "-e",
            str(repo / "inrepo"),
        ],
        check=True,
        env=quiet_env(),
    )
    recorded = fingerprint(repo, ("requirements.lock",), 0, env=_with(venv))
    pkgs = {p["name"]: p for p in recorded["packages"]}
    # recorded relative to the repository, never as this machine's path
    assert pkgs["inrepo"]["source"] == {"kind": "editable", "repo_path": "inrepo"}
    assert recorded["distributions"] == ["helper-pkg==1.0", "inrepo==0.1", "tinylib==1.0"]

    # the replay's checkout: another clone, its source edited to tell the two apart
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", str(repo), str(checkout))
    (checkout / "inrepo/src/inrepo/__init__.py").write_text('WHERE = "checkout"\n')
    done = rebuild(
        recorded,
        _opts(
            into=tmp_path / "e", offline=True, find_links=[str(kit.wheelhouse)], checkout=checkout
        ),
    )
    assert done.report["environment_hash"] == recorded["environment_hash"]
    assert done.report["from_checkout"] == [
        {"name": "inrepo", "version": "0.1", "kind": "editable", "path": "inrepo"}
    ]
    assert [p["name"] for p in done.report["packages"]] == ["helper-pkg", "tinylib"]
    out = subprocess.run(
        [str(done.python), "-c", "import inrepo; print(inrepo.WHERE, inrepo.__file__)"],
        capture_output=True,
        text=True,
        env=quiet_env(),
        check=True,
    ).stdout
    assert out == f"checkout {checkout.resolve() / 'inrepo/src/inrepo/__init__.py'}\n"
    # without a checkout there is nothing to build it from: named, and nothing left behind
    with pytest.raises(CatalyticError) as exc:
        rebuild(
            recorded, _opts(into=tmp_path / "e2", offline=True, find_links=[str(kit.wheelhouse)])
        )
    assert _code(exc) is ErrorCode.ENV_REBUILD_FAILED
    assert exc.value.details["package"] == "inrepo"
    assert not (tmp_path / "e2").exists()


def test_a_build_from_the_run_sees_what_the_command_sees_and_leaves_nothing_running(
    make_repo: Any, kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An editable install is built by the recorded commit's own build code, before the
    replayed command runs. It was started with the caller's whole environment (a CI token, a
    cloud key) and could leave a process running after the rebuild. It now sees what the
    replay gives the command (`build_env`), and whatever it started is ended with it."""
    repo = make_repo({**IN_REPO, "requirements.lock": kit.lock}, policy=POLICY)
    venv = make_venv(tmp_path / "project-venv", [kit.lib1, kit.helper])
    install = [uv_bin(), "pip", "install", "-q", "--no-config", "--python", str(venv / "python")]
    install += ["--offline", "--no-build-isolation", "-e", str(repo / "inrepo")]
    subprocess.run(install, check=True, env=quiet_env())
    recorded = fingerprint(repo, ("requirements.lock",), 0, env=_with(venv))
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", str(repo), str(checkout))
    seen, pid_file = tmp_path / "build-env.json", tmp_path / "lingering.pid"
    backend = checkout / "inrepo/_build/backend.py"
    backend.write_text(
        backend.read_text()
        + f"""
_build_editable = build_editable


def build_editable(directory, config_settings=None, metadata_directory=None):
    import json, time
    open({str(seen)!r}, "w").write(json.dumps(dict(os.environ)))
    child = os.fork()
    if child == 0:  # a daemon: its output let go of, so the build itself can end
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 65536)
        time.sleep(120)
        os._exit(0)
    open({str(pid_file)!r}, "w").write(str(child))
    return _build_editable(directory, config_settings, metadata_directory)
"""
    )
    monkeypatch.setenv("CATALYTIC_TEST_CLOUD_KEY", "s3cret")
    given = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"}
    done = rebuild(
        recorded,
        _opts(
            into=tmp_path / "e",
            offline=True,
            find_links=[str(kit.wheelhouse)],
            checkout=checkout,
            build_env=given,
        ),
    )
    assert done.report["environment_hash"] == recorded["environment_hash"]
    env = json.loads(seen.read_text())
    assert "CATALYTIC_TEST_CLOUD_KEY" not in env and "s3cret" not in seen.read_text()
    assert (env["HOME"], env["LANG"]) == (given["HOME"], given["LANG"])
    assert env["PATH"].endswith(given["PATH"])  # the installer puts the new venv's bin first
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 30  # SIGKILL is sent; on a loaded machine it lands a bit later
    while True:
        try:  # gone, or a zombie no one has reaped yet (PID 1 of a container may not)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            state = "gone"
        if state in ("gone", "Z", "X") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert state in ("gone", "Z", "X"), state  # the sleeper has 120 s to go: killed, not done


def test_builds_from_the_repository_come_from_the_recorded_commit_only(
    make_repo: Any, kit: Kit, tmp_path: Path
) -> None:
    """A run whose environment holds an editable install of its own repository's package.
    `replay --rebuild-env` builds it from its private checkout of the recorded commit, its
    build code seeing what the replayed command sees (not the caller's secrets). `env rebuild`
    built it from the working directory, whatever was there (a download folder holding a
    planted package of that name, a checkout at another commit): it now builds only from the
    run's repository checked out at the recorded commit, the package's directory unchanged."""
    saw = tmp_path / "backend-saw.json"
    dump = f"\nimport json as _j\n_j.dump(dict(os.environ), open({str(saw)!r}, 'w'))\n"
    repo = _project(make_repo, kit)
    write_files(repo, {k: v + dump if k.endswith("backend.py") else v for k, v in IN_REPO.items()})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "inrepo")
    recorded_commit = git(repo, "rev-parse", "HEAD").stdout.strip()
    venv = make_venv(tmp_path / "project-venv", [kit.lib1, kit.helper])
    install = [uv_bin(), "pip", "install", "-q", "--no-config", "--python", str(venv / "python")]
    install += ["--offline", "--no-build-isolation", "-e", str(repo / "inrepo")]
    subprocess.run(install, check=True, env=quiet_env())
    signed = ["--sign", str(key_file(tmp_path)), "--", "python", "job.py"]
    proc = catalytic("run", "--run-id", "r1", *signed, cwd=repo, env=_with(venv))
    assert proc.returncode == 0, proc.stderr
    archive = tmp_path / "r1.catalytic.zip"
    assert catalytic("archive", "create", "_runs/r1", "-o", str(archive), cwd=repo).returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "run r1")
    sources = ["--offline", "--find-links", str(kit.wheelhouse), "--json"]
    trust = tmp_path / "allowed_validators"  # for a rebuild started outside the repository
    shutil.copyfile(repo / ".catalytic/allowed_validators", trust)

    secret = {**_with(venv), "CATALYTIC_TEST_CLOUD_KEY": "s3cret"}
    saw.unlink(missing_ok=True)
    proc = catalytic("replay", "_runs/r1", "--rebuild-env", *sources, cwd=repo, env=secret)
    assert json.loads(proc.stdout)["details"]["verdict"] == "exact", proc.stdout
    assert "CATALYTIC_TEST_CLOUD_KEY" not in json.loads(saw.read_text())

    def env_rebuild(cwd: Path, into: str) -> dict[str, Any]:
        saw.unlink(missing_ok=True)
        args = ["--into", into, "--trust-file", str(trust), *sources]
        got = catalytic("env", "rebuild", str(archive), *args, cwd=cwd)
        return {"rc": got.returncode, **json.loads(got.stdout)}

    downloads = tmp_path / "downloads"  # a planted package of that name beside the archive
    shutil.copytree(repo / "inrepo", downloads / "inrepo")
    for cwd, into in ((downloads, "e1"), (repo, str(tmp_path / "e2"))):
        doc = env_rebuild(cwd, into)
        assert (doc["rc"], doc["code"], doc["details"].get("reason")) == (
            2,
            "ENV_REBUILD_FAILED",
            "CHECKOUT",
        ), doc
        assert doc["details"]["commit"] == recorded_commit
        assert not saw.exists()  # no build code ran
    assert not (downloads / "e1").exists() and not (tmp_path / "e2").exists()

    git(repo, "checkout", "-q", "-f", recorded_commit)  # the replay above wrote the chronicle
    (repo / "inrepo/src/inrepo/__init__.py").write_text('WHERE = "edited"\n')
    doc = env_rebuild(repo, str(tmp_path / "e3"))
    assert (doc["code"], doc["details"]["reason"]) == ("ENV_REBUILD_FAILED", "CHECKOUT")
    assert not saw.exists() and not (tmp_path / "e3").exists()
    git(repo, "checkout", "-q", "--", "inrepo")
    doc = env_rebuild(repo, str(tmp_path / "e4"))
    assert (doc["rc"], doc["code"]) == (0, "OK"), doc
    assert doc["details"]["from_checkout"] == [
        {"name": "inrepo", "version": "0.1", "kind": "editable", "path": "inrepo"}
    ]
    assert saw.exists()


# -- the cache ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_cache_is_rechecked_before_reuse_and_pruned(recorded: dict[str, Any], kit: Kit) -> None:
    opts = RebuildOptions(offline=True, find_links=[str(kit.wheelhouse)])
    first = rebuild(recorded, opts)
    first.release()
    assert not first.cached and first.venv.is_relative_to(cache_root())
    second = rebuild(recorded, opts)
    second.release()
    assert second.cached and second.venv == first.venv
    # a file changed inside it is detected: rebuilt, not reused
    module = next(first.venv.glob("lib/python*/site-packages/tinylib/__init__.py"))
    module.write_text('VALUE = "edited"\n')
    third = rebuild(recorded, opts)
    third.release()
    assert not third.cached and module.read_text() == 'VALUE = "one"\n'
    # in use (a replay holds it): prune keeps it; released: prune removes it
    held = rebuild(recorded, opts)
    assert prune()["in_use"] == [held.venv.parent.name]
    held.release()
    assert prune()["removed"] == [held.venv.parent.name]
    assert not held.venv.exists()


@pytest.mark.slow
def test_concurrent_rebuilds_of_one_environment_do_not_corrupt_it(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path
) -> None:
    spec = tmp_path / "env.json"
    spec.write_text(json.dumps(recorded))
    script = (
        "import json,sys; from pathlib import Path; "
        "from catalytic_hooks.environment.build import rebuild, RebuildOptions; "
        "r = rebuild(json.loads(Path(sys.argv[1]).read_text()), "
        "RebuildOptions(offline=True, find_links=[sys.argv[2]])); "
        "print(json.dumps([str(r.venv), r.cached])); r.release()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(spec), str(kit.wheelhouse)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [json.loads(p.communicate()[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({o[0] for o in outs}) == 1 and sorted(o[1] for o in outs) == [False, True, True]
    again = rebuild(recorded, RebuildOptions(offline=True, find_links=[str(kit.wheelhouse)]))
    again.release()
    assert again.cached


@pytest.mark.slow
def test_ctrl_c_during_a_rebuild_leaves_no_partial_environment(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path
) -> None:
    spec = tmp_path / "env.json"
    spec.write_text(json.dumps(recorded))
    index = tmp_path / "slow"
    simple_index(index, [kit.lib1, kit.helper])
    script = (
        "import json,sys; from pathlib import Path; "
        "from catalytic_hooks.environment.build import rebuild, RebuildOptions; "
        "print('started', flush=True); "
        "rebuild(json.loads(Path(sys.argv[1]).read_text()), "
        "RebuildOptions(index=sys.argv[2]))"
    )
    with serve(index, delay=5.0) as url:
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(spec), f"{url}/simple"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        deadline = time.monotonic() + 30
        while not any(cache_root().glob("*/")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(p.is_dir() for p in cache_root().iterdir()), "the rebuild never started"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert [p.name for p in cache_root().iterdir() if p.is_dir()] == []


# -- what the command saw -------------------------------------------------------------------

UNTRACKED_READ = """\
import pathlib
out = pathlib.Path("outputs")
(out / "copy.txt").write_text(pathlib.Path("notes/input.txt").read_text().upper())
"""


WRITE_ONLY = """\
import pathlib
(pathlib.Path("outputs") / "out.txt").write_text("written\\n")
"""


def test_a_run_writing_into_an_untracked_empty_durable_directory_replays_exact(
    make_repo: Any, tmp_path: Path
) -> None:
    """The default run's representative (the slow test below adds the untracked input): the
    recorded commit has no `outputs/`, the replay's worktree is given it, as the run had it."""
    policy = POLICY.replace('lock_files = ["requirements.lock"]\n', "")
    repo = make_repo({"job.py": WRITE_ONLY, ".gitignore": "_tmp/\n"}, policy=policy)
    (repo / "outputs").mkdir()  # exists, empty and untracked, when the run starts
    key = str(key_file(tmp_path))
    proc = catalytic(
        "run", "--run-id", "w1", "--sign", key, "--", sys.executable, "job.py", cwd=repo
    )
    assert proc.returncode == 0 and "untracked path" not in proc.stderr, proc.stderr
    git(repo, "add", "_runs")
    git(repo, "commit", "-q", "-m", "run w1")
    proc = catalytic("replay", "_runs/w1", "--allow-untrusted", "--json", cwd=repo)
    rep = json.loads(proc.stdout)["details"]
    assert (proc.returncode, rep["verdict"]) == (0, "exact"), proc.stdout + proc.stderr


@pytest.mark.slow
def test_untracked_durable_directory_replays_exact_and_untracked_input_is_named(
    make_repo: Any, tmp_path: Path
) -> None:
    policy = POLICY.replace('lock_files = ["requirements.lock"]\n', "")
    repo = make_repo({"job.py": UNTRACKED_READ, ".gitignore": "_tmp/\n"}, policy=policy)
    assert (
        catalytic("trust", "add", "ci", f"ed25519:{signer(SEED_A).public_hex}", cwd=repo).returncode
        == 0
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "trust")
    (repo / "outputs").mkdir()  # exists, empty and untracked, when the run starts
    (repo / "notes").mkdir()
    (repo / "notes" / "input.txt").write_text("only on this machine\n")
    proc = catalytic(
        "run",
        "--run-id",
        "u1",
        "--sign",
        str(key_file(tmp_path)),
        "--",
        sys.executable,
        "job.py",
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr
    assert "untracked path(s)" in proc.stderr and "notes/" in proc.stderr
    spec = json.loads((repo / "_runs/u1/TASK_SPEC.json").read_text())
    assert spec["workspace"] == {
        "root_dirs": ["outputs"],
        "untracked": ["notes/"],
        "untracked_count": 1,
    }
    git(repo, "add", "_runs")
    git(repo, "commit", "-q", "-m", "run u1")
    proc = catalytic("replay", "_runs/u1", "--json", cwd=repo)
    rep = json.loads(proc.stdout)["details"]
    assert rep["verdict"] == "failed" and proc.returncode == 1
    assert rep["likely_causes"]["untracked_inputs"] == ["notes/"]
    assert "`notes/`" in Path(rep["report_md"]).read_text()

    # committed input, output directory still untracked and empty: the replay has it, exact
    (repo / "outputs" / "copy.txt").unlink()
    git(repo, "add", "notes")
    git(repo, "commit", "-q", "-m", "the input")
    proc = catalytic(
        "run",
        "--run-id",
        "u2",
        "--sign",
        str(key_file(tmp_path)),
        "--",
        sys.executable,
        "job.py",
        cwd=repo,
    )
    assert proc.returncode == 0 and "untracked path" not in proc.stderr, proc.stderr
    git(repo, "add", "_runs")
    git(repo, "commit", "-q", "-m", "run u2")
    proc = catalytic("replay", "_runs/u2", "--json", cwd=repo)
    rep = json.loads(proc.stdout)["details"]
    assert rep["verdict"] == "exact", rep.get("reason")
    assert "likely_causes" not in rep
    # that run declared no lock file: its pins carry no hash, and a rebuild refuses them
    proc = catalytic("replay", "_runs/u2", "--rebuild-env", "--offline", "--json", cwd=repo)
    refused = json.loads(proc.stdout)
    assert (proc.returncode, refused["code"]) == (1, "ENV_UNHASHED"), proc.stdout + proc.stderr
    assert "pytest" in refused["details"]["packages"]
    # allowed: past that check, to the next one (offline with no wheelhouse: nothing to serve)
    proc = catalytic(
        "env", "rebuild", "_runs/u2", "--offline", "--allow-unhashed", "--json", cwd=repo
    )
    assert json.loads(proc.stdout)["code"] == "ENV_REBUILD_FAILED", proc.stdout + proc.stderr


# -- export -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_exported_lock_installs_exactly_with_pip_and_with_uv(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path
) -> None:
    from catalytic_hooks.environment.export import export

    text, unhashed = export(recorded, "requirements", "r1")
    assert unhashed == []
    lock = tmp_path / "exported.txt"
    lock.write_text(text)
    by_pip = make_venv(tmp_path / "pip-venv", installer="pip")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(by_pip / "python"),
            "install",
            "-q",
            "--no-deps",
            "--require-hashes",
            "--no-index",
            "--find-links",
            str(kit.wheelhouse),
            "-r",
            str(lock),
        ],
        check=True,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )
    by_uv = make_venv(tmp_path / "uv-venv")
    subprocess.run(
        [
            uv_bin(),
            "pip",
            "sync",
            "-q",
            "--no-config",
            "--python",
            str(by_uv / "python"),
            "--require-hashes",
            "--offline",
            "--no-index",
            "--find-links",
            str(kit.wheelhouse),
            str(lock),
        ],
        check=True,
    )
    for venv in (by_pip, by_uv):
        assert (
            fingerprint(tmp_path, (), 0, env=_with(venv))["environment_hash"]
            == recorded["environment_hash"]
        )


def test_the_exported_pylock_installs_with_uv_and_hashes_as_recorded(
    recorded: dict[str, Any], kit: Kit, tmp_path: Path
) -> None:
    """PEP 751 wheels must say where they are (uv refuses one without `path` or `url`): the
    export finds the recorded bytes in the rebuild's sources, and uv installs exactly them."""
    import tomllib

    from catalytic_hooks.environment.export import export
    from catalytic_hooks.environment.sources import make_sources

    text, unhashed = export(
        recorded, "pylock", "r1", make_sources([str(kit.wheelhouse)], None, [], True)
    )
    assert unhashed == []
    doc = tomllib.loads(text)
    assert (doc["lock-version"], doc["requires-python"]) == (
        "1.0",
        f"=={recorded['python']['version']}",
    )
    assert [(p["name"], p["version"], p["wheels"]) for p in doc["packages"]] == [
        (
            name,
            "1.0",
            [
                {
                    "name": w.name,
                    "path": str(kit.wheelhouse / w.name),
                    "hashes": {"sha256": sha256_file(w)[7:]},
                }
            ],
        )
        for name, w in (("helper-pkg", kit.helper), ("tinylib", kit.lib1))
    ]
    lock = tmp_path / "pylock.toml"
    lock.write_text(text)
    venv = make_venv(tmp_path / "by-pylock")
    proc = subprocess.run(
        [
            uv_bin(),
            "pip",
            "sync",
            "-q",
            "--no-config",
            "--preview-features",
            "pylock",
            "--python",
            str(venv / "python"),
            "--offline",
            "--no-index",
            "--require-hashes",
            str(lock),
        ],
        capture_output=True,
        text=True,
        env=quiet_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        fingerprint(tmp_path, (), 0, env=_with(venv))["environment_hash"]
        == recorded["environment_hash"]
    )
    # from an index: the file's URL, never another build of it (the confused index is skipped)
    good, confused = tmp_path / "good", tmp_path / "confused"
    simple_index(good, [kit.lib1, kit.helper])
    simple_index(confused, [kit.helper_other])
    with serve(confused) as c_url, serve(good) as g_url:
        sources = make_sources([], f"{c_url}/simple", [f"{g_url}/simple"], False)
        doc = tomllib.loads(export(recorded, "pylock", "r1", sources)[0])
    by = {p["name"]: p for p in doc["packages"]}
    assert by["helper-pkg"]["index"] == f"{g_url}/simple"
    assert by["helper-pkg"]["wheels"][0]["url"] == f"{g_url}/files/{kit.helper.name}"
    # a recorded pin no source offers as its bytes is refused, naming it
    with pytest.raises(CatalyticError) as exc:
        export(recorded, "pylock", "r1", make_sources([], None, [], True))
    assert (
        _code(exc) is ErrorCode.ENV_REBUILD_FAILED and exc.value.details["package"] == "helper-pkg"
    )


# -- parsers ------------------------------------------------------------------------------

SMI_QUERY = "NVIDIA H200, 550.54.15\nNVIDIA H200, 550.54.15\n"
SMI_TABLE = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""


def test_the_gpu_manifest_from_nvidia_smi() -> None:
    from catalytic_hooks.provenance.system import compare_system, parse_smi

    got = parse_smi(SMI_QUERY, SMI_TABLE)
    assert got == {
        "gpus": ["NVIDIA H200", "NVIDIA H200"],
        "gpu_driver": "550.54.15",
        "cuda_version": "12.4",
    }
    assert parse_smi(None, None) == {"gpus": [], "gpu_driver": None, "cuda_version": None}
    recorded = {"os": "Linux", "gpus": ["NVIDIA H200"], "cuda_version": "12.4", "cpu_count": 16}
    now = {"os": "Linux", "gpus": [], "cuda_version": None, "cpu_count": 2}
    assert [d["field"] for d in compare_system(recorded, now)] == [
        "system gpus",
        "system cuda_version",
    ]


def test_lock_files_give_wheel_hashes() -> None:
    from catalytic_hooks.provenance.locks import wheel_hashes

    h1, h2 = "a" * 64, "b" * 64
    req = (
        f"# comment\nZope.Interface==5.0 \\\n    --hash=sha256:{h1} \\\n"
        f"    --hash=sha256:{h2}\nother>=1\n-e .\n"
    )
    assert wheel_hashes("requirements.txt", req.encode()) == {
        ("zope-interface", "5.0"): {f"sha256:{h1}", f"sha256:{h2}"}
    }
    pylock = (
        f'lock-version = "1.0"\n[[packages]]\nname = "six"\nversion = "1.17.0"\n'
        f'[[packages.wheels]]\nname = "six-1.17.0-py2.py3-none-any.whl"\n'
        f'hashes = {{ sha256 = "{h1}" }}\n'
    )
    assert wheel_hashes("pylock.toml", pylock.encode()) == {("six", "1.17.0"): {f"sha256:{h1}"}}
    uvlock = (
        f'version = 1\n[[package]]\nname = "six"\nversion = "1.17.0"\n'
        f'wheels = [{{ url = "https://x.invalid/six.whl", hash = "sha256:{h2}" }}]\n'
        f'sdist = {{ url = "https://x.invalid/six.tar.gz", hash = "sha256:{h1}" }}\n'
    )
    assert wheel_hashes("uv.lock", uvlock.encode()) == {("six", "1.17.0"): {f"sha256:{h2}"}}
    assert wheel_hashes("environment.yml", b"dependencies: [python=3.11]\n") == {}


def test_the_gpu_manifest_from_the_kernel_modules_files(tmp_path: Path) -> None:
    from catalytic_hooks.provenance.system import parse_proc_version, proc_nvidia

    assert (
        parse_proc_version(
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  "
            "Tue Mar  5 22:23:56 UTC 2024\n"
        )
        == "550.54.15"
    )
    assert (
        parse_proc_version(
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build\n"
        )
        == "570.86.15"
    )
    root = tmp_path / "nvidia"
    for bus in ("0000:1b:00.0", "0000:0a:00.0"):
        (root / "gpus" / bus).mkdir(parents=True)
        (root / "gpus" / bus / "information").write_text(
            "Model: \t\t NVIDIA H200\nIRQ:   \t\t 17\n"
        )
    (root / "version").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15\n")
    assert proc_nvidia(str(root)) == (["NVIDIA H200", "NVIDIA H200"], "550.54.15")
    assert proc_nvidia(str(tmp_path / "absent")) is None
