from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flywheel.core.errors import DataError
from flywheel.data import load_table, sniff_delimiter
from tests.conftest import CHURN


def test_csv_and_parquet_of_the_same_table_load_alike(tmp_path: Path, mixed: pd.DataFrame) -> None:
    mixed.to_csv(tmp_path / "d.csv", index=False)
    mixed.to_parquet(tmp_path / "d.parquet")
    a, b = load_table(tmp_path / "d.csv"), load_table(tmp_path / "d.parquet")
    assert list(a.columns) == list(b.columns) and len(a) == len(b) == len(mixed)


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_table(tmp_path / "nope.csv")


def test_unsupported_extension_names_the_formats(tmp_path: Path) -> None:
    (tmp_path / "d.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="unsupported file type '.xlsx'.*CSV.*Parquet"):
        load_table(tmp_path / "d.xlsx")


def test_empty_file_says_it_is_empty(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_table(tmp_path / "d.csv")


def test_corrupt_parquet_is_reported_as_corrupt(tmp_path: Path) -> None:
    (tmp_path / "d.parquet").write_bytes(CHURN.read_bytes()[:700])
    with pytest.raises(DataError, match="cannot be read as Parquet"):
        load_table(tmp_path / "d.parquet")


def test_non_utf8_csv_suggests_an_encoding_and_reads_with_it(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes("city,n\nZürich,1\nGenève,2\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid utf-8.*--encoding"):
        load_table(tmp_path / "d.csv")
    frame = load_table(tmp_path / "d.csv", encoding="latin-1")
    assert frame["city"].tolist() == ["Zürich", "Genève"]


def test_ragged_csv_is_a_parse_error(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n1,2,3\n4\n")
    with pytest.raises(DataError, match="cannot be parsed as CSV"):
        load_table(tmp_path / "d.csv")


def test_header_only_csv_loads_as_an_empty_table(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n")
    assert load_table(tmp_path / "d.csv").shape == (0, 2)


def test_duplicate_column_names_are_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table([pa.array([1]), pa.array([2])], names=["a", "a"]),
                   tmp_path / "d.parquet")
    with pytest.raises(DataError, match="duplicate column names"):
        load_table(tmp_path / "d.parquet")


@pytest.mark.parametrize(("delimiter", "suffix"), [(";", ".csv"), ("|", ".csv"), ("\t", ".txt"),
                                                   (";", ".csv.gz"), (",", ".csv")])
def test_the_delimiter_is_read_from_the_header(tmp_path: Path, mixed: pd.DataFrame,
                                               delimiter: str, suffix: str) -> None:
    path = tmp_path / f"d{suffix}"
    mixed.to_csv(path, sep=delimiter, index=False)
    frame = load_table(path)
    assert list(frame.columns) == list(mixed.columns) and len(frame) == len(mixed)
    assert sniff_delimiter(path) == delimiter


def test_a_quoted_comma_does_not_fool_the_delimiter_sniffer(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('name;city;amount\n"Smith, J";"Paris, FR";1,5\n"Li, K";Rome;2,0\n')
    assert sniff_delimiter(path) == ";"
    frame = load_table(path)
    assert list(frame.columns) == ["name", "city", "amount"]
    assert frame["name"].tolist() == ["Smith, J", "Li, K"]


def test_a_delimiter_that_leaves_one_delimited_looking_column_is_refused_naming_the_fix(
        tmp_path: Path, mixed: pd.DataFrame) -> None:
    path = tmp_path / "d.csv"
    mixed.to_csv(path, sep=";", index=False)
    with pytest.raises(DataError) as caught:
        load_table(path, delimiter=",")
    message = str(caught.value)
    assert "reads as one column" in message and "looks ';'-delimited" in message
    assert 'data.delimiter: ";"' in message
    assert list(load_table(path, delimiter=";").columns) == list(mixed.columns)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_gzip_csv_is_a_data_error_saying_it_cannot_be_decompressed(
        tmp_path: Path, mixed: pd.DataFrame, damage: str) -> None:
    whole = tmp_path / "whole.csv.gz"
    pd.concat([mixed] * 20).to_csv(whole, index=False)
    data = bytearray(whole.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[200:240] = b"x" * 40
    path = tmp_path / "d.csv.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="cannot be decompressed .*truncated or corrupt"):
        load_table(path)
