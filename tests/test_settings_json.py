"""A checkpoint's settings as JSON text (symrnn.settings_json): plain values out, strict reading back."""

from __future__ import annotations

import numpy as np
import pytest

from symrnn.errors import CheckpointError
from symrnn.settings_json import settings_from_json, settings_to_json


def test_numpy_scalars_nested_dicts_and_lists_round_trip_as_plain_values():
    settings = {"HIDDEN_DIM": np.int64(128), "LEARNING_RATE": np.float32(0.25), "CELL": np.str_("gru"),
                "flags": [True, None, 3], "nested": {"a": (1.5, "x")}}
    back = settings_from_json("m.npz", settings_to_json(settings))
    assert back == {"HIDDEN_DIM": 128, "LEARNING_RATE": 0.25, "CELL": "gru", "flags": [True, None, 3],
                    "nested": {"a": [1.5, "x"]}}
    assert settings_to_json(None) == "{}"


@pytest.mark.parametrize("bad, words", [({"x": float("nan")}, "NaN and infinity"), ({1: 2}, "not str"),
                                        ({"x": object()}, "not JSON-serialisable")])
def test_values_that_are_not_json_are_refused_by_name(bad, words):
    with pytest.raises(TypeError, match=words):
        settings_to_json(bad)


@pytest.mark.parametrize("text, words", [('{"x": NaN}', "not valid JSON"), ("[1, 2]", "JSON list, not a JSON object"),
                                         ("{", "not valid JSON")])
def test_text_that_is_not_a_json_object_of_finite_values_is_a_checkpoint_error_naming_the_file(text, words):
    with pytest.raises(CheckpointError, match=words) as info:
        settings_from_json("model.npz", text)
    assert "'model.npz'" in str(info.value)
