"""The rules between this repository's stacks, which no stack file breaks on its own: each Heroku app,
GitLab environment and the registry belong to one stack, and `buildStack` names the stack here that
owns the registry. Also the reading of stack files, for these rules and the offline plan.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.settings import NAMESPACE, SettingsError

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when there is one: the same documents


def shown_path(path: Path) -> str:
    """A path as the user would write it: relative to the working directory when it lies below it."""
    absolute = path.absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def read_stack_file(path: Path, shown_as: str | None = None) -> dict[str, Any]:
    """The `config:` section of a stack file (empty for an empty file).

    Raises SettingsError when the file cannot be read or is not a stack file, naming it `shown_as`
    (the path as the user gave it), else as `shown_path` does.
    """
    name = shown_as or shown_path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SettingsError([f"{name}: no such file"]) from None
    except IsADirectoryError:
        raise SettingsError([f"{name} is a directory, not a stack file"]) from None
    except OSError as exc:
        raise SettingsError([f"{name} cannot be read: {exc.strerror or exc}"]) from None
    # Windows PowerShell's `>` writes UTF-16, a byte-order mark first.
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SettingsError([f"{name} is UTF-16 text (it starts with a byte-order mark); save it as UTF-8"])
    if b"\x00" in data:
        raise SettingsError([f"{name} holds NUL bytes, as UTF-16 text does; save it as UTF-8"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        raise SettingsError([f"{name} is not UTF-8 text (line {bad_line}); save it as UTF-8"]) from None
    try:
        doc = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise SettingsError([f"{name} is not valid YAML{line}: {getattr(exc, 'problem', exc)}"]) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise SettingsError([f"{name} is not a stack file: it must be a YAML map with a `config:` map of settings"])
    config = doc.get("config")
    if not isinstance(config or {}, dict):
        raise SettingsError([f"{name}: `config:` must be a map of settings"])
    return config or {}


# A secret as a stack file holds it: the rules compare text only, so they never read one, while a
# secret `registry` still makes its stack the registry owner.
OPAQUE_SECRET = {"secure": ""}


def settings_of(config: Mapping[str, Any], project: str) -> dict[str, Any]:
    """A stack file's shipyard settings by short key (`heroku` for `shipyard:heroku`, and for `heroku`
    in a project named shipyard), as the program reads them; `secure:` values stay as they are."""
    settings = {}
    for key, value in config.items():
        full = key if ":" in key else f"{project}:{key}"
        if full.startswith(f"{NAMESPACE}:"):
            settings[full.split(":", 1)[1]] = value
    return settings


@dataclass(frozen=True)
class Problem:
    text: str
    stacks: tuple[str, ...]  # the stacks it involves: planning any of them reports it


def _and(names: Iterable[str]) -> str:
    words = sorted(names)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def find_problems(stacks: Mapping[str, Mapping[str, Any]], project: str) -> list[Problem]:
    """Every problem between these stacks (stack name → settings by short key)."""
    apps: dict[str, list[str]] = defaultdict(list)
    environments: dict[tuple[str, str], list[str]] = defaultdict(list)
    project_as_written: dict[str, str] = {}
    owners = sorted(stack for stack, settings in stacks.items() if "registry" in settings)
    for stack, settings in stacks.items():
        heroku = settings.get("heroku")
        if isinstance(heroku, dict) and isinstance(heroku.get("app"), str):
            apps[heroku["app"]].append(stack)
        environment, gitlab_project = settings.get("environment"), settings.get("gitlabProject")
        if isinstance(environment, str) and isinstance(gitlab_project, (str, int)):
            # GitLab finds projects by path whatever the case.
            project_key = str(gitlab_project).casefold()
            project_as_written.setdefault(project_key, str(gitlab_project))
            environments[(project_key, environment)].append(stack)

    problems = [
        Problem(
            f"{NAMESPACE}:heroku.app {app!r} is the app of stacks {_and(names)}: each stack needs its own "
            "Heroku app (H1)",
            tuple(sorted(names)),
        )
        for app, names in apps.items()
        if len(names) > 1
    ]
    problems += [
        Problem(
            f"{NAMESPACE}:environment {environment!r} of GitLab project {project_as_written[project_key]} is "
            f"claimed by stacks {_and(names)}: a GitLab environment and its variables belong to one stack, and "
            "the second one's `pulumi up` fails (G5)",
            tuple(sorted(names)),
        )
        for (project_key, environment), names in environments.items()
        if len(names) > 1
    ]
    if len(owners) > 1:
        problems.append(
            Problem(
                f"{NAMESPACE}:registry is set in stacks {_and(owners)}: one stack, the build stack, owns the "
                f"registry and the unscoped CI/CD variables, and the others name it in {NAMESPACE}:buildStack (G5)",
                tuple(owners),
            )
        )
    for stack, settings in sorted(stacks.items()):
        reference = settings.get("buildStack")
        parts = reference.split("/") if isinstance(reference, str) else []
        if len(parts) != 3 or parts[1] != project:
            continue  # not `org/project/stack` (a settings error), or a stack outside this repository
        org, _, target = parts
        if target not in stacks:
            close = difflib.get_close_matches(target, list(stacks), n=1, cutoff=0.6)
            hint = f"did you mean {org}/{project}/{close[0]}?" if close else f"stacks here: {_and(stacks)}"
            text = f"names stack {target!r}, which has no Pulumi.{target}.yaml here; {hint}"
        elif target not in owners:
            build = f"; the build stack here is {owners[0]}" if len(owners) == 1 else ""
            text = f"names stack {target!r}, which does not own the registry (no {NAMESPACE}:registry){build}"
        else:
            continue
        problems.append(Problem(f"{NAMESPACE}:buildStack of stack {stack} {text}", (stack,)))
    return problems


def project_name(root: Path) -> str:
    try:
        doc = yaml.load((root / "Pulumi.yaml").read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return NAMESPACE
    return str(doc.get("name", NAMESPACE)) if isinstance(doc, dict) else NAMESPACE


def _stacks(root: Path, project: str, skip: str | None = None) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """The settings of every stack file in `root` but `skip`'s; the files that cannot be read, as problems."""
    stacks: dict[str, dict[str, Any]] = {}
    unreadable: list[Problem] = []
    for path in sorted(root.glob("Pulumi.*.yaml")):
        stack = path.name[len("Pulumi.") : -len(".yaml")]
        if stack == skip:
            continue
        try:
            stacks[stack] = settings_of(read_stack_file(path, path.name), project)
        except SettingsError as exc:
            unreadable += [Problem(p, (stack,)) for p in exc.problems]
    return stacks, unreadable


def cross_stack_problems(root: Path) -> list[str]:
    """Every problem between the stack files (`Pulumi.*.yaml`) in `root`, and every file that cannot be read."""
    project = project_name(root)
    stacks, unreadable = _stacks(root, project)
    return [p.text for p in unreadable + find_problems(stacks, project)]


def problems_of_stack(root: Path, stack: str, settings: Mapping[str, Any]) -> list[str]:
    """The problems that involve `stack`, whose `settings` (by short key, secrets as OPAQUE_SECRET)
    stand in for its stack file: the program checks the settings it runs with against the other
    stack files in `root`. Another stack's mistakes are reported when that stack is planned or
    deployed."""
    project = project_name(root)
    stacks, _ = _stacks(root, project, skip=stack)
    stacks[stack] = dict(settings)
    return [p.text for p in find_problems(stacks, project) if stack in p.stacks]
