"""Read a YAML file of the paper's content into a pydantic model, with errors that name the file and the field.

A problem reads ``paper/content/paper.yaml: ablation.rows[2].method: missing``:
the path relative to the repository, the field's location, and what is wrong
in the words of the person who edits the file, not pydantic's.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

REPOSITORY = Path(__file__).resolve().parents[2]


def display_path(path: Path) -> str:
    """Return ``path`` for messages: relative to the repository where it lies inside it, else as given."""
    resolved = path.resolve()
    if resolved.is_relative_to(REPOSITORY):
        return str(resolved.relative_to(REPOSITORY))
    return str(path)


def _type_name(value) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def _location(parts) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text


_MESSAGE_FIELD = re.compile(r"([A-Za-z_][\w.\[\]]*): (.*)", re.DOTALL)


def _problem(item: dict) -> str:
    """Format one pydantic error as ``field: problem`` in the words of the map's editors."""
    kind = item["type"]
    if kind == "missing":
        problem = "missing"
    elif kind == "extra_forbidden":
        problem = "unknown field"
    elif kind in ("string_type", "bool_type", "list_type", "model_type", "dict_type"):
        expected = {
            "string_type": "text",
            "bool_type": "true or false",
            "list_type": "a list",
            "model_type": "a mapping",
            "dict_type": "a mapping",
        }[kind]
        problem = f"expected {expected}, got {_type_name(item['input'])}"
    elif kind == "value_error":
        problem = item["msg"].removeprefix("Value error, ")
    elif kind == "too_short":
        problem = "empty; list at least one item"
    elif kind == "string_too_short":
        problem = "empty"
    else:
        problem = item["msg"]
    location = _location(item["loc"])
    # Pydantic reports a model-level check at the model, so such checks start their message with
    # the field (``name_latex: missing``), which joins the model's location here.
    field = _MESSAGE_FIELD.match(problem)
    if field:
        location = f"{location}.{field.group(1)}" if location else field.group(1)
        problem = field.group(2)
    return f"{location}: {problem}" if location else problem


def read_model(path: Path, model: type[BaseModel], error: type[Exception], expected: str):
    """Validate the YAML file ``path`` as ``model``; raise ``error`` naming the file and field on any problem.

    ``expected`` describes the top level for a file that is not a mapping.
    """
    shown = display_path(path)
    if not path.is_file():
        raise error(f"{shown} not found; the repository ships it, so restore it with git.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as problem:
        raise error(f"{shown}: not valid YAML ({problem}).") from None
    if not isinstance(data, dict):
        raise error(f"{shown}: expected {expected}.")
    try:
        return model.model_validate(data)
    except ValidationError as problem:
        raise error(f"{shown}: {'; '.join(_problem(item) for item in problem.errors())}.") from None
