from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import PathClass, load_policy

from .helpers import catalytic


def test_defaults(tmp_path: Path) -> None:
    p = load_policy(tmp_path)
    assert p.durable_roots == () and p.tmp_roots == () and p.protected_roots == (".",)
    assert p.run_roots == ("_runs",) and p.metrics_tolerance == 1e-8


def test_pyproject_and_dotfile(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname="x"\n[tool.catalytic]\ndurable_roots=["outputs/"]\ntmp_roots=["./_tmp"]\n'
    )
    p = load_policy(tmp_path)
    assert p.durable_roots == ("outputs",) and p.tmp_roots == ("_tmp",)
    (tmp_path / ".catalytic.toml").write_text('durable_roots=["x"]\n')
    with pytest.raises(CatalyticError) as err:
        load_policy(tmp_path)
    assert err.value.code is ErrorCode.CONFIG_INVALID and "both" in err.value.message


def test_dotfile_alone(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname="x"\n')
    (tmp_path / ".catalytic.toml").write_text('exclusions=["vendor"]\n')
    assert load_policy(tmp_path).exclusions == ("vendor",)


def test_classification_precedence(tmp_path: Path) -> None:
    (tmp_path / ".catalytic.toml").write_text(
        'exclusions=["data/cache"]\ntmp_roots=["data/tmp","_tmp"]\n'
        'durable_roots=["data","out"]\nprotected_roots=["data","src"]\n'
    )
    p = load_policy(tmp_path)
    assert p.classify("data/cache/x") is PathClass.EXCLUDED
    assert p.classify("data/tmp/x") is PathClass.TMP
    assert p.classify("data/raw.csv") is PathClass.DURABLE
    assert p.classify("out/r.txt") is PathClass.DURABLE
    assert p.classify("outputs/r.txt") is PathClass.UNPROTECTED
    assert p.classify("src/a.py") is PathClass.PROTECTED
    assert p.classify("README") is PathClass.UNPROTECTED
    assert p.classify(".git/config") is PathClass.EXCLUDED
    assert p.classify("_runs/r1/STATUS.json") is PathClass.DURABLE  # run roots are durable


BAD_CONFIGS = {
    "absolute": ('durable_roots=["/etc"]', "durable_roots"),
    "dotdot": ('tmp_roots=["a/../../b"]', "tmp_roots"),
    "empty": ('exclusions=[""]', "exclusions"),
    "unknown-key": ('durable_root=["x"]', "durable_root"),
    "wrong-type": ('durable_roots="outputs"', "durable_roots"),
    "wrong-item": ("tmp_roots=[1]", "tmp_roots"),
    "bad-validator": ('trusted_validators=["ABC"]', "trusted_validators"),
    "bad-tolerance": ('metrics_tolerance="x"', "metrics_tolerance"),
    "tolerance-beyond-float": ("metrics_tolerance=1" + "0" * 400, "metrics_tolerance"),
    "bad-toml": ("durable_roots=[", "TOML"),
}


@pytest.mark.parametrize(("text", "key"), list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS))
def test_bad_config_exits_2_naming_the_key(make_repo, text: str, key: str) -> None:
    repo = make_repo({"a.txt": "x"}, policy=text + "\n")
    proc = catalytic("digest", "--json", cwd=repo)
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["code"] == "CONFIG_INVALID"
    assert key in doc["message"]
    assert "Traceback" not in proc.stderr


# -- what the caches record (issue 27: one contract for the fast paths) ----------------------------

# A value for each key a policy file may set that differs from the default.
_CHANGED = {
    "durable_roots": ["out"],
    "tmp_roots": ["scratch"],
    "exclusions": ["vendor"],
    "protected_roots": ["src"],
    "run_roots": ["runs"],
    "trusted_validators": "keys/allowed",
    "chronicle": "log/chronicle.jsonl",
    "reports_dir": "log/reports",
    "quarantine_dir": "log/quarantine",
    "metrics_tolerance": 0.5,
    "lock_files": ["uv.lock"],
    "baseline": "a" * 40,
    "archive_dir": "log/archives",
    "replays_dir": "elsewhere/replays",
    "archive_max_entries": 10,
    "archive_max_bytes": 1000,
    "env_python": ".venv/bin/python",
    "env_index": "https://mirror.example/simple",
    "env_fallback_indexes": ["https://pypi.org/simple"],
    "env_find_links": ["wheelhouse"],
    "ref_namespaces": ["refs/heads/", "refs/notes/"],
}


def test_every_policy_field_is_carried_by_the_caches_or_declared_irrelevant() -> None:
    """A new Policy field that decides anything must reach the quick paths' records and the
    index snapshot's name (Policy.cache_key), or be declared irrelevant to them with a reason:
    otherwise a quick path would decide by a record that lacks it."""
    from dataclasses import fields

    from catalytic_hooks.core.policy import CACHE_CARRIED, CACHE_IRRELEVANT, Policy

    names = {f.name for f in fields(Policy)}
    assert not CACHE_CARRIED & set(CACHE_IRRELEVANT)
    assert names == CACHE_CARRIED | set(CACHE_IRRELEVANT), (
        "add the new field to Policy.cache_key (and CACHE_CARRIED) or to CACHE_IRRELEVANT"
    )


@pytest.mark.parametrize("key", sorted(_CHANGED))
def test_a_carried_field_changes_the_cache_key_and_no_other_does(key: str) -> None:
    from catalytic_hooks.core.policy import CACHE_CARRIED, policy_from_mapping

    default = policy_from_mapping({}, "test")
    changed = policy_from_mapping({key: _CHANGED[key]}, "test")
    assert getattr(changed, key) != getattr(default, key)
    assert (changed.cache_key() != default.cache_key()) is (key in CACHE_CARRIED)


def _probes() -> list[str]:
    """Paths every key's changed value names (each as given and one level below), and the
    defaults' paths: where a key that decides a path's class would show it."""
    named: list[str] = [
        ".catalytic/chronicle.jsonl",
        ".catalytic/allowed_validators",
        "_runs/r1/STATUS.json",
        "src/a.py",
        "a.txt",
    ]
    for value in _CHANGED.values():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and "://" not in v:
                named += [v, f"{v}/x"]
    return named


@pytest.mark.parametrize("key", sorted(_CHANGED))
def test_a_key_that_changes_a_decision_is_carried_by_the_caches(key: str) -> None:
    """A field declared irrelevant to the caches must not change how any path is classified or
    what a push check watches: a quick path would otherwise accept by a record that lacks it."""
    from catalytic_hooks.core.policy import CACHE_CARRIED, policy_from_mapping

    default = policy_from_mapping({}, "test")
    changed = policy_from_mapping({key: _CHANGED[key]}, "test")
    decides = [p for p in _probes() if default.classify(p) != changed.classify(p)]
    decides += ["watched"] if default.watched() != changed.watched() else []
    decides += ["run_roots"] if default.run_roots != changed.run_roots else []
    if decides:
        assert key in CACHE_CARRIED, f"{key} decides {decides}: carry it in Policy.cache_key"


@pytest.mark.parametrize("key", sorted(_CHANGED))
def test_a_run_journal_keeps_every_root_the_cache_key_carries(key: str, tmp_path: Path) -> None:
    """The run journal is a cache of the policy too: recovery undoes a killed run by the roots
    it recorded, so they must classify as the run's policy did."""
    from catalytic_hooks.core.policy import policy_from_mapping
    from catalytic_hooks.run.journal import RunJournal, policy_of, recorded_roots

    policy = policy_from_mapping({key: _CHANGED[key]}, "test")
    rebuilt = policy_of(RunJournal(tmp_path / "j", "t", {"roots": recorded_roots(policy)}))
    classes = ("exclusions", "tmp", "durable", "protected")
    assert {k: rebuilt.cache_key()[k] for k in classes} == {
        k: policy.cache_key()[k] for k in classes
    }


def test_every_settable_key_has_a_changed_value_above() -> None:
    from catalytic_hooks.core.policy import _KNOWN_KEYS

    assert set(_CHANGED) == set(_KNOWN_KEYS)


def test_the_quick_paths_record_what_the_cache_key_names() -> None:
    """The quick paths cannot import core.policy (tomllib): their field lists are pinned here."""
    from catalytic_hooks.core.policy import policy_from_mapping
    from catalytic_hooks.enforce import quickaccept as quick
    from catalytic_hooks.git import quickdigest

    keys = list(policy_from_mapping({}, "test").cache_key())
    assert list(quick._ROOTS) == [k for k in keys if k != "watched"]
    assert list(quickdigest.ROOTS) == keys[:4]  # a digest classifies by the four roots only


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("env_index", "-i http://evil.invalid"),
        ("env_index", "ftp://mirror.invalid/simple"),
        ("env_fallback_indexes", ["https://ok.invalid/simple", "--extra-index-url=x"]),
        ("env_find_links", "wheelhouse"),
        ("env_find_links", ["dir\nwith newline"]),
        ("env_python", ""),
    ],
    ids=[
        "option-like-index",
        "ftp-index",
        "option-like-fallback",
        "not-a-list",
        "control-character",
        "empty-python",
    ],
)
def test_environment_sources_are_locations_never_options(key: str, value: object) -> None:
    from catalytic_hooks.core.policy import policy_from_mapping

    with pytest.raises(CatalyticError) as err:
        policy_from_mapping({key: value}, "test")
    assert err.value.code is ErrorCode.CONFIG_INVALID and err.value.details["key"] == key


@pytest.mark.parametrize(
    "value",
    [["refs/heads"], ["heads/"], ["refs//x/"], ["refs/../x/"], ["refs/a b/"], "refs/heads/", [1]],
)
def test_ref_namespaces_must_be_ref_prefixes(value: object) -> None:
    from catalytic_hooks.core.policy import policy_from_mapping

    with pytest.raises(CatalyticError) as err:
        policy_from_mapping({"ref_namespaces": value}, "test")
    assert err.value.code is ErrorCode.CONFIG_INVALID
    assert err.value.details["key"] == "ref_namespaces"
