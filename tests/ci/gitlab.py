"""Reading GitLab CI files the way GitLab does, as far as the pipeline tests need: `!reference`
tags, `extends`, `include` (an application including the template), what a job takes from
`default:` and the global `variables:` (`inherit`), and which jobs a pipeline runs given its
variables (workflow and job `rules`), with their `when`, `allow_failure` and rule variables."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KEYWORDS = {"workflow", "stages", "variables", "default", "include", "image", "services", "cache", "before_script"}
# What a job takes from `default:` unless it sets it or opts out with `inherit: default:`
# (https://docs.gitlab.com/ci/yaml/#default). The top-level forms of some of them are the
# deprecated spelling of the same defaults.
DEFAULT_KEYWORDS = (
    "after_script",
    "artifacts",
    "before_script",
    "cache",
    "hooks",
    "id_tokens",
    "image",
    "interruptible",
    "retry",
    "services",
    "tags",
    "timeout",
)
LEGACY_DEFAULTS = ("image", "services", "cache", "before_script", "after_script")


class Reference(list[str]):
    """A `!reference [job, key]` tag, kept as the path it points to."""


class Loader(yaml.SafeLoader):
    pass


Loader.add_constructor("!reference", lambda loader, node: Reference(loader.construct_sequence(node)))  # type: ignore[arg-type]


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.load(path.read_text(), Loader=Loader))  # a SafeLoader subclass


def include(main: dict[str, Any], *included: dict[str, Any]) -> dict[str, Any]:
    """The configuration GitLab builds from a project's CI file and the files it includes: deep
    merge of maps, and the including file wins (https://docs.gitlab.com/ci/yaml/includes/)."""
    merged: dict[str, Any] = {}
    for doc in included:
        merged = merge(merged, doc)
    return merge(merged, {k: v for k, v in main.items() if k != "include"})


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`extends`: maps merge deeply, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def expand(doc: dict[str, Any], value: Any) -> Any:
    """`!reference`s replaced by what they point to; a referenced list inside a list is spliced in,
    as GitLab flattens nested arrays in `script` and `rules`."""
    if isinstance(value, Reference):
        target: Any = doc
        for part in value:
            target = target[part]
        return expand(doc, target)
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            expanded = expand(doc, item)
            if isinstance(item, Reference) and isinstance(expanded, list):
                out.extend(expanded)
            else:
                out.append(expanded)
        return out
    if isinstance(value, dict):
        return {key: expand(doc, item) for key, item in value.items()}
    return value


def resolve(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """A job with its `extends` merged in (not yet its defaults: see `effective`)."""
    job = doc[name]
    parents = job.get("extends", [])
    resolved: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        resolved = merge(resolved, resolve(doc, parent))
    return merge(resolved, {k: v for k, v in job.items() if k != "extends"})


def jobs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: resolve(doc, name) for name in doc if name not in KEYWORDS and not name.startswith(".")}


def _inherits(setting: Any, key: str) -> bool:
    return setting is True or (isinstance(setting, list) and key in setting)


def variable_value(value: Any) -> str:
    """A `variables:` entry: a string, or a map with `value` (and `description`, `expand`…)."""
    return str(value.get("value", "")) if isinstance(value, dict) else str(value)


def effective(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """The job GitLab runs: `extends` and `!reference`s resolved, then what it inherits from
    `default:` and the global `variables:`, as its `inherit:` allows
    (https://docs.gitlab.com/ci/yaml/#inherit)."""
    job = expand(doc, resolve(doc, name))
    inherit = job.get("inherit", {})
    defaults = {key: doc[key] for key in LEGACY_DEFAULTS if key in doc} | dict(doc.get("default", {}))
    for key in DEFAULT_KEYWORDS:
        if key in defaults and key not in job and _inherits(inherit.get("default", True), key):
            job[key] = expand(doc, copy.deepcopy(defaults[key]))
    inherited = {
        key: variable_value(value)
        for key, value in doc.get("variables", {}).items()
        if _inherits(inherit.get("variables", True), key)
    }
    job["variables"] = inherited | {key: variable_value(value) for key, value in job.get("variables", {}).items()}
    return job


def script_lines(doc: dict[str, Any], job: dict[str, Any], key: str = "script") -> list[str]:
    """A job's script with `!reference`s expanded."""
    return [str(line) for line in expand(doc, job.get(key, []))]


_TOKEN = re.compile(r'\s*(\$\w+|"[^"]*"|\'[^\']*\'|==|!=|&&|\|\||\(|\)|null)')


def evaluate(expression: str, variables: dict[str, str]) -> bool:
    """A rules `if:` expression: `$VAR` (set and non-empty), `==`, `!=` against strings, `null` or
    other variables, `&&`, `||`, parentheses. Anything else is refused, so a test never guesses."""
    python: list[str] = []
    expression, position = expression.strip(), 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if not match:
            raise ValueError(f"unsupported rules syntax at {expression[position:]!r}")
        token = match.group(1)
        position = match.end()
        if token.startswith("$"):
            python.append(f"v({token[1:]!r})")
        elif token in ("&&", "||"):
            python.append({"&&": " and ", "||": " or "}[token])
        elif token == "null":
            python.append("None")
        else:
            python.append(token)
    return bool(eval("".join(python), {"v": variables.get}))  # only checked tokens reach eval


@dataclass(frozen=True)
class Planned:
    """A job as a pipeline creates it."""

    when: str
    allow_failure: bool
    variables: dict[str, str] = field(default_factory=dict)  # from the rule that admitted it

    @property
    def blocks(self) -> bool:
        """A manual job that may not fail holds the pipeline "blocked" until someone runs it (G9)."""
        return self.when == "manual" and not self.allow_failure


def plan(doc: dict[str, Any], variables: dict[str, str]) -> dict[str, Planned]:
    """Job name → how it is planned, for the pipeline GitLab would create with these variables ({}
    if none). Rules see the pipeline's variables over the job's YAML variables (and the global ones
    it inherits). `allow_failure` defaults to true for a manual job without rules and to false for
    everything else, a manual job made so by `rules:` included (https://docs.gitlab.com/ci/yaml/#allow_failure)."""
    for rule in doc.get("workflow", {}).get("rules", []):
        if "if" not in rule or evaluate(rule["if"], variables):
            if rule.get("when") == "never":
                return {}
            break
    else:
        if "workflow" in doc:
            return {}
    planned = {}
    for name in jobs(doc):
        job = effective(doc, name)
        visible = job["variables"] | variables
        job_allow_failure = job.get("allow_failure")
        if "rules" not in job:
            when = job.get("when", "on_success")
            allow_failure = bool(job_allow_failure) if job_allow_failure is not None else when == "manual"
            rule_variables: dict[str, str] = {}
        else:
            when, allow_failure, rule_variables = "never", False, {}
            for rule in job["rules"]:
                if "if" not in rule or evaluate(rule["if"], visible):
                    when = rule.get("when", job.get("when", "on_success"))
                    allow_failure = bool(rule.get("allow_failure", job_allow_failure or False))
                    rule_variables = {key: variable_value(value) for key, value in rule.get("variables", {}).items()}
                    break
        if when != "never":
            planned[name] = Planned(when, allow_failure, rule_variables)
    return planned


def pipeline(doc: dict[str, Any], variables: dict[str, str]) -> dict[str, str]:
    """Job name → `when` for the pipeline GitLab would create with these variables ({} if none)."""
    return {name: planned.when for name, planned in plan(doc, variables).items()}
