"""Reading GitLab CI files the way GitLab does, as far as the pipeline tests need: `!reference`
tags, `extends`, and which jobs a pipeline runs given its variables (workflow and job `rules`)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

KEYWORDS = {"workflow", "stages", "variables", "default", "include", "image", "services", "cache", "before_script"}


class Reference(list[str]):
    """A `!reference [job, key]` tag, kept as the path it points to."""


class Loader(yaml.SafeLoader):
    pass


Loader.add_constructor("!reference", lambda loader, node: Reference(loader.construct_sequence(node)))  # type: ignore[arg-type]


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.load(path.read_text(), Loader=Loader))  # a SafeLoader subclass


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`extends`: maps merge deeply, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolve(doc: dict[str, Any], name: str) -> dict[str, Any]:
    job = doc[name]
    parents = job.get("extends", [])
    resolved: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        resolved = merge(resolved, resolve(doc, parent))
    return merge(resolved, {k: v for k, v in job.items() if k != "extends"})


def jobs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: resolve(doc, name) for name in doc if name not in KEYWORDS and not name.startswith(".")}


def script_lines(doc: dict[str, Any], job: dict[str, Any], key: str = "script") -> list[str]:
    """A job's script with `!reference`s expanded."""
    lines: list[str] = []
    for item in job.get(key, []):
        if isinstance(item, Reference):
            target: Any = doc
            for part in item:
                target = target[part]
            lines.extend(target)
        else:
            lines.append(item)
    return lines


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


def pipeline(doc: dict[str, Any], variables: dict[str, str]) -> dict[str, str]:
    """Job name → `when` for the pipeline GitLab would create with these variables ({} if none)."""
    for rule in doc.get("workflow", {}).get("rules", []):
        if "if" not in rule or evaluate(rule["if"], variables):
            if rule.get("when") == "never":
                return {}
            break
    else:
        if "workflow" in doc:
            return {}
    planned = {}
    for name, job in jobs(doc).items():
        when = job.get("when", "on_success")
        if "rules" in job:
            when = "never"
            for rule in job["rules"]:
                if "if" not in rule or evaluate(rule["if"], variables):
                    when = rule.get("when", "on_success")
                    break
        if when != "never":
            planned[name] = when
    return planned
