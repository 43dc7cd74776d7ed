"""Pipeline source by job by credentials, for both GitLab CI files: which jobs each kind of pipeline
runs, how (`when`, `allow_failure`), on which runner, and which credentials reach them.

Protected variables reach protected refs only (G4). The default branch is protected (the README
requires it: production's variables are protected); the other refs here are not. A fork's
merge-request pipeline runs in the fork, with none of the project's variables or runners.
`python -m tests.ci.matrix` prints the table.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.ci.gitlab import Planned, effective, load, plan

ROOT = Path(__file__).resolve().parents[2]
OWN = ROOT / ".gitlab-ci.yml"
TEMPLATE = ROOT / "ci" / "delivery.gitlab-ci.yml"
DEFAULT_BRANCH = "main"


@dataclass(frozen=True)
class Source:
    label: str
    variables: dict[str, str]  # what GitLab sets for this kind of pipeline
    protected: bool
    fork: bool = False


def _branch(source: str, branch: str) -> dict[str, str]:
    return {"CI_PIPELINE_SOURCE": source, "CI_COMMIT_BRANCH": branch, "CI_DEFAULT_BRANCH": DEFAULT_BRANCH}


_MERGE_REQUEST = {
    "CI_PIPELINE_SOURCE": "merge_request_event",
    "CI_MERGE_REQUEST_IID": "7",
    "CI_DEFAULT_BRANCH": DEFAULT_BRANCH,
    "CI_OPEN_MERGE_REQUESTS": "acme/app!7",
    "CI_MERGE_REQUEST_PROJECT_PATH": "acme/app",
}

SOURCES = {
    source.label: source
    for source in (
        Source(
            "merge request",
            _MERGE_REQUEST | {"CI_PROJECT_PATH": "acme/app", "CI_MERGE_REQUEST_SOURCE_PROJECT_PATH": "acme/app"},
            protected=False,
        ),
        Source(
            "merge request from a fork",
            _MERGE_REQUEST | {"CI_PROJECT_PATH": "someone/app", "CI_MERGE_REQUEST_SOURCE_PROJECT_PATH": "someone/app"},
            protected=False,
            fork=True,
        ),
        Source("push, default branch", _branch("push", DEFAULT_BRANCH), protected=True),
        Source("push, other branch", _branch("push", "add-worker"), protected=False),
        Source("schedule, default branch", _branch("schedule", DEFAULT_BRANCH), protected=True),
        Source("schedule, other branch", _branch("schedule", "nightly-experiment"), protected=False),
        Source("web, default branch", _branch("web", DEFAULT_BRANCH), protected=True),
        Source("api, default branch", _branch("api", DEFAULT_BRANCH), protected=True),
        # A tag pipeline: GitLab sets CI_COMMIT_TAG and no CI_COMMIT_BRANCH.
        Source(
            "tag", {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v1.4.0", "CI_DEFAULT_BRANCH": DEFAULT_BRANCH}, False
        ),
    )
}


@dataclass(frozen=True)
class Variable:
    """A CI/CD variable of the project's settings."""

    key: str
    protected: bool
    scope: str = "*"  # environment scope
    secret: bool = True
    value: str = "set"  # what rules see; only whether it is set matters here


def reaches(variable: Variable, source: Source, environment: str | None) -> bool:
    """GitLab hands a project variable to a job when the pipeline runs in the project, the ref is
    protected or the variable is not (G4), and the job's environment matches its scope (G5)."""
    if source.fork or (variable.protected and not source.protected):
        return False
    return variable.scope == "*" or (environment is not None and fnmatch.fnmatchcase(environment, variable.scope))


# --- this repository's pipeline: the variables its header documents ------------------------------

_HEADER_LINE = re.compile(
    r"^#   ((?:[A-Z][A-Z0-9_]*)(?:, [A-Z][A-Z0-9_]*)*): (protected|unprotected)(, not a secret)?\."
)


def own_variables(path: Path = OWN) -> dict[str, Variable]:
    """The CI/CD variables .gitlab-ci.yml's header asks for, protected or not as it says."""
    found = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        match = _HEADER_LINE.match(line)
        if match:
            for key in match.group(1).split(", "):
                found[key] = Variable(key, match.group(2) == "protected", secret=not match.group(3))
    return found


PULUMI_COMMAND = re.compile(r"\bpulumi (?:preview|up|refresh|destroy)\b")


def own_uses(doc: dict[str, Any], name: str, variables: dict[str, Variable]) -> set[str]:
    """The documented variables a job of this repository's pipeline takes its credentials from: those
    its YAML maps (`AWS_ROLE_ARN: $PREVIEW_AWS_ROLE_ARN`), those its script names, and the state
    backend's for the Pulumi CLI."""
    job = effective(doc, name)
    text = repr(job.get("variables", {})) + repr(job.get("script", []))
    used = {key for key in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text) if key in variables}
    if PULUMI_COMMAND.search(repr(job.get("script", []))) and "PULUMI_ACCESS_TOKEN" not in job["variables"]:
        used.add("PULUMI_ACCESS_TOKEN")  # read by the CLI from the job's environment
    return used


def own_token(doc: dict[str, Any], name: str, source: Source, variables: dict[str, Variable]) -> str | None:
    """Which documented variable ends up as the job's PULUMI_ACCESS_TOKEN: a project variable of that
    name, where it reaches the job, outranks the job's YAML mapping (GitLab's variable precedence)."""
    token = variables.get("PULUMI_ACCESS_TOKEN")
    if token and reaches(token, source, None):
        return token.key
    mapped = effective(doc, name)["variables"].get("PULUMI_ACCESS_TOKEN", "")
    key = mapped.lstrip("$").strip("{}")
    return key if key in variables and reaches(variables[key], source, None) else None


# --- the delivery template: runners and the variables shipyard's stacks provision -----------------

# The runners of the contract: who may use each, and what its instance role may do (G11).
RUNNERS = {
    "review": ("any ref", "review role: push the review repository, pull the release repository's cache"),
    "build": ("protected refs", "release build role: push the release repository, kms:Sign, scan findings"),
    "production": ("protected refs", "production deploy role: pull the release repository, scan findings"),
}


def runner(job: dict[str, Any], planned: Planned) -> str:
    """The runner a template job is tagged for, with its rule's variables expanded."""
    values = job.get("variables", {}) | planned.variables
    tags = [re.sub(r"\$(\w+)", lambda m: values.get(m.group(1), ""), tag) for tag in job.get("tags", [])]
    [name] = [tag for tag in tags if tag in RUNNERS]
    return name


def environment_of(job: dict[str, Any]) -> str | None:
    environment = job.get("environment")
    return environment["name"] if isinstance(environment, dict) else environment


@dataclass(frozen=True)
class Row:
    file: str
    source: str
    job: str
    when: str
    allow_failure: bool
    runner: str
    uses: tuple[str, ...]  # the credentials the job takes and gets
    idle: tuple[str, ...]  # protected credentials that reach the job without its using them


def own_plan(doc: dict[str, Any], source: Source) -> dict[str, Planned]:
    """This repository's pipeline for a source, its rules seeing the project variables that reach it
    (the preview runs where PREVIEW_AWS_ROLE_ARN does)."""
    visible = {v.key: v.value for v in own_variables().values() if reaches(v, source, None)}
    return plan(doc, source.variables | visible)


def _own_rows(doc: dict[str, Any], source: Source) -> list[Row]:
    documented = own_variables()
    found = []
    for name, planned in own_plan(doc, source).items():
        uses = own_uses(doc, name, documented)
        token = own_token(doc, name, source, documented) if "PULUMI_ACCESS_TOKEN" in uses else None
        if token:
            uses = (uses - {"PULUMI_ACCESS_TOKEN"}) | {token}
        receives = {v.key for v in documented.values() if v.secret and reaches(v, source, None)}
        idle = {key for key in receives - uses if documented[key].protected}
        found.append(
            Row(".gitlab-ci.yml", source.label, name, planned.when, planned.allow_failure, "(any)",
                tuple(sorted(uses & receives)), tuple(sorted(idle)))
        )  # fmt: skip
    return found


def _template_rows(doc: dict[str, Any], source: Source, variables: dict[str, Variable]) -> list[Row]:
    """A template job uses its runner's role and every secret it gets (HEROKU_API_KEY of its environment)."""
    found = []
    for name, planned in plan(doc, source.variables).items():
        job = effective(doc, name)
        environment = environment_of(job)
        secrets = sorted(
            f"{v.key} ({v.scope})" for v in variables.values() if v.secret and reaches(v, source, environment)
        )
        used = runner(job, planned)
        found.append(
            Row("delivery template", source.label, name, planned.when, planned.allow_failure, used,
                (RUNNERS[used][1], *secrets), ())
        )  # fmt: skip
    return found


def rows(template_variables: dict[str, Variable]) -> list[Row]:
    """Every job of every kind of pipeline in both files, with the credentials within its reach."""
    own, template = load(OWN), load(TEMPLATE)
    found: list[Row] = []
    for source in SOURCES.values():
        found += _own_rows(own, source) + _template_rows(template, source, template_variables)
    return found


def markdown(found: list[Row]) -> str:
    lines = [
        "| pipeline | file | job | when | allow_failure | runner "
        "| credentials it gets and uses | protected ones it gets unused |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in found:
        lines.append(
            f"| {row.source} | {row.file} | `{row.job}` | {row.when} | {str(row.allow_failure).lower()} | {row.runner} "
            f"| {', '.join(row.uses) or '-'} | {', '.join(row.idle) or '-'} |"
        )
    return "\n".join(lines)


def provisioned(runs: dict[str, Any]) -> dict[str, Variable]:
    """The CI/CD variables the stacks' offline runs create, keyed by key and scope."""
    found = {}
    for run in runs.values():
        for step in run.resources("gitlab:index/projectVariable:ProjectVariable"):
            inputs = step.raw_inputs
            variable = Variable(
                inputs["key"],
                bool(inputs.get("protected")),
                inputs.get("environmentScope", "*"),
                bool(inputs.get("masked")),
            )
            found[f"{variable.key}@{variable.scope}"] = variable
    return found


if __name__ == "__main__":
    from tests.conftest import run_stack, stack_document

    print(
        markdown(rows(provisioned({stack: run_stack(stack_document(stack), stack) for stack in ("staging", "prod")})))
    )
