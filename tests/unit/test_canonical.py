"""The one canonical JSON of corral: equal values are equal text, in either alphabet."""
import math

import pytest

from corral.canonical import canonical_bytes, canonical_json


def test_keys_are_sorted_without_spaces_and_utf8_is_kept_unless_ascii_is_asked():
    value = {"b": [1, 2.5], "a": {"é": "ü"}}
    assert canonical_json(value) == '{"a":{"é":"ü"},"b":[1,2.5]}'
    assert canonical_json(value, ascii_only=True) == '{"a":{"\\u00e9":"\\u00fc"},"b":[1,2.5]}'
    assert canonical_bytes(value) == canonical_json(value).encode("utf-8")


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_numbers_json_cannot_hold_are_refused(number):
    with pytest.raises(ValueError):
        canonical_json({"cpu": number})
