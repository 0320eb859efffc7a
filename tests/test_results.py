import pandas as pd
import pytest

from wmbench.results import Cell, ResultsStore, markdown_table

CELL = Cell(model="m", env="hopper", dataset="wmbench/hopper/random-v0", policy="bc", profile="smoke", horizon=5, seed=0)


def rows(value):
    return pd.DataFrame({"metric": ["mse", "mse"], "step": [1, 2], "value": [value, 2 * value]})


def test_write_read_round_trip(tmp_path):
    store = ResultsStore(tmp_path)
    assert not store.has(CELL)
    store.write(CELL, rows(1.5))
    assert store.has(CELL)
    table = store.read()
    assert list(table["value"]) == [1.5, 3.0]
    assert set(table["model"]) == {"m"} and set(table["horizon"]) == {5}
    assert not list(tmp_path.glob("**/*.tmp")), "no temporary files are left behind"


def test_rewrite_replaces_and_filters_select(tmp_path):
    store = ResultsStore(tmp_path)
    store.write(CELL, rows(1.0))
    store.write(CELL, rows(7.0))
    other = Cell(**{**CELL.__dict__, "seed": 1})
    store.write(other, rows(3.0))
    assert sorted(store.read(seed=0)["value"]) == [7.0, 14.0]
    assert len(store.read(seed=[0, 1])) == 4
    assert store.read(model="nope").empty


def test_unreadable_file_is_skipped_with_a_warning(tmp_path):
    store = ResultsStore(tmp_path)
    store.write(CELL, rows(1.0))
    bad = tmp_path / "hopper" / "m" / "broken.csv"
    bad.write_bytes(b"\x00\x01not,a\ncsv\x00,\"")
    with pytest.warns(UserWarning, match="broken.csv"):
        table = store.read()
    assert list(table["value"]) == [1.0, 2.0]


def test_markdown_table():
    text = markdown_table(pd.DataFrame({"a": [1, 2], "b": [0.5, 0.25]}))
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.5 |", "| 2 | 0.25 |"]
