"""Method specifications: a registered name with hyperparameter overrides, as one string.

``circuitkv+temperature=0.5+max_steps=inf`` names CircuitKV with T = 0.5 and
no step limit. Values are parsed by the type of the field they set: integers,
floats, booleans (``true``/``false``), strings, and ``inf`` or ``none`` for a
field that accepts None. The string is also the method's label in result file
names, so it uses only characters that every file system accepts.
"""

from __future__ import annotations

import dataclasses

SEPARATOR = "+"
NO_LIMIT = ("inf", "none")


def parse_spec(spec: str, registry: dict) -> tuple[str, dict]:
    """Split ``spec`` into a registered method name and typed hyperparameter overrides."""
    name, *assignments = spec.strip().split(SEPARATOR)
    if name not in registry:
        where = "" if name == spec.strip() else f" in {spec!r}"
        raise ValueError(f"Unknown method {name!r}{where}; available: {', '.join(registry)}.")
    fields = {field.name: field for field in dataclasses.fields(registry[name])}

    overrides = {}
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        if not equals or not key or not text:
            raise ValueError(f"Method {spec!r}: expected KEY=VALUE after '{SEPARATOR}', got {assignment!r}.")
        if key not in fields:
            raise ValueError(f"Method {spec!r}: {name} has no hyperparameter {key!r}; it has {', '.join(fields)}.")
        overrides[key] = _parse_value(text, str(fields[key].type), f"Method {spec!r}, {key}")
    return name, overrides


def _parse_value(text: str, annotation: str, where: str):
    lowered = text.lower()
    if "None" in annotation and lowered in NO_LIMIT:
        return None
    try:
        if annotation.startswith("bool"):
            if lowered not in ("true", "false"):
                raise ValueError
            return lowered == "true"
        if annotation.startswith("int"):
            return int(text)
        if annotation.startswith("float"):
            return float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a valid {annotation}.") from None
    return text


def format_spec(name: str, overrides: dict) -> str:
    """The canonical spec string: the name, then overrides sorted by key."""
    parts = [name]
    for key in sorted(overrides):
        value = overrides[key]
        if value is None:
            text = "inf"
        elif isinstance(value, bool):
            text = str(value).lower()
        else:
            text = str(value)
        parts.append(f"{key}={text}")
    return SEPARATOR.join(parts)
