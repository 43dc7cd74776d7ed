"""How the stacks read each other: the outputs the build stack exports for the others, and the
cross-stack rules that only the pair of stacks can check.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra.settings import NAMESPACE, Settings, SettingsError

# The build stack's exports that other stacks read with a StackReference.
REGISTRY_URL = "registryUrl"
REGISTRY_ARN = "registryArn"
PIPELINE_ID = "pipelineId"
ENVIRONMENT = "environment"
GITLAB_PROJECT = "gitlabProject"
# `basic` or `enhanced` (shipyard:registry.scanning): deploy runners reading enhanced findings need more.
REGISTRY_SCANNING = "registryScanning"
BUILD_STACK_OUTPUTS = (REGISTRY_URL, REGISTRY_ARN, PIPELINE_ID, ENVIRONMENT, GITLAB_PROJECT, REGISTRY_SCANNING)


@dataclass
class BuildStack:
    """What a stack that does not own the registry reads from the one that does."""

    reference: pulumi.StackReference
    registry_url: pulumi.Output[str]
    registry_arn: pulumi.Output[str]
    pipeline_id: pulumi.Output[str]
    registry_scanning: pulumi.Output[str]


def read_build_stack(settings: Settings) -> BuildStack:
    assert settings.build_stack is not None  # settings rule: required without `registry`
    ref = pulumi.StackReference(settings.build_stack)

    def same_project_other_environment(values: list[str]) -> str:
        environment, project = values
        problems = []
        if environment == settings.environment:
            # Both stacks would own the same environment-scoped variables; the second fails (G5).
            problems.append(
                f"{NAMESPACE}:environment is {environment!r} in the build stack {settings.build_stack} too; "
                "each stack needs its own environment"
            )
        if project != settings.gitlab_project:
            problems.append(
                f"{NAMESPACE}:gitlabProject is {settings.gitlab_project!r} but the build stack "
                f"{settings.build_stack} serves {project!r}; the deploy jobs would miss the registry variables"
            )
        if problems:
            raise SettingsError(problems)
        return environment

    checked = pulumi.Output.all(ref.require_output(ENVIRONMENT), ref.require_output(GITLAB_PROJECT)).apply(
        same_project_other_environment
    )

    def read(name: str) -> pulumi.Output[str]:
        # Every value read from the build stack waits for the check, so a mismatch stops the run.
        return pulumi.Output.all(checked, ref.require_output(name)).apply(lambda values: values[1])

    # A build stack deployed before it exported its scan type scanned with basic scanning: read it
    # without requiring it, so that this stack's preview works before the build stack's next `up`.
    scanning = pulumi.Output.all(checked, ref.get_output(REGISTRY_SCANNING)).apply(lambda values: values[1] or "basic")
    return BuildStack(
        reference=ref,
        registry_url=read(REGISTRY_URL),
        registry_arn=read(REGISTRY_ARN),
        pipeline_id=read(PIPELINE_ID),
        registry_scanning=scanning,
    )
