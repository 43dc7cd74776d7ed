"""`make docs`: regenerate the README's settings reference from the settings model."""

from pathlib import Path

from infra.reference import update_readme

readme = Path(__file__).resolve().parent.parent / "README.md"
readme.write_text(update_readme(readme.read_text()))
