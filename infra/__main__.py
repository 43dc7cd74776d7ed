"""shipyard's Pulumi program: stack settings → components → exports.

Run by Pulumi's language host with `infra/` first on sys.path (P7); `infra` itself is importable
because `make setup` installs the project into the virtualenv Pulumi uses.
"""

import json
from pathlib import Path

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
from infra.components.runner import GitlabRunner, GitlabRunnerArgs, RunnerPurpose
from infra.components.signing import SigningKey, SigningKeyArgs
from infra.settings import RunnerSettings, load_settings

# The language host runs the program from the project directory (P7), beside the stack files: a
# stack whose app, environment or registry another stack file holds too, or whose buildStack names no
# build stack here, is refused with the settings' other mistakes (infra/stacks.py).
settings = load_settings(project_dir=Path.cwd())
# Production resources refuse deletion and replacement until someone unprotects them on purpose.
protect = pulumi.ResourceOptions(protect=settings.is_production)


def gitlab_runner(
    name: str,
    runner: RunnerSettings,
    purpose: RunnerPurpose,
    registry_arn: pulumi.Input[str],
    enhanced_scanning: pulumi.Input[bool],
    review_registry_arn: pulumi.Input[str] | None = None,
) -> GitlabRunner:
    return GitlabRunner(
        name,
        GitlabRunnerArgs(
            stack=settings.stack,
            gitlab_project=settings.gitlab_project,
            gitlab_url=settings.gitlab_url,
            region=settings.aws_region,
            instance_type=runner.instance_type,
            concurrent=runner.concurrent,
            disk_gb=runner.disk_gb,
            tags=runner.tags,
            protected_only=runner.protected_only,
            maximum_timeout=runner.maximum_timeout,
            purpose=purpose,
            repository_arn=registry_arn,
            review_repository_arn=review_registry_arn,
            enhanced_scanning=enhanced_scanning,
            gitlab_runner_version=runner.gitlab_runner_version,
            docker_version=runner.docker_version,
            subnet_ids=runner.subnet_ids,
            fleet=runner.fleet if runner.mode == "fleet" else None,
        ),
        opts=protect,
    )


runners: dict[str, GitlabRunner] = {}  # export prefix → runner
unscoped: list[Variable] = []
build_exports: dict[str, pulumi.Input[str]] = {}
if settings.registry is not None:
    registry = Registry(
        "registry",
        RegistryArgs(
            name=settings.registry.name,
            review_name=settings.registry.review_repository,
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
    enhanced = settings.registry.scanning == "enhanced"
    # Only protected refs write release images (G11): the build stack's runner builds, pushes and
    # signs them and takes protected refs only (a settings rule); merge-request builds run on the
    # review runner, which may push to the review repository alone.
    if settings.runner is not None:
        runners["runner"] = gitlab_runner("runner", settings.runner, "release", registry_arn, enhanced)
    if settings.review_runner is not None:
        runners["reviewRunner"] = gitlab_runner(
            "review-runner", settings.review_runner, "review", registry_arn, enhanced, registry.review_repository_arn
        )
    signing = SigningKey(
        "image-signing",
        SigningKeyArgs(
            # The release build's jobs sign: on its host, or in fleet mode on its workers.
            stack=settings.stack,
            signer_role_arn=runners["runner"].job_role.arn if "runner" in runners else None,
        ),
        opts=protect,
    )
    # Unscoped: every job of the project reads them, in merge requests too. None is a secret: ARNs
    # and URLs grant nothing (G8), and the public key is public.
    unscoped = [
        Variable("ECR_REPOSITORY_URL", registry_url, description="Release images: default-branch builds (shipyard)"),
        Variable(
            "ECR_REVIEW_REPOSITORY_URL",
            registry.review_repository_url,
            description="Merge-request images, never released (shipyard)",
        ),
        Variable("AWS_DEFAULT_REGION", settings.aws_region, description="Region of the registry (shipyard)"),
        Variable("ECR_CACHE_TAG", settings.registry.cache_tag, description="The build's layer-cache tag (shipyard)"),
        Variable(
            "SHIPYARD_SIGNING_KEY",
            signing.signing_key_uri,
            description="KMS key that signs release images, for cosign sign (shipyard)",
        ),
        # Several lines, so GitLab could not mask it, and it needs no masking. Variables are raw (no
        # `$` expansion): the PEM reaches the job exactly as KMS gave it.
        Variable(
            "SHIPYARD_SIGNING_PUBLIC_KEY",
            signing.public_key_pem,
            description="Public key of the signing key, for cosign verify (shipyard)",
        ),
        Variable(
            "SHIPYARD_SCAN_THRESHOLD",
            settings.registry.scan_threshold,
            description="Scan findings of this severity or worse block a release (shipyard)",
        ),
    ]
    build_exports = {
        wiring.REGISTRY_SCANNING: settings.registry.scanning,
        "reviewRegistryUrl": registry.review_repository_url,
        "imageSigningKeyArn": signing.key_arn,
        "imageSigningPublicKey": signing.public_key_pem,
    }
else:
    build = wiring.read_build_stack(settings)
    registry_url, registry_arn, pipeline_id = build.registry_url, build.registry_arn, build.pipeline_id
    # Any other stack's runner deploys: it pulls release images and reads their scan findings.
    if settings.runner is not None:
        enhanced_scanning = build.registry_scanning.apply(lambda scanning: scanning == "enhanced")
        runners["runner"] = gitlab_runner("runner", settings.runner, "deploy", registry_arn, enhanced_scanning)

# Review apps: what the review jobs of merge-request pipelines read, scoped to their environments
# `review/<ref slug>` so that no deploy job of staging or production sees them, nor they the deploy
# ones. Unprotected, since merge-request pipelines run on unprotected refs; the key is that of a Heroku
# team member who cannot reach the staging or production app (`shipyard verify` checks it).
review_variables: list[Variable] = []
if settings.review is not None and settings.heroku_review_api_key is not None:
    review = settings.review
    review_variables = [
        Variable(
            "HEROKU_REVIEW_API_KEY",
            pulumi.Output.secret(settings.heroku_review_api_key.get_secret_value()),
            secret=True,
            description="Heroku key of the review jobs, without access to staging or production (shipyard)",
        ),
        Variable(
            "SHIPYARD_REVIEW_APP_PREFIX", review.app_prefix, description="Review apps: <prefix>-mr-<iid> (shipyard)"
        ),
        Variable(
            "SHIPYARD_REVIEW_REGION", settings.review_region, description="Heroku region of review apps (shipyard)"
        ),
        Variable(
            "SHIPYARD_REVIEW_AUTO_STOP_IN", review.auto_stop_in, description="Review environments stop after (shipyard)"
        ),
        Variable("SHIPYARD_REVIEW_MAX_APPS", str(review.max_apps), description="Most review apps at once (shipyard)"),
        Variable("SHIPYARD_REVIEW_DYNO_SIZE", review.dyno_size, description="Web dyno size of review apps (shipyard)"),
        # The build stack's Heroku pipeline: each review app joins it at the stage `review`.
        Variable("SHIPYARD_REVIEW_PIPELINE", pipeline_id, description="Heroku pipeline of review apps (shipyard)"),
        # JSON of plain text: the settings keep secrets out of it (H5), so nothing here is masked.
        Variable(
            "SHIPYARD_REVIEW_CONFIG_VARS",
            json.dumps(review.config_vars, sort_keys=True),
            description="Config vars of every review app, JSON (shipyard)",
        ),
    ]
    if settings.review_team:
        review_variables.append(
            Variable("SHIPYARD_REVIEW_TEAM", settings.review_team, description="Heroku team of review apps (shipyard)")
        )
    build_exports["reviewAppPrefix"] = review.app_prefix

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
        review=review_variables,
        protected=settings.is_production,
        hide_secrets=settings.hide_secret_variables,
        adopt_environment_id=settings.gitlab_environment_id,
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
for name, value in build_exports.items():
    pulumi.export(name, value)
for prefix, runner in runners.items():
    pulumi.export(f"{prefix}Id", runner.runner_id)
    pulumi.export(f"{prefix}AsgName", runner.asg_name)
    pulumi.export(f"{prefix}TokenParameter", runner.token_parameter_name)
    pulumi.export(f"{prefix}RoleArn", runner.role.arn)
    # The role the jobs run with (the workers' in fleet mode): the one the signing key lets sign.
    pulumi.export(f"{prefix}JobRoleArn", runner.job_role.arn)
    pulumi.export(f"{prefix}Tags", runner.tags)  # what CI jobs name in `tags:`
    if runner.fleet is not None:  # what `shipyard verify` checks of a fleet (R15)
        pulumi.export(f"{prefix}WorkersAsgName", runner.fleet.asg_name)
        pulumi.export(f"{prefix}CacheBucket", runner.fleet.cache_bucket.id)
