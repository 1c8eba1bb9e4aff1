"""The units an app spec is written in: durations, memory, cpu and scale.

Pure functions, no I/O. Each raises ValueError with one sentence naming the
value when it cannot read it. The schema accepts the same shapes, so a
document that passed the loader never makes these raise.
"""
import math
import re

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
_MEMORY = re.compile(r"^([0-9]+)(Ki|Mi|Gi)?$")
_MEMORY_UNITS = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
_CPU = re.compile(r"^(?:([0-9]+(?:\.[0-9]+)?)|([0-9]+)m)$")
_PERCENT = re.compile(r"^([0-9]+)%$")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_duration(value):
    """Seconds (a float) for ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"`` or a whole number of seconds."""
    if _is_number(value) and value >= 0 and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ValueError(f"{value!r} is not a duration (like 500ms, 30s, 5m, 1h, or whole seconds)")


def format_duration(seconds):
    """The shortest duration string that :func:`parse_duration` reads back as ``seconds``.

    Whole hours, minutes and seconds use their unit; anything else is written in
    milliseconds (``1.5`` -> ``"1500ms"``). ValueError for a negative value or
    one finer than a millisecond.
    """
    if not _is_number(seconds) or seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"{seconds!r} is not a non-negative number of seconds")
    millis = round(seconds * 1000)
    if abs(millis - seconds * 1000) > 1e-6 * max(1.0, seconds * 1000):
        raise ValueError(f"{seconds!r} seconds is finer than a millisecond and has no duration string")
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    for unit, size in (("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def parse_memory(value):
    """Bytes (an int) for an integer, a digit string, or a number with ``Ki``, ``Mi`` or ``Gi``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _MEMORY.match(value)
        if match:
            return int(match.group(1)) * _MEMORY_UNITS[match.group(2)]
    raise ValueError(f"{value!r} is not an amount of memory (bytes, or a number with Ki, Mi or Gi, like 256Mi)")


def format_memory(n, exact=False):
    """``n`` bytes as a spec writes memory. ``exact``: in the largest of Gi, Mi and Ki that divides
    it (``512Mi``), else in bytes (``1000 bytes``), for sentences a user acts on; otherwise with one
    decimal in the largest of Gi and Mi it reaches (``1.5Gi``), else in bytes, for tables."""
    n = int(n or 0)
    if exact:
        for unit in ("Gi", "Mi", "Ki"):
            if n >= _MEMORY_UNITS[unit] and n % _MEMORY_UNITS[unit] == 0:
                return f"{n // _MEMORY_UNITS[unit]}{unit}"
        return f"{n} bytes"
    for unit in ("Gi", "Mi"):
        if n >= _MEMORY_UNITS[unit]:
            return f"{n / _MEMORY_UNITS[unit]:.1f}{unit}"
    return str(n)


def format_size(n):
    """``n`` bytes in MiB with one decimal (``1.3 MiB``), for the sentences about size limits."""
    return f"{n / (1 << 20):.1f} MiB"


def parse_cpu(value):
    """Cores (a float) for a number, a decimal string, or millicores like ``"500m"``."""
    if _is_number(value) and value >= 0 and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        match = _CPU.match(value)
        if match:
            return float(match.group(1)) if match.group(1) else int(match.group(2)) / 1000
    raise ValueError(f"{value!r} is not a number of cores (like 0.5, 2 or 500m)")


def parse_scale(value, total, round_up):
    """The number of instances that ``value`` (an int, or ``"NN%"`` of ``total``) stands for.

    Percentages round as Kubernetes does: up for maxSurge (``round_up=True``),
    down for maxUnavailable. With 10 instances, "25%" is 2.5: maxSurge 3,
    maxUnavailable 2. With 1 instance: maxSurge 1, maxUnavailable 0.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if match:
            numerator = int(match.group(1)) * total
            return -(-numerator // 100) if round_up else numerator // 100
    raise ValueError(f"{value!r} is not a whole number of instances or a percentage (like 1 or \"25%\")")


def rollout_limits(update, total):
    """``(max_surge, max_unavailable)`` in instances for an ``update`` policy and ``total`` instances.

    maxSurge rounds up, maxUnavailable down; when both come out 0 the surge is
    raised to 1 so that a rollout can always move. Worked example: 10
    instances with the defaults (25%, 25%) give (3, 2): up to 13 instances
    exist at once and at least 8 are available. 1 instance with the defaults
    gives (1, 0); 0 instances give (1, 0) as well.
    """
    surge = parse_scale(update.get("maxSurge", "25%"), total, round_up=True)
    unavailable = parse_scale(update.get("maxUnavailable", "25%"), total, round_up=False)
    if surge == 0 and unavailable == 0:
        surge = 1
    return surge, unavailable
