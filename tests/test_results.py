import gzip

import pandas as pd
import pytest

from wmbench.results import Cell, ResultsStore, markdown_table

CELL = Cell(model="m", env="hopper", dataset="wmbench/hopper/random-v0", policy="bc", profile="smoke", horizon=5,
            seed=0)


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


def test_a_file_cut_between_rows_is_incomplete_and_recomputed(tmp_path):
    store = ResultsStore(tmp_path)
    path = store.write(CELL, rows(1.0))
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    path.write_bytes(gzip.compress(b"".join(lines[:-1])))  # ends with a newline, one row short
    with pytest.warns(UserWarning, match="incomplete: 1 rows of 2"):
        assert store.load(CELL) is None, "taken as not stored, so evaluate and sweep compute it again"
    with pytest.warns(UserWarning, match="incomplete"):
        assert store.read().empty


def test_a_cut_compressed_file_is_unreadable_and_recomputed(tmp_path):
    store = ResultsStore(tmp_path)
    path = store.write(CELL, rows(1.0))
    path.write_bytes(path.read_bytes()[:-9])  # the gzip trailer lost, as a copy cut short would lose it
    with pytest.warns(UserWarning, match="truncated: the compressed data end early"):
        assert store.load(CELL) is None


def test_cells_are_gzipped_csv_the_same_rows_the_same_bytes(tmp_path):
    first, second = ResultsStore(tmp_path / "a"), ResultsStore(tmp_path / "b")
    path = first.write(CELL, rows(1.0))
    assert path.name.endswith(".csv.gz") and path.read_bytes() == second.write(CELL, rows(1.0)).read_bytes()
    assert list(pd.read_csv(path)["value"]) == [1.0, 2.0], "any CSV reader that knows gzip reads it"


def test_plain_csv_cells_of_an_older_store_are_read_then_replaced(tmp_path):
    store = ResultsStore(tmp_path)
    plain = store.path(CELL).with_name(store.path(CELL).name.removesuffix(".gz"))
    plain.parent.mkdir(parents=True)
    rows(4.0).assign(**CELL.__dict__, n_rows=2).to_csv(plain, index=False)
    assert list(store.load(CELL)["value"]) == [4.0, 8.0] and list(store.read()["value"]) == [4.0, 8.0]
    store.write(CELL, rows(1.0))
    assert not plain.exists(), "recomputed: the plain file is replaced, not left beside the new one"
    assert list(store.read()["value"]) == [1.0, 2.0]
    plain.write_bytes(b"model,env,metric,step,value\nm,hopper,mse,1,99\n")  # both kinds of one cell
    assert list(store.read()["value"]) == [1.0, 2.0], "a cell counts once, as its gzipped file"


def test_stale_temporary_files_of_killed_writers_are_removed_on_the_next_write(tmp_path):
    store = ResultsStore(tmp_path)
    path = store.write(CELL, rows(1.0))
    dead, alive = path.with_name(f".{path.name}.999999999.tmp"), path.with_name(f".{path.name}.1.tmp")
    dead.write_bytes(b"half a fi")
    alive.write_bytes(b"being written")  # pid 1 is alive: its writer may still be at work
    store.write(CELL, rows(2.0))
    assert not dead.exists() and alive.exists()


def test_markdown_table():
    text = markdown_table(pd.DataFrame({"a": [1, 2], "b": [0.5, 0.25]}))
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.5 |", "| 2 | 0.25 |"]
