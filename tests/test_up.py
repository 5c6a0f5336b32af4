"""`runbooks up`'s choice of catalog: explicit, never a dead sandbox's."""
from __future__ import annotations

import argparse

from runbooks.up_cmd import SANDBOX_CATALOG_MARK, chosen_catalog


def args(catalog=None) -> argparse.Namespace:
    return argparse.Namespace(catalog=catalog)


def test_catalog_flag_wins_then_the_environment_then_the_sandbox(tmp_path, monkeypatch):
    mine = tmp_path / "estate.yaml"
    mine.write_text("environments: {}\n")
    monkeypatch.delenv("RUNBOOKS_CATALOG", raising=False)
    assert chosen_catalog(args()) is None                              # no catalog: the sandbox
    monkeypatch.setenv("RUNBOOKS_CATALOG", str(mine))
    assert chosen_catalog(args()) == mine.resolve()
    other = tmp_path / "other.yaml"
    assert chosen_catalog(args(other)) == other.resolve()


def test_an_earlier_sandboxs_catalog_in_the_environment_is_ignored_and_said_so(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "sandbox" / "catalog.yaml"
    stale.parent.mkdir()
    stale.write_text(f"{SANDBOX_CATALOG_MARK}: the demo estate\nenvironments: {{}}\n")
    monkeypatch.setenv("RUNBOOKS_CATALOG", str(stale))
    assert chosen_catalog(args()) is None
    assert "ignoring RUNBOOKS_CATALOG" in capsys.readouterr().out
