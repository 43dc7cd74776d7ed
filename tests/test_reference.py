"""The README's settings reference is generated from the settings model and kept current."""

from infra.reference import markdown, rows, update_readme
from infra.settings import Settings
from tests.conftest import ROOT


def test_readme_settings_reference_is_up_to_date() -> None:
    readme = (ROOT / "README.md").read_text()
    assert update_readme(readme) == readme, "run `make docs` to regenerate the settings reference"


def test_reference_lists_every_setting_of_the_model() -> None:
    keys = {row[0] for row in rows()}
    for field in Settings.model_fields.values():
        if field.alias and field.alias != "stack":
            assert any(k.endswith(field.alias) for k in keys), field.alias
    assert "`shipyard:heroku.app`" in markdown()
