"""The settings of a checkpoint as JSON text: written from plain values, read back strictly.

:func:`settings_to_json` turns a settings dict (str keys; bool, int, finite
float, str, None, lists, nested dicts, NumPy scalars) into JSON text and raises
TypeError naming the first value that is not JSON. :func:`settings_from_json`
reads such text back into a dict, refusing NaN, infinity and anything but a
JSON object with a :class:`symrnn.errors.CheckpointError` that names the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from symrnn.errors import CheckpointError

__all__ = ["settings_from_json", "settings_to_json"]


def _json_value(value: Any, where: str) -> Any:
    """Return `value` as plain JSON types, or raise TypeError saying why not."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_, np.void)):
        value = value.item()
        if isinstance(value, (bool, str)) or value is None:
            return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"settings value {where} is {value!r}; NaN and infinity are not JSON")
        return float(value)
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"settings key {key!r} in {where} is {type(key).__name__}, not str")
            result[key] = _json_value(item, f"{where}[{key!r}]")
        return result
    if isinstance(value, (list, tuple)):
        return [_json_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"settings value {where} is {type(value).__name__} ({value!r}), which is not JSON-serialisable")


def settings_to_json(settings: Mapping[str, Any] | None) -> str:
    """The settings dict (None: empty) as JSON text; TypeError naming a value that is not JSON."""
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise TypeError(f"settings must be a dict, not {type(settings).__name__}")
    plain = _json_value(settings, "settings")
    return json.dumps(plain, allow_nan=False, ensure_ascii=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def settings_from_json(path: str, text: str) -> dict:
    """The settings dict read from JSON ``text`` of the model file ``path``.

    Raises
    ------
    CheckpointError
        If the text is not JSON, holds NaN or infinity, or is not a JSON object.
    """
    try:
        settings = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(
            f"model file {path!r} has settings that are not valid JSON ({' '.join(str(exc).split())[:120]}); "
            "re-save the model"
        ) from exc
    if not isinstance(settings, dict):
        raise CheckpointError(
            f"model file {path!r} has settings that are a JSON {type(settings).__name__}, not a JSON object; "
            "re-save the model"
        )
    return settings
