"""The settings model: every rule of the config contract, and the mistakes people really make."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.settings import SettingsError, maskable_problem, parse_settings

API_KEY = "HRKU-settingsTestKey0123456789"


def base(**overrides: Any) -> dict[str, Any]:
    heroku = {"app": "acme-web-staging", "region": "eu", "pipeline": "acme-web"}
    config: dict[str, Any] = {
        "aws:region": "eu-west-1",
        "shipyard:environment": "staging",
        "shipyard:gitlabProject": "acme/web",
        "shipyard:heroku": heroku,
        "shipyard:registry": {"name": "acme/web"},
        "shipyard:herokuApiKey": API_KEY,
    }
    for key, value in overrides.items():
        full = key if ":" in key else f"shipyard:{key}"
        if value is None:
            config.pop(full, None)
        elif isinstance(value, dict) and isinstance(config.get(full), dict):
            config[full] = {**config[full], **value}
        else:
            config[full] = value
    return config


def parse(config: dict[str, Any], secret: set[str] | None = None) -> Any:
    flat = {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in config.items()}
    keys = {"shipyard:herokuApiKey"} if secret is None else secret
    return parse_settings(flat, keys, "staging")


def problems(config: dict[str, Any], secret: set[str] | None = None) -> list[str]:
    with pytest.raises(SettingsError) as info:
        parse(config, secret)
    return info.value.problems


def test_valid_build_stack_settings_parse_with_defaults() -> None:
    settings = parse(base())
    assert settings.is_build_stack
    assert settings.registry.keep_images == 30
    assert settings.features == []  # no preboot on staging unless asked
    assert settings.heroku_api_key.get_secret_value() == API_KEY


def test_production_gets_preboot_by_default() -> None:
    settings = parse(base(environment="production", registry=None, buildStack="organization/shipyard/staging"))
    assert settings.features == ["preboot"]
    assert settings.is_production


def test_settings_error_is_a_pulumi_run_error() -> None:  # guards P8
    import pulumi

    assert issubclass(SettingsError, pulumi.RunError)


# (override, key the message must name, a phrase saying what is allowed)
MISTAKES = [
    ({"heroku": {"app": "Acme_Web"}}, "shipyard:heroku.app", "lowercase"),  # guards H1
    ({"heroku": {"app": "ab"}}, "shipyard:heroku.app", "3 to 30"),  # guards H1
    ({"heroku": {"app": "a" * 31}}, "shipyard:heroku.app", "3 to 30"),  # guards H1
    ({"heroku": {"app": "acme-web-"}}, "shipyard:heroku.app", "lowercase"),  # guards H1
    ({"heroku": {"app": "acme-web\n"}}, "shipyard:heroku.app", "lowercase"),  # guards H1
    ({"heroku": {"pipeline": "ab"}}, "shipyard:heroku.pipeline", "3 to 30"),  # guards H1
    ({"heroku": {"region": "eu-west-1"}}, "shipyard:heroku.region", "'us' or 'eu'"),
    ({"heroku": {"configVars": {"BAD-KEY": "x"}}}, "shipyard:heroku.configVars.BAD-KEY", "underscores"),
    ({"heroku": {"formation": {"web": {"size": "huge", "quantity": 1}}}}, "shipyard:heroku.formation.web", "size"),
    ({"heroku": {"formation": {"web": {"size": "basic", "quantity": 3}}}}, "shipyard:heroku.formation.web", "one"),
    ({"heroku": {"formation": {"web": {"size": "eco", "quantity": 101}}}}, "quantity", "100"),
    ({"heroku": {"regoin": "eu"}}, "shipyard:heroku.regoin", "did you mean `region`"),
    ({"environment": "prod"}, "shipyard:environment", "'staging' or 'production'"),
    ({"gitlabProject": "just-a-name"}, "shipyard:gitlabProject", "group/project"),
    ({"registry": {"name": "Acme/Web"}}, "shipyard:registry.name", "lowercase"),
    ({"registry": {"name": "acme//web"}}, "shipyard:registry.name", "ECR"),
    ({"registry": {"name": "a"}}, "shipyard:registry.name", "at least 2"),
    ({"registry": {"keepImages": 0}}, "shipyard:registry.keepImages", "greater than or equal to 1"),
    ({"registry": {"pullPrincipals": ["12345"]}}, "shipyard:registry.pullPrincipals[0]", "12-digit"),
    ({"aws:region": "europe"}, "aws:region", "eu-west-1"),
    ({"aws:region": None}, "aws:region", "required"),
    ({"runner": {"instanceTpye": "t3.medium"}}, "shipyard:runner.instanceTpye", "did you mean `instanceType`"),
    ({"runner": {"instanceType": "t3.medium", "concurrent": 0}}, "shipyard:runner.concurrent", "1"),
    ({"runner": {"instanceType": "t3.medium", "diskGb": 8}}, "shipyard:runner.diskGb", "20"),
    ({"instanceTpye": "t3.medium"}, "shipyard:instanceTpye", "runner.instanceType"),
    ({"enviroment": "staging"}, "shipyard:enviroment", "did you mean `environment`"),
    ({"registry": None}, "shipyard:buildStack", "required"),
    ({"buildStack": "organization/shipyard/staging"}, "shipyard:buildStack", "not both"),
    ({"registry": None, "buildStack": "staging"}, "shipyard:buildStack", "org/project/stack"),
    ({"heroku": "acme-web"}, "shipyard:heroku", "YAML map"),
    ({"heroku": {"acm": True}}, "shipyard:heroku.acm", "paid dynos"),  # guards H12
    ({"heroku": {"features": ["Preboot"]}}, "shipyard:heroku.features[0]", "feature name"),
    ({"heroku": {"formation": {"Web": {"size": "basic", "quantity": 1}}}}, "shipyard:heroku.formation.Web", "process"),
    ({"registry": {"cacheTag": "build cache"}}, "shipyard:registry.cacheTag", "image tag"),
    ({"runner": {"instanceType": "large"}}, "shipyard:runner.instanceType", "did you mean t3.large"),
    ({"runner": {"instanceType": "t3.small", "tags": []}}, "shipyard:runner.tags", "at least 1"),
    ({"runner": {"instanceType": "t3.small", "tags": ["has space"]}}, "shipyard:runner.tags[0]", "runner tag"),
    ({"runner": {"instanceType": "t3.small", "maximumTimeout": 300}}, "shipyard:runner.maximumTimeout", "600"),
    ({"runner": {"instanceType": "t3.small", "maximumTimeout": 599}}, "shipyard:runner.maximumTimeout", "600"),  # G6
    ({"runner": {"instanceType": "t3.small", "maximumTimeout": 86401}}, "shipyard:runner.maximumTimeout", "86400"),
    ({"runner": {"instanceType": "t3.small", "concurrent": 101}}, "shipyard:runner.concurrent", "100"),
    ({"runner": {"instanceType": "t3.small", "subnetIds": ["sub-1"]}}, "shipyard:runner.subnetIds[0]", "subnet-"),
    ({"runner": {"instanceType": "t3.small", "gitlabRunnerVersion": "latest"}}, "gitlabRunnerVersion", "19.1.1"),
    ({"runner": {"instanceType": "t3.small", "dockerVersion": "latest"}}, "dockerVersion", "25.0"),
    ({"gitlabUrl": "http://gitlab.example.com"}, "shipyard:gitlabUrl", "https"),
    ({"hideSecretVariables": "sometimes"}, "shipyard:hideSecretVariables", "boolean"),
    ({"herokuApiKey": "short"}, "shipyard:herokuApiKey", "8 characters"),  # guards G2
    ({"registry": {"reviewName": "Acme/Review"}}, "shipyard:registry.reviewName", "lowercase"),
    ({"registry": {"reviewName": "acme/web"}}, "shipyard:registry.reviewName", "must differ"),  # guards G11
    ({"registry": {"name": "a" * 250}}, "shipyard:registry.reviewName", "256"),
    ({"registry": {"scanThreshold": "SEVERE"}}, "shipyard:registry.scanThreshold", "'CRITICAL', 'HIGH'"),
    ({"registry": {"cacheTag": "sha256-cache"}}, "shipyard:registry.cacheTag", "signature"),
    ({"reviewRunner": {"instanceTpye": "t3.large"}}, "shipyard:reviewRunner.instanceTpye", "`instanceType`"),
    ({"reviewRunner": {"instanceType": "t3.large", "diskGb": 8}}, "shipyard:reviewRunner.diskGb", "20"),
    ({"herokuApiKey": "has a space in it"}, "shipyard:herokuApiKey", "letters, digits"),  # guards G2
    ({"runner": {"instanceType": "t3.hugee"}}, "shipyard:runner.instanceType", "did you mean t3.large"),
    ({"reviewRunner": {"instanceType": "m5.larg"}}, "shipyard:reviewRunner.instanceType", "did you mean m5.large"),
    ({"heroku": {"configVars": {"HOSTS": ["a", "b"]}}}, "shipyard:heroku.configVars.HOSTS", "number or true/false"),
    ({"heroku": {"configVars": {"UNSET": None}}}, "shipyard:heroku.configVars.UNSET", "remove the key"),
]


@pytest.mark.parametrize(("override", "key", "allowed"), MISTAKES, ids=[m[1] + ":" + m[2] for m in MISTAKES])
def test_each_mistake_names_the_key_and_what_is_allowed(override: dict[str, Any], key: str, allowed: str) -> None:
    config = base(**override)
    if isinstance(override.get("heroku"), str):
        config["shipyard:heroku"] = "acme-web"  # a scalar where a map belongs
    found = problems(config)
    assert any(key in p and allowed in p for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems(base(heroku={"app": "Bad_Name", "regoin": "eu"}, registry={"keepImages": 0}, enviroment="staging"))
    for key in ("shipyard:heroku.app", "shipyard:heroku.regoin", "shipyard:registry.keepImages", "shipyard:enviroment"):
        assert any(p.startswith(key) for p in found), (key, found)


def test_secret_setting_in_plain_text_is_refused_without_echoing_it() -> None:
    found = problems(base(herokuApiKey="HRKU-plaintextCanary0001"), secret=set())
    assert any("shipyard:herokuApiKey" in p and "--secret" in p for p in found)
    assert not any("plaintextCanary" in p for p in found)


# Written out, not read from infra.settings: dropping a key from the code's list must fail here.
# The four credentials the providers mark secret (pulumi_aws 7.51.1 also marks `aws:accessKey`).
PROVIDER_CREDENTIALS = ["heroku:apiKey", "gitlab:token", "aws:accessKey", "aws:secretKey", "aws:token"]


@pytest.mark.parametrize("key", PROVIDER_CREDENTIALS)
def test_provider_credentials_in_plain_text_are_refused(key: str) -> None:  # guards H9, G1
    config = base()
    config[key] = "plain-credential-value"
    found = problems(config)
    assert any(key in p and "--secret" in p for p in found)
    assert not any("plain-credential-value" in p for p in found)


def test_provider_credentials_set_as_secrets_are_accepted() -> None:  # guards H9, G1
    config = base()
    for key in PROVIDER_CREDENTIALS:
        config[key] = "secret-credential-value"
    assert parse(config, secret={"shipyard:herokuApiKey", *PROVIDER_CREDENTIALS}).stack == "staging"


@pytest.mark.parametrize("seconds", [600, 86400])
def test_maximum_timeout_accepts_both_ends_of_its_range(seconds: int) -> None:  # guards G6
    runner = {"instanceType": "t3.small", "maximumTimeout": seconds, "protectedOnly": True}
    assert parse(base(runner=runner)).runner.maximum_timeout == seconds


def test_unmaskable_api_key_error_does_not_quote_the_key() -> None:  # guards G2
    found = problems(base(herokuApiKey="secret value with spaces"))
    assert not any("spaces" in p for p in found), found


def test_acm_is_accepted_once_paid_dynos_run() -> None:  # guards H12
    web = {"web": {"size": "basic", "quantity": 1}}
    assert parse(base(heroku={"acm": True, "imageReleased": True, "formation": web})).heroku.acm


def test_same_config_var_plain_and_sensitive_is_refused() -> None:  # guards H5
    config = base(heroku={"configVars": {"DATABASE_URL": "x"}})
    config["shipyard:herokuSensitiveConfigVars"] = {"DATABASE_URL": "postgres://u:p@h/db"}
    found = problems(config, secret={"shipyard:herokuApiKey", "shipyard:herokuSensitiveConfigVars"})
    assert any("DATABASE_URL" in p and "H5" in p for p in found)
    assert not any("postgres://" in p for p in found)


def test_sensitive_config_vars_must_be_secret() -> None:  # guards H5
    config = base()
    config["shipyard:herokuSensitiveConfigVars"] = {"DATABASE_URL": "postgres://u:p@h/db"}
    found = problems(config)
    assert any("shipyard:herokuSensitiveConfigVars" in p and "--secret" in p for p in found)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("HRKU-abcdefgh_ijkl", True),
        ("0123abcd-4567-89ef-0123-456789abcdef", True),
        ("a+b=c/d@e:f.g~h-i_j", True),
        ("short", False),
        ("two\nlines-here", False),
        ("dollar$sign-value", False),
        ("with space inside", False),
    ],
)
def test_maskable_rule_matches_gitlab(value: str, ok: bool) -> None:  # guards G2
    assert (maskable_problem(value) is None) is ok


# --- the build stack's two runners (G11) ------------------------------------------------------------

PROTECTED = {"instanceType": "t3.large", "protectedOnly": True}


def test_the_build_runner_takes_protected_refs_only() -> None:  # guards G11
    found = problems(base(runner={"instanceType": "t3.large"}))
    assert any(
        p.startswith("shipyard:runner.protectedOnly must be true in the build stack")
        and "G11" in p
        and "shipyard:reviewRunner" in p
        for p in found
    ), found
    assert problems(base(runner={"instanceType": "t3.large", "protectedOnly": False}))
    assert parse(base(runner=PROTECTED)).runner.protected_only


def test_a_deploy_runner_outside_the_build_stack_may_be_unprotected() -> None:
    settings = parse(
        base(registry=None, buildStack="organization/shipyard/staging", runner={"instanceType": "t3.small"})
    )
    assert settings.runner is not None and not settings.runner.protected_only


def test_the_review_runner_defaults_to_the_review_tags_and_unprotected() -> None:
    settings = parse(base(runner=PROTECTED, reviewRunner={"instanceType": "t3.large"}))
    assert settings.review_runner.tags == ["shipyard", "review"]
    assert settings.review_runner.protected_only is False
    assert settings.review_runner.concurrent == 2  # the rest as `runner`'s defaults


def test_a_protected_review_runner_is_refused() -> None:  # guards G11
    found = problems(base(runner=PROTECTED, reviewRunner={"instanceType": "t3.large", "protectedOnly": True}))
    assert any(p.startswith("shipyard:reviewRunner.protectedOnly: must be false") for p in found), found


def test_a_review_runner_outside_the_build_stack_is_refused() -> None:
    config = base(registry=None, buildStack="organization/shipyard/staging", reviewRunner={"instanceType": "t3.large"})
    found = problems(config)
    assert any(p.startswith("shipyard:reviewRunner belongs to the build stack") for p in found), found


@pytest.mark.parametrize("key", ["runner", "reviewRunner"])
def test_the_build_stacks_runners_are_not_graviton(key: str) -> None:  # guards R22
    runners = {"runner": PROTECTED, key: {**PROTECTED, "instanceType": "t4g.large"}}
    if key == "reviewRunner":
        runners[key] = {"instanceType": "t4g.large"}
    found = problems(base(**runners))
    assert any(p.startswith(f"shipyard:{key}.instanceType t4g.large is a Graviton") for p in found), found


def test_every_runner_problem_is_reported_at_once() -> None:
    found = problems(
        base(runner={"instanceType": "t4g.large"}, reviewRunner={"instanceType": "m7g.large", "protectedOnly": True})
    )
    for start in (
        "shipyard:runner.protectedOnly must be true",
        "shipyard:runner.instanceType t4g.large",
        "shipyard:reviewRunner.instanceType m7g.large",
        "shipyard:reviewRunner.protectedOnly: must be false",
    ):
        assert any(p.startswith(start) for p in found), (start, found)


def test_the_review_repository_is_named_once_in_the_settings() -> None:
    assert parse(base()).registry.review_repository == "acme/web-review"
    assert parse(base(registry={"reviewName": "acme/web-mr"})).registry.review_repository == "acme/web-mr"
    assert parse(base()).registry.scan_threshold == "CRITICAL"
