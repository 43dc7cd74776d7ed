"""GitLab's side of one environment: the environment itself and the CI/CD variables that carry
the deploy credentials to its jobs. The build stack also owns the unscoped variables and, with review
apps, those of the review jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gitlab as gitlab

from infra.settings import SettingsError, maskable_problem

UNSCOPED = "*"
# The environments of review apps, `review/<ref slug>`, one per merge request.
REVIEW_SCOPE = "review/*"


@dataclass
class Variable:
    key: str
    value: pulumi.Input[str]
    secret: bool = False
    """Masked, hidden where enabled, a Pulumi secret in state (G1, G2, G3)."""
    description: str = ""


@dataclass
class CiVariablesArgs:
    project: str
    environment: str
    """GitLab environment name; also the tier (`staging` or `production`)."""
    external_url: pulumi.Input[str]
    scoped: list[Variable]
    """Reach only jobs whose `environment:` is this environment (G5)."""
    unscoped: list[Variable] = field(default_factory=list)
    """Build stack only: two stacks owning one key and scope fail at apply time (G5)."""
    review: list[Variable] = field(default_factory=list)
    """Build stack only: reach the review jobs alone (scope `review/*`), never protected, since
    merge-request pipelines run them."""
    protected: bool = False
    """Production: scoped variables reach protected branches and tags only (G4)."""
    hide_secrets: bool = True
    adopt_environment_id: int | None = None
    """The id of an existing environment of this name to import instead of creating one (G7)."""


def require_maskable(key: str, value: pulumi.Input[str]) -> pulumi.Output[str]:
    """The value as a secret Output that fails with a clear message if GitLab cannot mask it (G2).

    Values known when the settings are read are checked there already; this catches values that
    only resolve during the deployment (another resource's output), before GitLab answers 400.
    """

    def check(raw: str) -> str:
        problem = maskable_problem(raw)
        if problem:
            raise SettingsError([f"CI/CD variable {key}: the value {problem}"])
        return raw

    return pulumi.Output.secret(pulumi.Output.from_input(value).apply(check))


def environment_import_id(project: str, environment_id: int | None) -> str | None:
    """The import ID of an existing environment: `<project>:<environment id>`
    (terraform-provider-gitlab docs/resources/project_environment.md, "Import").

    The provider reads the project back from this ID, and a changed `project` replaces the
    environment (`ForceNew`; gitlabhq/terraform-provider-gitlab@85965e2
    internal/provider/resource_gitlab_project_environment.go): the project is written here exactly
    as the program passes it, never re-spelled (a numeric id for a path would differ)."""
    return None if environment_id is None else f"{project}:{environment_id}"


# Logical names stay unique per key and scope; the environment's own scope has none.
SUFFIXES = {UNSCOPED: "-all", REVIEW_SCOPE: "-review"}


class CiVariables(pulumi.ComponentResource):
    """A GitLab environment and the CI/CD variables of this stack."""

    environment: gitlab.ProjectEnvironment
    variables: dict[str, gitlab.ProjectVariable]

    def __init__(self, name: str, args: CiVariablesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("shipyard:gitlab:CiVariables", name, None, opts)
        self.environment = gitlab.ProjectEnvironment(
            name,
            project=args.project,
            name=args.environment,  # explicit: the bridge auto-names otherwise (G7)
            tier=args.environment,
            external_url=args.external_url,
            # Destroying an environment that is still available fails otherwise (G7).
            stop_before_destroy=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Names are unique per project: a replacement must not be created next to the old one.
                delete_before_replace=True,
                # An environment that an earlier deploy job created is adopted, not created a second
                # time (GitLab answers 400 "Name has already been taken") (G7).
                import_=environment_import_id(args.project, args.adopt_environment_id),
            ),
        )
        self.variables = {}
        for variable in args.scoped:
            self._variable(name, args, variable, scope=args.environment, protected=args.protected)
        for variable in args.unscoped:
            self._variable(name, args, variable, scope=UNSCOPED, protected=False)
        for variable in args.review:
            self._variable(name, args, variable, scope=REVIEW_SCOPE, protected=False)
        self.register_outputs({"environment": self.environment.name})

    def _variable(self, name: str, args: CiVariablesArgs, variable: Variable, scope: str, protected: bool) -> None:
        # The provider does not mark `value` secret: wrap it, or it lands in state in plain text (G1).
        value = require_maskable(variable.key, variable.value) if variable.secret else variable.value
        resource = gitlab.ProjectVariable(
            f"{name}-{variable.key.lower().replace('_', '-')}{SUFFIXES.get(scope, '')}",
            project=args.project,
            key=variable.key,
            value=value,
            environment_scope=scope,
            protected=protected,
            masked=variable.secret,
            # `hidden` needs `masked` and is fixed once created (G3).
            hidden=variable.secret and args.hide_secrets,
            raw=True,
            description=variable.description or None,
            # The variable belongs to its environment: created after it, gone before it. Key and
            # scope are unique: a replacement (e.g. `hidden` changed, G3) must not meet the old one.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.environment], delete_before_replace=True),
        )
        self.variables[f"{scope}/{variable.key}"] = resource
