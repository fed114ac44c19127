"""Tests of symrnn.token_cache: a damaged, foreign or unwritable cache is ignored with a warning, never trusted."""

import hashlib
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from symrnn import files, token_cache
from symrnn.corpus import load_corpus
from symrnn.reading import read_documents
from symrnn.token_cache import tokenize_with_cache
from tests.test_bounded_inputs import TEXT_A, TEXT_B, finishes


def only_cache_file(folder: Path) -> Path:
    (path,) = folder.glob("tokens-*.json")
    return path


@pytest.fixture()
def corpus_files(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(TEXT_A, encoding="utf-8")
    b.write_text(TEXT_B, encoding="utf-8")
    return a, b, tmp_path / "cache"


def test_a_cache_file_holding_another_corpus_is_ignored_and_rebuilt(corpus_files, caplog):
    a, b, cache = corpus_files
    load_corpus(a, vocabulary_size=50, cache_dir=cache)
    a_cache = only_cache_file(cache)
    a_bytes = a_cache.read_bytes()
    a_cache.unlink()
    expected = load_corpus(b, vocabulary_size=50).sentences
    load_corpus(b, vocabulary_size=50, cache_dir=cache)
    only_cache_file(cache).write_bytes(a_bytes)  # B's cache path, A's tokens
    with caplog.at_level(logging.WARNING, logger="symrnn.token_cache"):
        assert load_corpus(b, vocabulary_size=50, cache_dir=cache).sentences == expected
    assert "token cache" in caplog.text and "other documents" in caplog.text
    assert token_cache._parse_token_cache(only_cache_file(cache).read_bytes(), token_cache._token_cache_key(
        read_documents(b), 0, "word"))[1] is None


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "not json", "empty sentences"])
def test_a_damaged_cache_warns_about_the_cache_and_is_rebuilt(corpus_files, caplog, damage):
    a, _, cache = corpus_files
    expected = load_corpus(a, vocabulary_size=50, cache_dir=cache).sentences
    path = only_cache_file(cache)
    raw = path.read_bytes()
    if damage == "flipped byte":
        raw = raw[:-5] + bytes([raw[-5] ^ 1]) + raw[-4:]
    elif damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "not json":
        raw = b"\xff\xfe garbage"
    else:  # a correct checksum over sentences that are not marked token lists
        payload = json.dumps([[]] * len(expected)).encode()
        header = json.loads(raw.partition(b"\n")[0])
        header["sha256"] = hashlib.sha256(payload).hexdigest()
        raw = json.dumps(header).encode() + b"\n" + payload
    path.write_bytes(raw)
    with caplog.at_level(logging.WARNING, logger="symrnn.token_cache"):
        assert load_corpus(a, vocabulary_size=50, cache_dir=cache).sentences == expected
    assert "ignoring the token cache" in caplog.text
    assert path.read_bytes() != raw  # rewritten
    assert sorted(p.name for p in cache.iterdir()) == [path.name]


def test_the_cache_key_includes_the_symrnn_version(corpus_files, monkeypatch):
    a, _, cache = corpus_files
    monkeypatch.setattr(token_cache, "_symrnn_version", lambda: "1.0")
    load_corpus(a, vocabulary_size=50, cache_dir=cache)
    monkeypatch.setattr(token_cache, "_symrnn_version", lambda: "1.1")
    load_corpus(a, vocabulary_size=50, cache_dir=cache)
    assert len(list(cache.glob("tokens-*.json"))) == 2


def test_a_failed_cache_write_only_warns_and_leaves_no_temporary_file(corpus_files, monkeypatch, caplog):
    a, _, cache = corpus_files
    cache.mkdir()

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    with caplog.at_level(logging.WARNING, logger="symrnn.token_cache"):
        corpus = load_corpus(a, vocabulary_size=50, cache_dir=cache)
    assert len(corpus) == 3
    assert "could not write the token cache" in caplog.text and "No space left" in caplog.text
    assert list(cache.iterdir()) == []


def test_a_cache_folder_that_is_a_file_only_warns(corpus_files, caplog):
    a, _, cache = corpus_files
    cache.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="symrnn.token_cache"):
        assert len(load_corpus(a, vocabulary_size=50, cache_dir=cache)) == 3
    assert "could not write the token cache" in caplog.text
    assert cache.read_text() == "not a folder"



def cache_path_of(documents_file: Path, cache: Path) -> Path:
    key = token_cache._token_cache_key(read_documents(documents_file), 0, "word")
    return cache / f"tokens-{key[:32]}.json"


@pytest.mark.parametrize("kind, what", [("fifo", "a named pipe"), ("folder", "a directory"),
                                        ("device", "a character device")])
def test_a_pipe_folder_or_device_at_the_cache_path_is_ignored_naming_what_it_is(corpus_files, caplog, kind, what):
    a, _, cache = corpus_files
    expected = tokenize_with_cache(read_documents(a))
    path = cache_path_of(a, cache)
    cache.mkdir()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        if not os.path.exists("/dev/zero"):
            pytest.skip("/dev/zero does not exist here")
        path.symlink_to("/dev/zero")
    with caplog.at_level(logging.WARNING, logger="symrnn.token_cache"):
        outcome = finishes(lambda: tokenize_with_cache(read_documents(a), cache_dir=cache))
    assert outcome is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"ignoring the token cache {path} (it is {what}" in warnings[0] and "not a regular file" in warnings[0]
    assert "Errno" not in warnings[0] and "None" not in warnings[0]
    assert tokenize_with_cache(read_documents(a), cache_dir=cache) == expected
    assert {"fifo": stat.S_ISFIFO, "folder": stat.S_ISDIR, "device": stat.S_ISCHR}[kind](os.stat(path).st_mode)


def test_a_cache_larger_than_its_documents_can_need_is_ignored_unread_and_rebuilt(corpus_files, caplog, monkeypatch):
    a, _, cache = corpus_files
    expected = tokenize_with_cache(read_documents(a), cache_dir=cache)
    path = only_cache_file(cache)
    limit = token_cache._largest_cache_bytes(read_documents(a))
    os.truncate(path, limit + 1)  # a damaged file: its header, then zeros
    parsed = []
    real_parse = token_cache._parse_token_cache
    monkeypatch.setattr(token_cache, "_parse_token_cache", lambda raw, key: parsed.append(len(raw)) or real_parse(raw, key))
    with caplog.at_level(logging.WARNING, logger="symrnn.token_cache"):
        assert tokenize_with_cache(read_documents(a), cache_dir=cache) == expected
    assert parsed == []
    assert "ignoring the token cache" in caplog.text and "more than a cache of these documents can" in caplog.text
    assert path.stat().st_size < limit  # rewritten
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="symrnn.token_cache"):
        assert tokenize_with_cache(read_documents(a), cache_dir=cache) == expected
    assert parsed and caplog.text == ""


@pytest.mark.parametrize("tokens", ["word", "char"])
def test_the_size_bound_holds_the_cache_of_documents_that_expand_most_in_json(tmp_path, caplog, tokens):
    # One-character sentences, astral and control characters, quotes and backslashes.
    documents = ["! ! ! ! ! ? ? ? . . .", ".", "\U0001F600" * 30, "\x01\x02 \x03." * 10, '"\\"\\' * 20, "\u0130" * 20]
    data = tmp_path / "odd.txt"
    data.write_text("\n".join(documents) + "\n", encoding="utf-8")
    cache = tmp_path / "cache"
    expected = tokenize_with_cache(read_documents(data), tokens, cache_dir=cache)
    slack = token_cache._CACHE_SLACK_BYTES
    assert only_cache_file(cache).stat().st_size <= token_cache._largest_cache_bytes(read_documents(data)) - slack
    with caplog.at_level(logging.WARNING, logger="symrnn.token_cache"):
        assert tokenize_with_cache(read_documents(data), tokens, cache_dir=cache) == expected
    assert caplog.text == ""
