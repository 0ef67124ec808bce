"""What the tests share besides fixtures (those are in tests/conftest.py): the repository's root."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
