"""docs/conventions.md is the users' reference: it must name every constant of handoffs.conventions."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from handoffs import conventions as c

DOC = Path(__file__).resolve().parents[2] / "docs" / "conventions.md"


def test_every_attribute_event_and_value_is_documented() -> None:
    text = DOC.read_text()
    names = [v for k, v in vars(c).items() if k.isupper() and isinstance(v, str)]
    values = [m.value for e in vars(c).values()
              if isinstance(e, type) and issubclass(e, Enum) and e is not Enum for m in e]
    missing = sorted({n for n in names + values if f"`{n}" not in text})
    assert not missing, f"add these to docs/conventions.md: {missing}"


def test_the_pointer_to_normalisation_is_there() -> None:
    text = DOC.read_text()
    assert "## Read from other instrumentations" in text and "normalisation.md" in text
