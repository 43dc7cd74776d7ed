"""The typed stack settings of shipyard: one pydantic model, every rule, every error message.

The same model reads the configuration of a real `pulumi up` (from the Pulumi runtime) and the
offline plan's (from a stack file); both hand it the flat key → value map that the Pulumi CLI
gives a program, so there is one code path and one set of messages.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import typing
import zoneinfo
from collections.abc import Iterable, Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any, Literal

import pulumi
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from infra import facts

NAMESPACE = "shipyard"

# H1: Heroku Platform API schema.
HEROKU_APP_NAME = re.compile(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$")
HEROKU_PIPELINE_NAME = re.compile(r"^[a-z][a-z0-9-]{2,29}$")
CONFIG_VAR_KEY = re.compile(r"^\w+$")
# ECR CreateRepository: repositoryName pattern, 2 to 256 characters.
ECR_NAME = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
IMAGE_TAG = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$")
AWS_REGION = re.compile(r"^[a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-\d$")
AWS_ACCOUNT_OR_ARN = re.compile(r"^(?:\d{12}|arn:aws[a-z-]*:iam::\d{12}:(?:root|role/[\w+=,.@/-]+))$")
GITLAB_PROJECT = re.compile(r"^(?:\d+|[\w.][\w.-]*(?:/[\w.][\w.-]*)+)$")
STACK_PATH = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+$")
# G2: GitLab's masking requirements with raw=false.
MASKABLE = re.compile(r"^[a-zA-Z0-9_+=/@:.~-]{8,}$")
PROCESS_TYPE = re.compile(r"^[a-z][a-z0-9_-]*$")
FEATURE_NAME = re.compile(r"^[a-z][a-z0-9-]+$")

# Provider credentials that must only ever be set with --secret (H9, G1).
PROVIDER_SECRET_KEYS = ("heroku:apiKey", "gitlab:token", "aws:accessKey", "aws:secretKey", "aws:token")


class SettingsError(pulumi.RunError):
    """Invalid stack settings. A RunError, so `pulumi up` shows the message alone (P8)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        count = f"{len(problems)} problem" + ("" if len(problems) == 1 else "s")
        super().__init__(f"invalid stack settings ({count}):\n{lines}")


def maskable_problem(value: str) -> str | None:
    """Why GitLab would refuse to mask this value (G2), or None. Never quotes the value."""
    if "\n" in value or "\r" in value:
        return "must be a single line to be masked in GitLab (G2)"
    if len(value) < 8:
        return "must be at least 8 characters to be masked in GitLab (G2)"
    if not MASKABLE.fullmatch(value):
        return "may only contain letters, digits and _+=/@:.~- to be masked in GitLab (G2)"
    return None


def _pattern(regex: re.Pattern[str], allowed: str) -> AfterValidator:
    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(f"must be {allowed}")
        return value

    return AfterValidator(check)


HerokuAppName = Annotated[
    str,
    _pattern(HEROKU_APP_NAME, "3 to 30 lowercase letters, digits or dashes, starting with a letter (H1)"),
]
PipelineName = Annotated[
    str,
    _pattern(HEROKU_PIPELINE_NAME, "3 to 30 lowercase letters, digits or dashes, starting with a letter (H1)"),
]
ConfigVarKey = Annotated[str, _pattern(CONFIG_VAR_KEY, "letters, digits and underscores only (H1)")]


def _config_var_text(value: Any) -> str:
    """A config var as the text Heroku stores. `pulumi config set --path heroku.configVars.X 3` writes
    the number 3 into the stack file (and `true` a boolean), so numbers and booleans are taken as the
    text they stand for; nothing else has a text form Heroku would store."""
    if isinstance(value, bool):  # before int: a bool is an int
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)  # 0.5 → "0.5": the shortest form, as YAML and JSON write it
    if isinstance(value, str):
        return value
    kind = "null" if value is None else "a list" if isinstance(value, list) else "a map"
    hint = ": remove the key to leave the variable unset" if value is None else ""
    raise ValueError(f"must be a string, number or true/false (Heroku stores text), not {kind}{hint}")


ConfigVarValue = Annotated[str, BeforeValidator(_config_var_text)]
SensitiveConfigVarValue = Annotated[SecretStr, BeforeValidator(_config_var_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)


@functools.cache
def heroku_dyno_sizes() -> tuple[str, ...]:
    """The Common Runtime dyno sizes Heroku takes, lower-case (infra/facts/heroku-registry.yaml)."""
    return tuple(facts.load("heroku-registry")["platform_api"]["dyno_sizes"])


class Formation(_Strict):
    size: str = Field(description="Dyno size, e.g. `standard-1X` (case does not matter).")
    quantity: int = Field(ge=0, le=100, description="Dynos of this process type, 0 to 100.")

    @model_validator(mode="after")
    def _size_known(self) -> Formation:
        size = self.size.lower()
        if size not in heroku_dyno_sizes() and not size.startswith(("private-", "shield-")):
            raise ValueError(
                f"size must be one of {', '.join(heroku_dyno_sizes())} (or private-*/shield-*), got {self.size!r}"
            )
        if size in ("eco", "basic") and self.quantity > 1:
            raise ValueError(f"{self.size} dynos cannot run more than one per process type")
        return self


class HerokuSettings(_Strict):
    app: HerokuAppName = Field(
        description=(
            "3 to 30 lowercase letters, digits or dashes, starting with a letter; explicit and "
            "globally unique on Heroku (H1, H2)."
        )
    )
    region: Literal["us", "eu"] = Field(description="Heroku region; changing it replaces the app (H4).")
    team: str | None = Field(default=None, description="Heroku team that owns the app and pipeline.")
    pipeline: PipelineName = Field(
        description=(
            "3 to 30 lowercase letters, digits or dashes, starting with a letter (H1); the build "
            "stack creates it, others couple to it."
        )
    )
    config_vars: dict[ConfigVarKey, ConfigVarValue] = Field(
        default_factory=dict,
        alias="configVars",
        description=(
            "Keys of letters, digits and underscores; values are text, numbers and true/false taken as "
            'text (`3` → `"3"`); stored in plain text, so no secrets here (H5).'
        ),
    )
    features: list[Annotated[str, _pattern(FEATURE_NAME, "a Heroku feature name such as preboot")]] | None = Field(
        default=None, description="App features; default `[preboot]` in production, none in staging."
    )
    formation: dict[Annotated[str, _pattern(PROCESS_TYPE, "a process type such as web")], Formation] = Field(
        default_factory=dict, description="Process type → {size, quantity}; applied once `imageReleased` (H6)."
    )
    image_released: bool = Field(
        default=False,
        alias="imageReleased",
        description="Set true once the first image has been released; only then is `formation` applied (H6).",
    )
    acm: bool = Field(default=False, description="Automated Certificate Management; needs paid dynos (H12).")


EcrName = Annotated[
    str,
    Field(min_length=2, max_length=256),
    _pattern(ECR_NAME, "lowercase letters and digits separated by . _ - or / (ECR)"),
]
# cosign's tags for the signature of image `sha256:<hex>` are `sha256-<hex>.sig`: the release
# repository keeps them mutable and apart from the release images (infra/components/registry.py).
SIGNATURE_TAG_PREFIX = "sha256-"
REVIEW_NAME_SUFFIX = "-review"


def _not_a_signature_tag(tag: str) -> str:
    if tag.startswith(SIGNATURE_TAG_PREFIX):
        raise ValueError(f"must not start with {SIGNATURE_TAG_PREFIX}: cosign writes its signature tags there")
    return tag


class RegistrySettings(_Strict):
    name: EcrName = Field(
        description="ECR rule: 2 to 256 lowercase letters and digits, separated by `.`, `_`, `-` or `/`."
    )
    review_name: EcrName | None = Field(
        default=None,
        alias="reviewName",
        description=(
            "Repository of merge-request images (tags `mr-<iid>-<sha>`), apart from the release images so that "
            "no merge request can write a tag a protected pipeline releases (G11); same rule as `name`, "
            "default `<name>-review`."
        ),
    )
    keep_images: int = Field(
        default=30,
        ge=1,
        alias="keepImages",
        description=(
            "Release images (default-branch builds, tagged `<commit SHA>-<job id>`) to keep, with their "
            "signatures: at least the newest N. ECR counts them per leading hex digit of the SHA, so up to "
            "16 times N may stay."
        ),
    )
    cache_tag: Annotated[
        str,
        _pattern(IMAGE_TAG, "an image tag: letters, digits and . _ -, up to 128"),
        AfterValidator(_not_a_signature_tag),
    ] = Field(
        default="buildcache",
        alias="cacheTag",
        description="Tag of the BuildKit layer cache; mutable like cosign's signature tags (`sha256-…`), never one.",
    )
    pull_principals: list[
        Annotated[str, _pattern(AWS_ACCOUNT_OR_ARN, "a 12-digit AWS account id or an IAM role ARN")]
    ] = Field(
        default_factory=list,
        alias="pullPrincipals",
        description="12-digit AWS account ids or IAM role ARNs allowed to pull (read-only).",
    )
    review_image_days: int = Field(
        default=7,
        ge=1,
        le=3650,
        alias="reviewImageDays",
        description="Days a merge-request image (tag `mr-<iid>-<sha>`) is kept after its push.",
    )
    scanning: Literal["basic", "enhanced"] = Field(
        default="basic",
        description=(
            "Vulnerability scanning of pushed images, set on the registry (R21): `basic` scans on push, "
            "`enhanced` (Amazon Inspector, billed by Inspector) scans on push and again as new CVEs appear. "
            "The registry scanning configuration is one per AWS account and region: the build stack "
            "replaces whatever is there, so two build stacks in one account and region overwrite each "
            "other's, and destroying the stack resets the registry to basic scanning without rules."
        ),
    )
    scan_threshold: Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"] = Field(
        default="CRITICAL",
        alias="scanThreshold",
        description=(
            "A scan finding of this severity or worse blocks a release: the release script refuses the image "
            "(the CI/CD variable SHIPYARD_SCAN_THRESHOLD)."
        ),
    )

    @property
    def review_repository(self) -> str:
        """The review repository's name: `reviewName`, or the release repository's name + `-review`."""
        return self.review_name or f"{self.name}{REVIEW_NAME_SUFFIX}"


RUNNER_TAG = re.compile(r"^[\w.:/-]{1,255}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
RPM_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def _runner_release_known(version: str) -> str:
    """A GitLab Runner release shipyard knows the files of (R12, R17): the host downloads only
    what the release's fact file lists, so a version without one cannot be installed."""
    if not facts.exists(f"gitlab-runner/{version}"):
        known = sorted(p.stem for p in (facts.FACTS_DIR / "gitlab-runner").glob("*.yaml"))
        raise ValueError(
            f"must be a release with a fact file: add {facts.shown(f'gitlab-runner/{version}')} from that "
            f"release's file list (README, Facts); releases known: {', '.join(known) or 'none'}"
        )
    return version


DOCKER_VERSION = re.compile(r"^\d+\.\d+(?:\.\d+|\.\*)$")


def architecture(instance_type: str) -> Literal["arm64", "x86_64"]:
    """arm64 for Graviton families (a `g` after the generation: t4g, m7gd, c6gn), else x86_64."""
    family = instance_type.split(".", 1)[0]
    return "arm64" if "g" in re.sub(r"^[a-z]+\d+", "", family) else "x86_64"


@functools.cache
def ec2_instance_types() -> frozenset[str]:
    """The EC2 instance types the pinned AWS provider lists (`pulumi_aws.ec2.InstanceType`). Loaded
    on first use: a stack with a runner loads `pulumi_aws.ec2` for the runner's resources anyway."""
    from pulumi_aws.ec2 import InstanceType

    return frozenset(t.value for t in InstanceType)


def _instance_type_known(value: str) -> str:
    known = ec2_instance_types()
    if value in known:
        return value
    # Suggest sizes of the family written (t3.hugee → t3.large), else any type close to it.
    family = value.lower().split(".", 1)[0]
    same_family = [t for t in known if t.split(".", 1)[0] == family]
    close = difflib.get_close_matches(value.lower(), same_family or sorted(known), n=3, cutoff=0.5)
    hint = f"; did you mean {_either(close)}?" if close else ", such as t3.medium"
    raise ValueError(f"{value!r} is not an EC2 instance type that pulumi-aws {_aws_version()} knows{hint}")


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _aws_version() -> str:
    from importlib.metadata import version

    return version("pulumi-aws")


# Unix cron as the autoscaler's policy periods take it: minute hour day-of-month month day-of-week,
# each field digits, names (mon, jan) and * , - / ?.
CRON_FIELD = re.compile(r"^[0-9A-Za-z*?,/-]+$")
# A Go time.Duration as config.toml's idle_time takes it, whole hours, minutes and seconds.
GO_DURATION = re.compile(r"^(?=.)(\d+h)?(\d+m)?(\d+s)?$")


def _cron_period(period: str) -> str:
    fields = period.split()
    if len(fields) != 5 or not all(CRON_FIELD.fullmatch(f) for f in fields):
        raise ValueError(
            f"{period!r} is not a 5-field cron expression (minute hour day month weekday), such as '* 8-18 * * mon-fri'"
        )
    return period


def _time_zone_database() -> bool:
    """Whether zoneinfo has zones to read: the system's files (tzdata on Linux), or the tzdata package."""
    return any(Path(folder, "UTC").is_file() for folder in zoneinfo.TZPATH) or bool(find_spec("tzdata"))


def _time_zone_known(name: str) -> str:
    # ZoneInfo(name) reads one file; zoneinfo.available_timezones() would walk the whole database.
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        if not _time_zone_database():
            raise ValueError(
                f"{name!r} cannot be checked: this machine has no time zone database (zoneinfo looks in "
                f"{', '.join(zoneinfo.TZPATH) or 'no folder'}); install the system's tzdata package"
            ) from None
        raise ValueError(
            f"{name!r} is not a time zone of the IANA database (zoneinfo); use a name such as UTC or Europe/Berlin"
        ) from None
    return name


def _one_architecture(instance_types: list[str]) -> list[str]:
    """Workers share one launch template, so one AMI, which is built for one architecture."""
    repeated = sorted({t for t in instance_types if instance_types.count(t) > 1})
    if repeated:
        raise ValueError(f"lists {_either(repeated)} more than once")
    by_architecture: dict[str, list[str]] = {}
    for instance_type in instance_types:
        by_architecture.setdefault(architecture(instance_type), []).append(instance_type)
    if len(by_architecture) > 1:
        raise ValueError(
            "must all be of one architecture, as the workers share one AMI: "
            f"{', '.join(by_architecture['x86_64'])} x86_64 but {', '.join(by_architecture['arm64'])} arm64 "
            "(Graviton)"
        )
    return instance_types


class IdlePolicy(_Strict):
    """When the fleet keeps workers running without a job: one `[[runners.autoscaler.policy]]`."""

    periods: list[Annotated[str, AfterValidator(_cron_period)]] = Field(
        default_factory=lambda: ["* * * * *"],
        min_length=1,
        description=(
            "5-field cron expressions (minute hour day month weekday) of when the policy applies, "
            "e.g. `* 8-18 * * mon-fri`; of several policies the last that applies wins."
        ),
    )
    timezone: Annotated[str, AfterValidator(_time_zone_known)] = Field(
        default="UTC", description="IANA time zone of `periods`, e.g. `Europe/Berlin`."
    )
    idle_count: int = Field(
        ge=0,
        alias="idleCount",
        description="Workers kept idle, ready for a job, 0 to the fleet's `maxInstances` (one job per worker).",
    )
    idle_time: Annotated[str, _pattern(GO_DURATION, "a duration such as 20m, 1h30m or 90s")] = Field(
        default="20m",
        alias="idleTime",
        description="How long an idle worker beyond `idleCount` stays before it is removed, e.g. `20m` or `1h30m`.",
    )


class FleetSettings(_Strict):
    """The worker EC2 instances of a runner in fleet mode: an autoscaling group the runner scales (R15)."""

    instance_types: Annotated[
        list[Annotated[str, AfterValidator(_instance_type_known)]], AfterValidator(_one_architecture)
    ] = Field(
        default_factory=lambda: ["m7i.large", "m6i.large", "m5.large"],
        min_length=1,
        max_length=10,
        alias="instanceTypes",
        description=(
            "EC2 instance types of the workers, 1 to 10 of one architecture, each one the AWS provider lists; "
            "x86_64 in the build stack (R22). More types give spot instances more capacity pools."
        ),
    )
    max_instances: int = Field(
        default=10, ge=1, le=100, alias="maxInstances", description="Most workers at once, 1 to 100."
    )
    on_demand_base: int = Field(
        default=0,
        ge=0,
        alias="onDemandBase",
        description="Workers started on-demand before any spot worker, 0 to `maxInstances`.",
    )
    spot: bool = Field(
        default=True,
        description=(
            "Workers beyond `onDemandBase` are spot instances (cheaper; AWS may reclaim one mid-job); "
            "false: every worker on-demand."
        ),
    )
    disk_gb: int = Field(
        default=50, ge=20, alias="diskGb", description="Encrypted gp3 root volume of each worker in GB, ≥ 20."
    )
    idle: list[IdlePolicy] = Field(
        default_factory=list,
        description="When to keep idle workers ready; empty: never, each job waits for a worker to start.",
    )
    cache_days: int = Field(
        default=14,
        ge=1,
        le=365,
        alias="cacheDays",
        description="Days an object of the fleet's S3 build cache is kept, 1 to 365.",
    )


class RunnerSettings(_Strict):
    instance_type: Annotated[str, AfterValidator(_instance_type_known)] = Field(
        alias="instanceType",
        description="EC2 instance type of the runner host, e.g. `t3.medium`; one the AWS provider lists.",
    )
    mode: Literal["host", "fleet"] = Field(
        default="host",
        description=(
            "`host`: jobs run on the runner host. `fleet`: the host only manages, and each job runs on a worker "
            "EC2 instance it starts and stops (docker-autoscaler, R15); `instanceType` is then the manager's."
        ),
    )
    concurrent: int = Field(
        default=2, ge=1, le=100, description="Jobs at once, 1 to 100; in fleet mode across all workers."
    )
    disk_gb: int = Field(default=50, ge=20, alias="diskGb", description="Encrypted gp3 root volume size in GB, ≥ 20.")
    tags: list[Annotated[str, _pattern(RUNNER_TAG, "a runner tag: letters, digits and . _ : / -")]] = Field(
        default_factory=lambda: ["shipyard", "docker"], min_length=1, description="Runner tags in GitLab (G6)."
    )
    protected_only: bool = Field(
        default=False,
        alias="protectedOnly",
        description=(
            "Run jobs of protected branches and tags only (`ref_protected`): required of the build stack's "
            "runner (G11), advised for deploy runners."
        ),
    )
    maximum_timeout: int = Field(
        default=3600,
        ge=600,
        le=86400,
        alias="maximumTimeout",
        description="Longest job in seconds, 600 to 86400 (G6); the host waits this long for jobs when it stops.",
    )
    subnet_ids: list[Annotated[str, _pattern(SUBNET_ID, "a subnet id such as subnet-0abc1234")]] = Field(
        default_factory=list,
        alias="subnetIds",
        description="Subnets of the runner (one VPC, egress to the internet); empty: the default VPC's subnets.",
    )
    gitlab_runner_version: Annotated[
        str, _pattern(RPM_VERSION, "a release such as 19.1.1"), AfterValidator(_runner_release_known)
    ] = Field(default="19.1.1", alias="gitlabRunnerVersion", description="Pinned GitLab Runner release (R12).")
    docker_version: Annotated[str, _pattern(DOCKER_VERSION, "a version such as 25.0.* or 25.0.8")] = Field(
        default="25.0.*", alias="dockerVersion", description="Pinned Docker package of Amazon Linux 2023 (R12)."
    )
    fleet: FleetSettings | None = Field(
        default=None,
        description="The workers of `mode: fleet`, whose defaults apply when it is absent; refused with `mode: host`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _fleet_defaults(cls, data: Any) -> Any:
        """`mode: fleet` without `fleet` means the fleet's defaults."""
        if isinstance(data, dict) and data.get("mode") == "fleet" and data.get("fleet") is None:
            return {**data, "fleet": {}}
        return data


def _takes_merge_requests(protected_only: bool) -> bool:
    if protected_only:
        raise ValueError(
            "must be false: the review runner builds merge-request pipelines, which do not run on protected "
            "refs, so a protected-only review runner would never pick them up (G11)"
        )
    return protected_only


class ReviewRunnerSettings(RunnerSettings):
    """The build stack's second runner: merge-request builds, which may push review images only."""

    tags: list[Annotated[str, _pattern(RUNNER_TAG, "a runner tag: letters, digits and . _ : / -")]] = Field(
        default_factory=lambda: ["shipyard", "review"],
        min_length=1,
        description="Runner tags in GitLab (G6); merge-request builds name them.",
    )
    protected_only: Annotated[bool, AfterValidator(_takes_merge_requests)] = Field(
        default=False,
        alias="protectedOnly",
        description="Always false: merge-request pipelines do not run on protected refs.",
    )


# ci/review_apps.py names a merge request's review app `<appPrefix>-mr-<iid>`; with IIDs of up to 7 digits
# that is a Heroku app name (H1, 30 characters at most) when the prefix has at most 30 - 4 - 7 characters.
REVIEW_PREFIX_MAX = 19
REVIEW_PREFIX = re.compile(rf"^[a-z](?:[a-z0-9-]{{0,{REVIEW_PREFIX_MAX - 2}}}[a-z0-9])?$")
# A GitLab `auto_stop_in` duration: one or more `<number> <unit>` parts, e.g. `3 days` or `1 week 2 days`.
GITLAB_DURATION = re.compile(
    r"^\d+\s*(?:minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|m|h|d|w)"
    r"(?:,?\s+(?:and\s+)?\d+\s*(?:minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|m|h|d|w))*$"
)


def _review_dyno_size(size: str) -> str:
    """A Common Runtime dyno size, as Heroku spells it: review apps are not created in a Private Space."""
    if size.lower() not in heroku_dyno_sizes():
        raise ValueError(f"must be one of {', '.join(heroku_dyno_sizes())} (case does not matter), got {size!r}")
    return size


class ReviewSettings(_Strict):
    """A Heroku app per merge request, created and deleted by the review jobs of the delivery template."""

    app_prefix: Annotated[
        str,
        _pattern(
            REVIEW_PREFIX,
            f"1 to {REVIEW_PREFIX_MAX} lowercase letters, digits or hyphens, starting with a letter and not ending "
            f"with a hyphen: a review app is named `<appPrefix>-mr-<iid>`, which Heroku takes for merge-request "
            f"IIDs of up to 7 digits only with a prefix of at most {REVIEW_PREFIX_MAX} characters (H1)",
        ),
    ] = Field(
        alias="appPrefix",
        description=(
            f"Review apps are named `<appPrefix>-mr-<iid>`: 1 to {REVIEW_PREFIX_MAX} lowercase letters, digits or "
            "hyphens, starting with a letter, so that the name stays a valid Heroku app name (H1) for IIDs of up "
            "to 7 digits."
        ),
    )
    region: Literal["us", "eu"] | None = Field(
        default=None, description="Heroku region of the review apps; default `heroku.region`."
    )
    team: str | None = Field(default=None, description="Heroku team that owns the review apps; default `heroku.team`.")
    config_vars: dict[ConfigVarKey, ConfigVarValue] = Field(
        default_factory=dict,
        alias="configVars",
        description=(
            "Config vars of every review app, as `heroku.configVars`: plain text, never staging's or "
            "production's secrets (H5)."
        ),
    )
    auto_stop_in: Annotated[
        str, _pattern(GITLAB_DURATION, "a GitLab duration such as `3 days`, `12 hours` or `1 week`")
    ] = Field(
        default="3 days",
        alias="autoStopIn",
        description=(
            "GitLab stops a review environment, and its stop job deletes the app, this long after the "
            "merge request's last deployment to it: a GitLab duration such as `3 days` or `12 hours`."
        ),
    )
    max_apps: int = Field(default=5, ge=1, le=50, alias="maxApps", description="Most review apps at once, 1 to 50.")
    dyno_size: Annotated[str, AfterValidator(_review_dyno_size)] = Field(
        default="basic",
        alias="dynoSize",
        description=(
            "Size of each review app's one web dyno: eco, basic, standard-1X, standard-2X or a performance "
            "size; basic by default (never sleeps). Eco needs the apps' owner, account or team, to subscribe "
            "to Heroku's Eco plan."
        ),
    )


class Settings(_Strict):
    """Everything one stack needs; built once, read everywhere."""

    stack: str = Field(description="The Pulumi stack name.")
    aws_region: Annotated[str, _pattern(AWS_REGION, "an AWS region such as eu-west-1")] = Field(
        alias="aws:region", description="AWS region of the runner and the registry, e.g. `eu-west-1`."
    )
    environment: Literal["staging", "production"] = Field(
        description="GitLab environment name and tier; Heroku pipeline stage."
    )
    gitlab_project: Annotated[
        str, _pattern(GITLAB_PROJECT, "a project path like group/project or a numeric project id")
    ] = Field(
        alias="gitlabProject", description="The application's GitLab project: `group/…/project` path or numeric id."
    )
    heroku: HerokuSettings = Field(description="The Heroku app of this environment.")
    registry: RegistrySettings | None = Field(default=None, description="Present in the build stack only.")
    runner: RunnerSettings | None = Field(
        default=None,
        description=(
            "Absent: no runner in this stack. In the build stack it builds, signs and pushes the release images, "
            "so it must be `protectedOnly` (G11)."
        ),
    )
    review_runner: ReviewRunnerSettings | None = Field(
        default=None,
        alias="reviewRunner",
        description=(
            "Build stack only: the runner of merge-request builds, with `runner`'s keys; it may push to the "
            "review repository only and read the release repository's layer cache. Never `protectedOnly`."
        ),
    )
    review: ReviewSettings | None = Field(
        default=None,
        description=(
            "Build stack only: a review app per merge request, made and deleted by the delivery template's "
            "`shipyard-review` and `shipyard-review-stop` jobs; needs `herokuReviewApiKey`."
        ),
    )
    build_stack: Annotated[str, _pattern(STACK_PATH, "org/project/stack")] | None = Field(
        default=None,
        alias="buildStack",
        description=(
            "`org/project/stack` of the stack that owns the registry; required without `registry`, refused with it."
        ),
    )
    gitlab_url: Annotated[str, _pattern(re.compile(r"^https://[\w.-]+(?::\d+)?(?:/[\w.-]+)*$"), "an https URL")] = (
        Field(
            default="https://gitlab.com",
            alias="gitlabUrl",
            description="The GitLab instance the runner connects to (without a trailing slash).",
        )
    )
    gitlab_environment_id: int | None = Field(
        default=None,
        ge=1,
        alias="gitlabEnvironmentId",
        description=(
            "Adopt an existing GitLab environment instead of creating one (G7): the numeric id of this "
            "project's environment named like `environment` (Operate → Environments, or "
            "`GET /projects/:id/environments`). Any earlier deploy job creates that environment, and GitLab "
            'refuses a second one of the same name (400 "Name has already been taken"). The first '
            "`pulumi up` imports it as `<gitlabProject>:<id>` and then sets its tier and external URL to "
            "shipyard's; this needs Pulumi CLI 3.174 or later (older ones refuse an import whose inputs "
            'differ: "inputs to import do not match the existing resource"). Remove the setting after the '
            "first successful `up`; leaving it set is harmless."
        ),
    )
    hide_secret_variables: bool = Field(
        default=True,
        alias="hideSecretVariables",
        description="Create secret CI/CD variables hidden (GitLab 17.4+); fixed at creation (G3).",
    )
    heroku_api_key: SecretStr = Field(
        alias="herokuApiKey",
        description=(
            "Set with `--secret`; a long-lived `heroku authorizations:create` token (H9) that becomes "
            "the masked HEROKU_API_KEY of this environment; one line, 8+ characters of "
            "`a-zA-Z0-9_+=/@:.~-` (G2)."
        ),
    )
    heroku_review_api_key: SecretStr | None = Field(
        default=None,
        alias="herokuReviewApiKey",
        description=(
            "Set with `--secret`; required with `review`: the long-lived token of a Heroku team member with no "
            "access to the staging and production apps, which becomes the masked HEROKU_REVIEW_API_KEY of "
            "review jobs; differs from `herokuApiKey`; one line, 8+ characters of `a-zA-Z0-9_+=/@:.~-` (G2)."
        ),
    )
    heroku_sensitive_config_vars: dict[ConfigVarKey, SensitiveConfigVarValue] = Field(
        default_factory=dict,
        alias="herokuSensitiveConfigVars",
        description=(
            "Set with `--secret --path`; config vars stored as sensitive on Heroku (H5); no key may "
            "also be in `heroku.configVars`."
        ),
    )

    @property
    def is_build_stack(self) -> bool:
        return self.registry is not None

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def review_region(self) -> str:
        """The review apps' region: `review.region`, else the stack's Heroku region."""
        return (self.review and self.review.region) or self.heroku.region

    @property
    def review_team(self) -> str | None:
        """The review apps' team: `review.team`, else the stack's Heroku team."""
        return (self.review and self.review.team) or self.heroku.team

    @property
    def features(self) -> list[str]:
        if self.heroku.features is not None:
            return self.heroku.features
        return ["preboot"] if self.is_production else []


def fields_of(model: type[BaseModel]) -> dict[str, tuple[type[BaseModel] | None, bool]]:
    """Config key (alias) → (nested model or None, whether the field is a map)."""
    out: dict[str, tuple[type[BaseModel] | None, bool]] = {}
    for name, field in model.model_fields.items():
        nested, is_map = None, typing.get_origin(field.annotation) is dict
        for candidate in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                nested = candidate
        out[field.alias or name] = (nested, is_map)
    return out


def _holds_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_holds_secret(a) for a in typing.get_args(annotation))


# Keys whose values arrive as JSON objects from the Pulumi CLI.
_OBJECT_KEYS = {key for key, (nested, is_map) in fields_of(Settings).items() if nested or is_map}
# Keys that must be Pulumi secrets; their values are never printed.
SECRET_SETTING_KEYS = {f.alias or k for k, f in Settings.model_fields.items() if _holds_secret(f.annotation)}
# Secrets every stack needs; the offline plan stands in a placeholder where one is not set yet.
REQUIRED_SECRET_KEYS = {
    f.alias or k for k, f in Settings.model_fields.items() if _holds_secret(f.annotation) and f.is_required()
}
# Secrets a stack needs once another setting is there (secret → that setting); placeholders offline too.
SECRETS_REQUIRED_WITH = {"herokuReviewApiKey": "review"}


def _key_name(loc: Iterable[Any]) -> str:
    """The key as `pulumi config set --path` writes it: `shipyard:runner.fleet.idle[0].timezone`."""
    head, *rest = loc
    key = str(head) if ":" in str(head) else f"{NAMESPACE}:{head}"
    for part in rest:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key


def _suggest(loc: tuple[Any, ...]) -> str:
    """'did you mean …' for an unknown key, from the fields at that place in the model."""
    model: type[BaseModel] | None = Settings
    parts = [str(p) for p in loc[:-1] if not isinstance(p, int)]  # a list's index: its items' model
    while parts and model is not None:
        model, is_map = fields_of(model).get(parts.pop(0), (None, False))
        if is_map and parts:
            parts.pop(0)  # the map's own key, e.g. the process type of a formation
    if model is None:
        return ""
    candidates = [k for k in fields_of(model) if k != "stack"]
    close = difflib.get_close_matches(str(loc[-1]), candidates, n=1, cutoff=0.6)
    if not close:  # a nested key written at the wrong level, e.g. `instanceType` outside `runner`
        nested = [f"{k}.{sub}" for k, (m, _) in fields_of(model).items() if m is not None for sub in fields_of(m)]
        by_leaf: dict[str, str] = {}
        for path in nested:  # the first model that has the key: `runner` before `reviewRunner`
            by_leaf.setdefault(path.rsplit(".", 1)[1], path)
        leaf = difflib.get_close_matches(str(loc[-1]), list(by_leaf), n=1, cutoff=0.75)
        close = [by_leaf[leaf[0]]] if leaf else []
    return f"; did you mean `{close[0]}`?" if close else f"; allowed keys: {', '.join(sorted(candidates))}"


def _format(err: Mapping[str, Any]) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    msg = str(err["ctx"]["error"]) if kind == "value_error" else err["msg"]
    if not loc:  # whole-model rules name their own keys
        return msg
    key = _key_name(loc)
    if kind == "extra_forbidden":
        return f"{key} is not a known setting{_suggest(loc)}"
    if kind == "missing":
        return f"{key} is required"
    secret = any(str(p) in SECRET_SETTING_KEYS for p in loc)
    scalar = isinstance(err.get("input"), (str, int, float))
    quoted = scalar and repr(err["input"]) in msg  # the message shows the value already
    shown = f" (got {err['input']!r})" if scalar and not secret and not quoted else ""
    return f"{key}: {msg}{shown}"


def _count(value: Any) -> int | None:
    """A whole number as pydantic would read it from the stack file, else None (reported elsewhere)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _fleet_problems(key: str, runner: Mapping[str, Any], builds: bool) -> list[str]:
    """The rules between a runner's mode and fleet keys; `builds`: the runner builds release or review
    images (the build stack's)."""
    fleet = runner.get("fleet")
    if runner.get("mode", "host") == "host" and fleet is not None:
        return [f"{key}.fleet is set but {key}.mode is host: set {key}.mode to fleet, or remove {key}.fleet"]
    if runner.get("mode") != "fleet" or not isinstance(fleet, dict):
        return []  # host mode, a mode that is reported as such, or the fleet's defaults
    problems = []
    default_max = FleetSettings.model_fields["max_instances"].default
    max_instances = _count(fleet.get("maxInstances", default_max))
    base = _count(fleet.get("onDemandBase"))
    if max_instances is not None and base is not None and base > max_instances:
        problems.append(
            f"{key}.fleet.onDemandBase ({base}) exceeds {key}.fleet.maxInstances ({max_instances}): "
            "the on-demand base is part of the fleet, not added to it; lower onDemandBase or raise maxInstances"
        )
    idle = fleet.get("idle")
    for index, policy in enumerate(idle if isinstance(idle, list) else []):
        count = _count(policy.get("idleCount")) if isinstance(policy, dict) else None
        if max_instances is not None and count is not None and count > max_instances:
            problems.append(
                f"{key}.fleet.idle[{index}].idleCount ({count}) exceeds {key}.fleet.maxInstances ({max_instances}): "
                "each worker takes one job, so no more workers than maxInstances can wait idle"
            )
    instance_types = fleet.get("instanceTypes")
    for index, instance_type in enumerate(instance_types if isinstance(instance_types, list) else []):
        if (
            builds
            and isinstance(instance_type, str)
            and instance_type in ec2_instance_types()  # an unknown type is reported as such
            and architecture(instance_type) == "arm64"
        ):
            # R22, as for the host below: in fleet mode the workers run the builds.
            problems.append(
                f"{key}.fleet.instanceTypes[{index}] {instance_type} is a Graviton (arm64) type, but this stack's "
                "workers build the linux/amd64 images Heroku runs (R22): choose x86_64 types such as m7i.large "
                "or m6i.large"
            )
    return problems


# S3 bucket names: 3 to 63 lowercase letters, digits and hyphens (dots would break TLS for
# virtual-hosted requests). A fleet's job cache is `shipyard-<stack>-[review-]runner-cache-<account>`
# (runner_name below), so the stack name decides whether S3 takes it.
CACHE_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def runner_name(stack: str, review: bool, cache_account: str | None = None) -> str:
    """A runner's name in AWS, `shipyard-<stack>-[review-]runner`: its host's Auto Scaling group (its
    workers' adds `-workers`). With the account's id, its fleet's job cache bucket
    `shipyard-<stack>-[review-]runner-cache-<account>` (S3 names are global). One formula for what
    infra/components/runner.py creates, what `_cache_bucket_problems` measures and what the CI roles
    may touch (infra/ops/ci_permissions.py), so that the three cannot drift apart."""
    name = f"shipyard-{stack}-{'review-' if review else ''}runner"
    return name if cache_account is None else f"{name}-cache-{cache_account}"


def workers_name(stack: str, review: bool) -> str:
    """The Auto Scaling group of a runner's workers in fleet mode, `<runner_name>-workers`."""
    return f"{runner_name(stack, review)}-workers"


def signing_key_alias(stack: str) -> str:
    """The alias of the build stack's image-signing key (infra/components/signing.py), which the CI
    roles may manage (infra/ops/ci_permissions.py)."""
    return f"alias/shipyard-{stack}-image-signing"


def _cache_bucket_problems(key: str, stack: str) -> list[str]:
    review = key.endswith(":reviewRunner")
    longest = runner_name(stack, review, "0" * 12)  # every account id has 12 digits
    if CACHE_BUCKET.fullmatch(longest):
        return []
    room = 63 - len(longest) + len(stack)
    return [
        f"{key}.mode fleet: the job cache bucket of stack {stack!r} would be named "
        f"{runner_name(stack, review, '<account id>')}, which S3 refuses: bucket names are lowercase "
        f"letters, digits and hyphens, 63 characters at most, so this stack's name may have at most {room} "
        "of those characters"
    ]


def _cross_problems(data: Mapping[str, Any]) -> list[str]:
    """Rules between keys, checked on the raw values so they are reported with every other problem."""
    problems = []
    if "registry" in data and "buildStack" in data:
        problems.append(
            f"{NAMESPACE}:registry and {NAMESPACE}:buildStack: a stack either owns the registry or reads it "
            "from its build stack, not both"
        )
    if "registry" not in data and "buildStack" not in data:
        problems.append(
            f"{NAMESPACE}:buildStack is required in a stack without {NAMESPACE}:registry "
            "(e.g. organization/shipyard/staging)"
        )
    heroku, sensitive = data.get("heroku"), data.get("herokuSensitiveConfigVars")
    if isinstance(heroku, dict) and isinstance(heroku.get("configVars"), dict) and isinstance(sensitive, dict):
        clash = set(heroku["configVars"]) & set(sensitive)
        if clash:
            problems.append(
                f"{NAMESPACE}:heroku.configVars and {NAMESPACE}:herokuSensitiveConfigVars both set "
                f"{', '.join(sorted(clash))}; Heroku rejects duplicate config vars (H5)"
            )
    if isinstance(heroku, dict) and heroku.get("acm") is True:
        sizes = [f.get("size", "") for f in (heroku.get("formation") or {}).values() if isinstance(f, dict)]
        if heroku.get("imageReleased") is not True or not sizes or any(s.lower() == "eco" for s in sizes):
            problems.append(
                f"{NAMESPACE}:heroku.acm needs paid dynos running: set it once imageReleased is true and "
                "the formation has no eco dynos (H12)"
            )
    registry = data.get("registry")
    if isinstance(registry, dict) and isinstance(registry.get("name"), str):
        name, review = registry["name"], registry.get("reviewName")
        if review == name:
            problems.append(
                f"{NAMESPACE}:registry.reviewName must differ from {NAMESPACE}:registry.name: merge-request "
                "images must not share the release repository (G11)"
            )
        if review is None and len(name) + len(REVIEW_NAME_SUFFIX) > 256:
            problems.append(
                f"{NAMESPACE}:registry.name is too long to add `{REVIEW_NAME_SUFFIX}` for the review repository "
                f"(ECR allows 256 characters): set {NAMESPACE}:registry.reviewName"
            )
    runner, review_runner = data.get("runner"), data.get("reviewRunner")
    if "registry" in data and isinstance(runner, dict) and runner.get("protectedOnly") is not True:
        # G11: the build stack's runner pushes and signs the images production releases; were it to
        # take merge-request jobs, any merge request could write them.
        problems.append(
            f"{NAMESPACE}:runner.protectedOnly must be true in the build stack (the one with "
            f"{NAMESPACE}:registry): its role pushes and signs release images, and an unprotected runner also "
            f"runs merge-request jobs, which could then write what production runs (G11). Set "
            f"{NAMESPACE}:runner.protectedOnly to true and add {NAMESPACE}:reviewRunner for merge-request builds"
        )
    if "reviewRunner" in data and "registry" not in data:
        problems.append(
            f"{NAMESPACE}:reviewRunner belongs to the build stack (the one with {NAMESPACE}:registry), where "
            "merge-request images are built; remove it here"
        )
    for key, settings in (("runner", runner), ("reviewRunner", review_runner)):
        if isinstance(settings, dict):
            problems.extend(_fleet_problems(f"{NAMESPACE}:{key}", settings, builds="registry" in data))
            if settings.get("mode") == "fleet":
                problems.extend(_cache_bucket_problems(f"{NAMESPACE}:{key}", str(data.get("stack", ""))))
        instance_type = settings.get("instanceType") if isinstance(settings, dict) else None
        if (
            "registry" in data
            and not (isinstance(settings, dict) and settings.get("mode") == "fleet")  # the manager runs no job
            and isinstance(instance_type, str)
            and instance_type in ec2_instance_types()  # an unknown type is reported as such
            and architecture(instance_type) == "arm64"
        ):
            # R22: Heroku runs linux/amd64 images; BuildKit's RUN steps fail on a Graviton host with
            # "exec format error" unless QEMU emulation is set up, and emulated builds are several
            # times slower. The build stack's runners (release and review builds) are therefore x86_64
            # hosts; deploy runners may be Graviton.
            problems.append(
                f"{NAMESPACE}:{key}.instanceType {instance_type} is a Graviton (arm64) type, but this stack's "
                f"{key} builds the linux/amd64 images Heroku runs (R22): choose an x86_64 type such as "
                "t3.large or m7i.large"
            )
    api_key = data.get("herokuApiKey")
    if isinstance(api_key, str) and (problem := maskable_problem(api_key)):
        problems.append(f"{NAMESPACE}:herokuApiKey {problem}")
    review_key = data.get("herokuReviewApiKey")
    if isinstance(review_key, str) and (problem := maskable_problem(review_key)):
        problems.append(f"{NAMESPACE}:herokuReviewApiKey {problem}")
    if "review" in data and "registry" not in data:
        problems.append(
            f"{NAMESPACE}:review belongs to the build stack (the one with {NAMESPACE}:registry), whose GitLab "
            "variables merge-request pipelines read; remove it here"
        )
    if "review" in data and review_key is None:
        problems.append(
            f"{NAMESPACE}:review needs {NAMESPACE}:herokuReviewApiKey: the token of a Heroku team member with no "
            "access to the staging and production apps; set it with `pulumi config set --secret "
            "herokuReviewApiKey …` (README, Review apps)"
        )
    review = data.get("review")
    review_vars = review.get("configVars") if isinstance(review, dict) else None
    if isinstance(review_vars, dict):
        secrets = {v for v in sensitive.values() if isinstance(v, str)} if isinstance(sensitive, dict) else set()
        secrets |= {k for k in (api_key, review_key) if isinstance(k, str)}
        leaked = sorted(k for k, v in review_vars.items() if isinstance(v, str) and v in secrets)
        if leaked:
            problems.append(
                f"{NAMESPACE}:review.configVars: {', '.join(leaked)} take the value of a secret of this stack (a "
                "sensitive config var or an API key); review apps run the code of any merge request and their "
                "config vars are plain text in a CI/CD variable; give them values of their own"
            )
    if isinstance(review_key, str) and review_key == api_key:
        problems.append(
            f"{NAMESPACE}:herokuReviewApiKey must differ from {NAMESPACE}:herokuApiKey: review jobs run the code "
            "of any merge request, so their key must not reach the staging or production app"
        )
    return problems


def parse_settings(
    config: Mapping[str, Any], secret_keys: Iterable[str], stack: str, project_dir: Path | None = None
) -> Settings:
    """Validate the flat config map Pulumi gives a program; raise SettingsError with every problem.

    `config` maps full keys (`shipyard:heroku`, `aws:region`) to the CLI's string values
    (objects JSON-encoded); `secret_keys` are the keys the stack holds as secrets. With a
    `project_dir` that holds Pulumi.yaml, these settings are also checked against the other stack
    files there (infra/stacks.py).
    """
    secret_keys = set(secret_keys)
    problems: list[str] = []
    data: dict[str, Any] = {"stack": stack}
    prefix = f"{NAMESPACE}:"
    for full_key, raw in config.items():
        if full_key == "aws:region":
            data["aws:region"] = raw
        elif full_key in PROVIDER_SECRET_KEYS and full_key not in secret_keys:
            problems.append(
                f"{full_key} is stored in plain text; set it with `pulumi config set --secret {full_key}` "
                "or the provider's environment variable (H9, G1)"
            )
        elif full_key.startswith(prefix):
            key = full_key[len(prefix) :]
            if key in SECRET_SETTING_KEYS and full_key not in secret_keys:
                problems.append(
                    f"{full_key} is stored in plain text; set it with `pulumi config set --secret "
                    f"{'--path ' if key in _OBJECT_KEYS else ''}{key} …`"
                )
                continue
            if key in _OBJECT_KEYS and isinstance(raw, str):
                try:
                    raw = json.loads(raw)
                except json.JSONDecodeError:
                    problems.append(f"{full_key} must be a YAML map (set keys with `pulumi config set --path`)")
                    continue
            data[key] = raw
    problems.extend(_cross_problems(data))
    if project_dir is not None and (project_dir / "Pulumi.yaml").exists():
        from infra.stacks import OPAQUE_SECRET, problems_of_stack  # imported here: it imports this module

        # This stack's settings as its file holds them, secrets opaque.
        own = {k: OPAQUE_SECRET if prefix + k in secret_keys else v for k, v in data.items() if ":" not in k}
        del own["stack"]
        problems.extend(problems_of_stack(project_dir, stack, own))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems.extend(_format(e) for e in exc.errors())
        raise SettingsError(problems) from None
    if problems:
        raise SettingsError(problems)
    return settings


def load_settings(project_dir: Path | None = None) -> Settings:
    """Read the running program's configuration (inside `pulumi up` or the offline plan), checked
    against the stack files in `project_dir` too when it is given."""
    from pulumi.runtime import config as runtime_config

    config = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | runtime_config._SECRET_KEYS.get()
    return parse_settings(config, secret_keys, pulumi.get_stack(), project_dir)
