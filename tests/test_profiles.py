"""Profiles are data: same keys in every size, overrides checked."""

from __future__ import annotations

import pytest

from rank_distillm.profiles import PROFILES, load_profile, sections


def _shape(node):
    if isinstance(node, dict):
        return {k: _shape(v) for k, v in node.items() if not isinstance(v, dict) or k not in ("llm_runs", "first_stages")}
    return None


def test_every_profile_has_the_same_fields():
    shapes = {name: {s: set(load_profile(name)[s]) for s in sections()} for name in PROFILES}
    assert shapes["smoke"] == shapes["cpu"] == shapes["gpu"]


def test_override_and_unknown_field():
    p = load_profile("smoke", {"data.max_queries": 2})
    assert p["data"]["max_queries"] == 2
    with pytest.raises(KeyError, match="unknown field"):
        load_profile("smoke", {"data.max_querys": 2})


def test_yaml_profile_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: smoke\ndata:\n  max_queries: 1\n")
    p = load_profile(str(path))
    assert p["data"]["max_queries"] == 1 and p["data"]["depth"] == load_profile("smoke")["data"]["depth"]
    with pytest.raises(ValueError, match="unknown profile"):
        load_profile("huge")


def test_environment_replaces_only_the_default(monkeypatch, tmp_path):
    import rank_distillm.profiles as profiles

    variant = tmp_path / "tiny.yaml"
    variant.write_text("base: smoke\ndata:\n  max_queries: 2\n")
    monkeypatch.setenv(profiles.PROFILE_ENV, str(variant))
    assert load_profile()["data"]["max_queries"] == 2
    assert load_profile("cpu")["data"]["max_queries"] == 2  # "cpu" is the default
    assert load_profile("smoke")["data"]["max_queries"] == load_profile("smoke", {})["data"]["max_queries"]
    monkeypatch.setattr(profiles, "VARIANT_DIR", tmp_path)
    monkeypatch.delenv(profiles.PROFILE_ENV)
    assert load_profile("tiny")["data"]["max_queries"] == 2


def test_command_line_values_read_exponents_as_numbers():
    from rank_distillm.profiles import parse_value

    assert parse_value("2e-5") == 2e-5 and parse_value("1.0e-4") == 1e-4
    assert parse_value("3") == 3 and parse_value("true") is True and parse_value("null") is None
    assert parse_value("ranknet") == "ranknet" and parse_value("[1, 2]") == [1, 2]
