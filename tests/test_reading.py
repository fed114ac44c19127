"""Tests of symrnn.reading: CSV files, text files and folders; pipes, devices and size limits refused."""

import csv
import os

import pytest

from symrnn import reading
from symrnn.errors import DataError
from tests.test_bounded_inputs import fifo, finishes  # noqa: F401 - fifo is a fixture


def _listing(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def _write_bytes(folder, name, data):
    path = folder / name
    path.write_bytes(data)
    return path

# ---------------------------------------------------------------------------
# Reading CSV and text files
# ---------------------------------------------------------------------------


def test_read_csv_bodies_handles_quoting_commas_multiline_bodies_and_skips_header(tmp_path):
    content = (
        'body,score\n'
        '"Hello, world. Second sentence!",5\n'
        'plain body,3\n'
        '"a body with ""quotes"" inside",1\n'
        '"first line\nsecond line\r\nthird line",2\n'
        '\n'
        '  "leading space, quoted", 4\n'
    )
    path = tmp_path / "comments.csv"
    path.write_text(content, encoding="utf-8", newline="")
    assert reading.read_csv_bodies(path) == [
        "Hello, world. Second sentence!",
        "plain body",
        'a body with "quotes" inside',
        "first line\nsecond line\r\nthird line",
        "leading space, quoted",
    ]


def test_read_csv_bodies_skips_rows_with_an_empty_body(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('body\n"",1\nkept\n   \n', encoding="utf-8")
    assert reading.read_csv_bodies(path) == ["kept"]


def test_read_csv_bodies_accepts_a_byte_order_mark(tmp_path):
    path = _write_bytes(tmp_path, "bom.csv", "\ufeffbody\nhi there\n".encode("utf-8"))
    assert reading.read_csv_bodies(path) == ["hi there"]


BAD_CSV_FILES = {
    "empty": b"",
    "whitespace_only": b"  \n\n",
    "binary": b"body\nabc\x00def\n",
    "not_utf8": b"body\ncaf\xe9 au lait\n",
    "header_only": b"body,score\n",
    "empty_bodies": b'body,score\n"",1\n,2\n',
    "unclosed_quote": b'body\n"this quote never ends\nmore text\n',
}


@pytest.mark.parametrize("case", sorted(BAD_CSV_FILES))
def test_read_csv_bodies_rejects_a_bad_file_with_data_error_and_writes_nothing(tmp_path, case):
    path = _write_bytes(tmp_path, f"{case}.csv", BAD_CSV_FILES[case])
    before = _listing(tmp_path)
    with pytest.raises(DataError) as info:
        reading.read_csv_bodies(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert _listing(tmp_path) == before


def test_read_csv_bodies_rejects_a_missing_file_and_a_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        reading.read_csv_bodies(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="directory"):
        reading.read_csv_bodies(tmp_path)
    assert _listing(tmp_path) == []


def test_read_text_documents_gives_one_document_per_non_empty_line(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("First doc. Two sentences.\n\n   \n  second doc  \r\nthird\n", encoding="utf-8")
    assert reading.read_text_documents(path) == ["First doc. Two sentences.", "second doc", "third"]


BAD_TEXT_FILES = {
    "empty": b"",
    "whitespace_only": b" \n\t\n  \n",
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00",
    "not_utf8": b"na\xefve text\n",
}


@pytest.mark.parametrize("case", sorted(BAD_TEXT_FILES))
def test_read_text_documents_rejects_a_bad_file_with_data_error_and_writes_nothing(tmp_path, case):
    path = _write_bytes(tmp_path, f"{case}.txt", BAD_TEXT_FILES[case])
    before = _listing(tmp_path)
    with pytest.raises(DataError) as info:
        reading.read_text_documents(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert _listing(tmp_path) == before


def test_read_text_documents_rejects_a_missing_file_and_a_directory(tmp_path):
    with pytest.raises(DataError):
        reading.read_text_documents(tmp_path / "missing.txt")
    with pytest.raises(DataError):
        reading.read_text_documents(tmp_path)


def test_read_documents_dispatches_on_a_csv_suffix_in_any_case(tmp_path):
    path = tmp_path / "DATA.CSV"
    path.write_text("body\nfrom csv\n", encoding="utf-8")
    assert reading.read_documents(path) == ["from csv"]
    other = tmp_path / "data.text"
    other.write_text("body\nfrom text\n", encoding="utf-8")
    assert reading.read_documents(other) == ["body", "from text"]


def test_read_documents_reads_txt_and_csv_files_of_a_folder_in_sorted_order(tmp_path):
    (tmp_path / "b.csv").write_text("body\nfrom b\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("from a\n", encoding="utf-8")
    (tmp_path / "c.md").write_text("ignored\n", encoding="utf-8")
    (tmp_path / "d.txt").write_text("", encoding="utf-8")  # skipped: no text
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.txt").write_text("not read\n", encoding="utf-8")
    assert reading.read_documents(tmp_path) == ["from a", "from b"]


def test_read_documents_rejects_a_folder_without_text_files(tmp_path):
    (tmp_path / "notes.md").write_text("text but wrong suffix\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError, match="no .txt or .csv"):
        reading.read_documents(tmp_path)


def test_read_documents_rejects_a_missing_path_and_a_binary_file_in_a_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        reading.read_documents(tmp_path / "missing")
    (tmp_path / "ok.txt").write_text("fine\n", encoding="utf-8")
    _write_bytes(tmp_path, "z.txt", b"\x00\x01\x02")
    with pytest.raises(DataError, match="binary"):
        reading.read_documents(tmp_path)



# ---------------------------------------------------------------------------
# Pipes, devices and the data size limit
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_never_ending_device_as_data_is_refused_before_reading(device):
    if not os.path.exists(device):
        pytest.skip(f"{device} does not exist here")
    with pytest.raises(DataError, match="character device"):
        reading.read_documents(device)


def test_a_named_pipe_as_data_is_refused_without_blocking(fifo):
    error = finishes(lambda: reading.read_documents(fifo))
    assert isinstance(error, DataError) and "named pipe" in str(error), error


def test_a_data_file_over_the_limit_is_refused_naming_the_setting(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("word " * 100, encoding="utf-8")
    with pytest.raises(DataError, match="MAX_DATA_MB"):
        reading.read_documents(path, max_bytes=499)
    assert reading.read_documents(path, max_bytes=500) == [("word " * 100).strip()]


def test_the_limit_counts_a_folders_files_together(tmp_path):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("x" * 59 + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="MAX_DATA_MB"):
        reading.read_documents(tmp_path, max_bytes=100)
    assert len(reading.read_documents(tmp_path, max_bytes=120)) == 2


# ---------------------------------------------------------------------------
# CSV fields over the csv module's default limit
# ---------------------------------------------------------------------------


def test_a_csv_field_over_128_kib_is_read_and_the_process_wide_limit_is_left_alone(tmp_path):
    body = "word " * 60_000  # 300 KB
    path = tmp_path / "long.csv"
    path.write_text(f'body\n"{body}"\nshort one\n', encoding="utf-8")
    limit = csv.field_size_limit()
    assert reading.read_csv_bodies(path) == [body, "short one"]
    assert csv.field_size_limit() == limit
    bad = tmp_path / "bad.csv"
    bad.write_text(f'body\n"{body}\n', encoding="utf-8")
    with pytest.raises(DataError, match="never closed"):
        reading.read_csv_bodies(bad)
    assert csv.field_size_limit() == limit

