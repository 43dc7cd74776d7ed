"""Settings as people write them: instance types checked against the AWS provider's own list, and
config vars that YAML reads as numbers or booleans taken as the text Heroku stores."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.offline.engine import read_stack_config
from infra.settings import ec2_instance_types, parse_settings
from tests.conftest import PROJECT
from tests.test_settings import base, parse, problems

PROTECTED = {"protectedOnly": True}
AWS = f"pulumi-aws {version('pulumi-aws')}"  # the pinned provider, whose list of types is the rule

# --- instance types ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["runner", "reviewRunner"])
def test_an_unknown_instance_type_names_the_key_the_value_and_real_types_close_to_it(key: str) -> None:
    runners: dict[str, Any] = {"runner": {"instanceType": "t3.large", **PROTECTED}}
    runners[key] = {**runners.get(key, {}), "instanceType": "t3.hugee"}
    assert problems(base(**runners)) == [
        f"shipyard:{key}.instanceType: 't3.hugee' is not an EC2 instance type that {AWS} knows; "
        "did you mean t3.large, t3.xlarge or t3.2xlarge?"
    ]


def test_an_instance_type_of_the_right_shape_that_aws_does_not_offer_is_refused() -> None:
    # t3.huge looks like an instance type; only the provider's list knows there is none.
    found = problems(base(runner={"instanceType": "t3.huge", **PROTECTED}))
    assert len(found) == 1 and "did you mean t3.large" in found[0], found


def test_a_type_without_a_close_match_gets_an_example() -> None:
    found = problems(base(runner={"instanceType": "quantum", **PROTECTED}))
    assert found == [
        f"shipyard:runner.instanceType: 'quantum' is not an EC2 instance type that {AWS} knows, such as t3.medium"
    ]


@pytest.mark.parametrize("instance_type", ["t3.large", "m7i.large", "c7a.2xlarge", "m7i-flex.large", "t3a.nano"])
def test_instance_types_the_provider_lists_are_accepted(instance_type: str) -> None:
    assert parse(base(runner={"instanceType": instance_type, **PROTECTED})).runner.instance_type == instance_type


def test_an_unknown_type_is_not_also_called_a_graviton_type() -> None:  # guards R22
    # `large` has a `g` where a family's Graviton letter would be; it is no family at all.
    found = problems(base(runner={"instanceType": "large", **PROTECTED}))
    assert len(found) == 1 and "did you mean t3.large" in found[0], found


def test_the_list_of_instance_types_is_read_once() -> None:
    assert ec2_instance_types() is ec2_instance_types()


# --- Heroku config vars ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"), [(3, "3"), (True, "true"), (False, "false"), (0.5, "0.5"), ("info", "info"), ("", "")]
)
def test_config_vars_are_the_text_heroku_stores(value: Any, text: str) -> None:
    settings = parse(base(heroku={"configVars": {"WEB_CONCURRENCY": value}}))
    assert settings.heroku.config_vars == {"WEB_CONCURRENCY": text}


def test_numbers_and_booleans_from_a_stack_file_become_text(tmp_path: Path) -> None:
    # What `pulumi config set --path heroku.configVars.WEB_CONCURRENCY 3` (and `… DEBUG true`) write.
    path = tmp_path / "Pulumi.staging.yaml"
    config = base()
    config["shipyard:heroku"]["configVars"] = {"WEB_CONCURRENCY": 3, "DEBUG": True, "RATIO": 0.5}
    path.write_text(yaml.safe_dump({"config": config}))
    read = read_stack_config(PROJECT, "staging", path)
    settings = parse_settings(read.values, {"shipyard:herokuApiKey"}, "staging")
    assert settings.heroku.config_vars == {"WEB_CONCURRENCY": "3", "DEBUG": "true", "RATIO": "0.5"}


ALLOWED = "must be a string, number or true/false (Heroku stores text)"


def test_lists_maps_and_null_are_refused_each_with_its_key() -> None:
    config_vars = {"HOSTS": ["a", "b"], "LIMITS": {"cpu": 1}, "EMPTY": None, "OK": 1}
    assert sorted(problems(base(heroku={"configVars": config_vars}))) == [
        f"shipyard:heroku.configVars.EMPTY: {ALLOWED}, not null: remove the key to leave the variable unset",
        f"shipyard:heroku.configVars.HOSTS: {ALLOWED}, not a list",
        f"shipyard:heroku.configVars.LIMITS: {ALLOWED}, not a map",
    ]


SECRET = {"shipyard:herokuApiKey", "shipyard:herokuSensitiveConfigVars"}


def test_sensitive_config_vars_take_numbers_as_text_too() -> None:
    config = base()
    config["shipyard:herokuSensitiveConfigVars"] = {"PIN": 1234, "STRICT": True}
    settings = parse(config, secret=SECRET)
    assert {k: v.get_secret_value() for k, v in settings.heroku_sensitive_config_vars.items()} == {
        "PIN": "1234",
        "STRICT": "true",
    }


def test_a_sensitive_config_var_list_is_refused_without_showing_it() -> None:
    config = base()
    config["shipyard:herokuSensitiveConfigVars"] = {"KEYS": ["hunter2-canary"]}
    found = problems(config, secret=SECRET)
    assert found == [f"shipyard:herokuSensitiveConfigVars.KEYS: {ALLOWED}, not a list"]
