"""shipyard's Pulumi program: stack settings → components → exports.

Run by Pulumi's language host with `infra/` first on sys.path (P7); `infra` itself is importable
because `make setup` installs the project into the virtualenv Pulumi uses.
"""

import pulumi

from infra import wiring
from infra.components.ci_variables import CiVariables, CiVariablesArgs, Variable
from infra.components.heroku_env import (
    FormationEntry,
    HerokuEnvironment,
    HerokuEnvironmentArgs,
    HerokuPipeline,
    HerokuPipelineArgs,
)
from infra.components.registry import Registry, RegistryArgs
from infra.components.runner import GitlabRunner, GitlabRunnerArgs
from infra.settings import load_settings

settings = load_settings()
# Production resources refuse deletion and replacement until someone unprotects them on purpose.
protect = pulumi.ResourceOptions(protect=settings.is_production)

if settings.registry is not None:
    registry = Registry(
        "registry",
        RegistryArgs(
            name=settings.registry.name,
            keep_images=settings.registry.keep_images,
            cache_tag=settings.registry.cache_tag,
            pull_principals=settings.registry.pull_principals,
            review_image_days=settings.registry.review_image_days,
            scanning=settings.registry.scanning,
        ),
        opts=protect,
    )
    pipeline = HerokuPipeline(
        "pipeline", HerokuPipelineArgs(name=settings.heroku.pipeline, team=settings.heroku.team), opts=protect
    )
    registry_url, registry_arn, pipeline_id = registry.repository_url, registry.repository_arn, pipeline.pipeline_id
else:
    build = wiring.read_build_stack(settings)
    registry_url, registry_arn, pipeline_id = build.registry_url, build.registry_arn, build.pipeline_id

heroku = HerokuEnvironment(
    settings.environment,
    HerokuEnvironmentArgs(
        app_name=settings.heroku.app,
        region=settings.heroku.region,
        stage=settings.environment,
        pipeline_id=pipeline_id,
        team=settings.heroku.team,
        config_vars=settings.heroku.config_vars,
        sensitive_config_vars={k: v.get_secret_value() for k, v in settings.heroku_sensitive_config_vars.items()},
        features=settings.features,
        formation={p: FormationEntry(f.size, f.quantity) for p, f in settings.heroku.formation.items()},
        image_released=settings.heroku.image_released,
        acm=settings.heroku.acm,
    ),
    opts=protect,
)
if heroku.formation_skipped:
    pulumi.log.warn(
        "shipyard:heroku.formation is not applied until shipyard:heroku.imageReleased is true: "
        "a container app has no process types before its first release (H6)"
    )

unscoped = []
if settings.registry is not None:
    unscoped = [
        Variable("ECR_REPOSITORY_URL", registry_url, description="Where the runner pushes images (shipyard)"),
        Variable("AWS_DEFAULT_REGION", settings.aws_region, description="Region of the registry (shipyard)"),
        Variable("ECR_CACHE_TAG", settings.registry.cache_tag, description="The build's layer-cache tag (shipyard)"),
    ]
CiVariables(
    settings.environment,
    CiVariablesArgs(
        project=settings.gitlab_project,
        environment=settings.environment,
        external_url=heroku.web_url,
        scoped=[
            Variable("HEROKU_APP_NAME", settings.heroku.app, description="Heroku app of this environment (shipyard)"),
            Variable("HEROKU_REGISTRY_IMAGE", heroku.registry_image, description="Heroku registry image (shipyard)"),
            Variable(
                "HEROKU_API_KEY",
                pulumi.Output.secret(settings.heroku_api_key.get_secret_value()),
                secret=True,
                description="Heroku deploy key of this environment (shipyard)",
            ),
        ],
        unscoped=unscoped,
        protected=settings.is_production,
        hide_secrets=settings.hide_secret_variables,
        adopt_environment_id=settings.gitlab_environment_id,
    ),
    opts=protect,
)

runner = None
if settings.runner is not None:
    runner = GitlabRunner(
        "runner",
        GitlabRunnerArgs(
            stack=settings.stack,
            gitlab_project=settings.gitlab_project,
            gitlab_url=settings.gitlab_url,
            region=settings.aws_region,
            instance_type=settings.runner.instance_type,
            concurrent=settings.runner.concurrent,
            disk_gb=settings.runner.disk_gb,
            tags=settings.runner.tags,
            protected_only=settings.runner.protected_only,
            maximum_timeout=settings.runner.maximum_timeout,
            repository_arn=registry_arn,
            # The build stack's runner builds and pushes; any other runner deploys and only pulls.
            can_push=settings.is_build_stack,
            gitlab_runner_version=settings.runner.gitlab_runner_version,
            docker_version=settings.runner.docker_version,
            subnet_ids=settings.runner.subnet_ids,
        ),
        opts=protect,
    )

pulumi.export(wiring.ENVIRONMENT, settings.environment)
pulumi.export(wiring.GITLAB_PROJECT, settings.gitlab_project)
pulumi.export(wiring.REGISTRY_URL, registry_url)
pulumi.export(wiring.REGISTRY_ARN, registry_arn)
pulumi.export(wiring.PIPELINE_ID, pipeline_id)
pulumi.export("herokuAppName", settings.heroku.app)
pulumi.export("herokuAppUrl", heroku.web_url)
pulumi.export("herokuRegistryImage", heroku.registry_image)
if runner is not None:
    pulumi.export("runnerId", runner.runner_id)
    pulumi.export("runnerAsgName", runner.asg_name)
    pulumi.export("runnerTokenParameter", runner.token_parameter_name)
    pulumi.export("runnerRoleArn", runner.role.arn)
    pulumi.export("runnerTags", runner.tags)  # what CI jobs name in `tags:`
