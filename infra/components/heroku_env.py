"""The Heroku side of one environment: the container-stack app, its config vars, features,
pipeline coupling and formation; and the pipeline itself, which the build stack owns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi
from pulumiverse_heroku import app as heroku_app
from pulumiverse_heroku import formation as heroku_formation
from pulumiverse_heroku import pipeline as heroku_pipeline
from pulumiverse_heroku import team as heroku_team


@dataclass
class FormationEntry:
    size: str
    quantity: int


@dataclass
class HerokuEnvironmentArgs:
    app_name: str
    """Explicit and globally unique (H1, H2)."""
    region: str
    stage: Literal["staging", "production"]
    pipeline_id: pulumi.Input[str]
    team: str | None = None
    config_vars: dict[str, str] = field(default_factory=dict)
    sensitive_config_vars: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    formation: dict[str, FormationEntry] = field(default_factory=dict)
    """Applied only when `image_released` (H6)."""
    image_released: bool = False
    acm: bool = False


class HerokuEnvironment(pulumi.ComponentResource):
    """A Heroku app on the container stack, coupled to the pipeline at its stage."""

    app: heroku_app.App
    features: list[heroku_app.Feature]
    coupling: heroku_pipeline.Coupling
    formations: list[heroku_formation.Formation]
    app_id: pulumi.Output[str]
    web_url: pulumi.Output[str]
    registry_image: str
    formation_skipped: bool

    def __init__(self, name: str, args: HerokuEnvironmentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("shipyard:heroku:Environment", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Region, space or team changes replace the app; its fixed name would collide with the
        # replacement unless the old one goes first (H4).
        replaceable = pulumi.ResourceOptions(parent=self, delete_before_replace=True)

        self.app = heroku_app.App(
            name,
            name=args.app_name,
            region=args.region,
            stack="container",
            organization=heroku_app.AppOrganizationArgs(name=args.team) if args.team else None,
            acm=args.acm,
            config_vars=args.config_vars,
            # Secrets only here: the provider stores config_vars in plain text (H5).
            sensitive_config_vars=pulumi.Output.secret(args.sensitive_config_vars)
            if args.sensitive_config_vars
            else None,
            opts=replaceable,
        )
        # Child resources take the app's UUID, not its name (H3).
        self.app_id = self.app.id
        self.web_url = self.app.web_url
        self.registry_image = f"registry.heroku.com/{args.app_name}/web"

        self.features = [
            heroku_app.Feature(
                f"{name}-{feature}",
                app_id=self.app_id,
                name=feature,  # the bridge would ask Heroku for `preboot-1a2b3c4` otherwise (H2)
                enabled=True,
                opts=child,
            )
            for feature in args.features
        ]

        self.coupling = heroku_pipeline.Coupling(
            f"{name}-coupling",
            app_id=self.app_id,
            pipeline=args.pipeline_id,
            stage=args.stage,
            opts=replaceable,
        )

        # A container app has no process types before its first image release, and Formation
        # fails on it (H6); the delivery pipeline releases images, so scaling waits for it.
        self.formation_skipped = bool(args.formation) and not args.image_released
        self.formations = [
            heroku_formation.Formation(
                f"{name}-{process}",
                app_id=self.app_id,
                type=process,
                size=entry.size,
                quantity=entry.quantity,
                opts=child,
            )
            for process, entry in (args.formation.items() if args.image_released else ())
        ]

        self.register_outputs({"appId": self.app_id, "webUrl": self.web_url})


@dataclass
class HerokuPipelineArgs:
    name: str
    team: str | None = None


class HerokuPipeline(pulumi.ComponentResource):
    """The Heroku pipeline that groups the environments' apps. Owned by the build stack.

    Heroku deletes a pipeline with no coupled app within an hour (H11): the build stack always
    couples its own app in the same deployment.
    """

    pipeline: heroku_pipeline.Pipeline
    pipeline_id: pulumi.Output[str]

    def __init__(self, name: str, args: HerokuPipelineArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("shipyard:heroku:Pipeline", name, None, opts)
        owner = None
        if args.team:
            team = heroku_team.get_team_output(name=args.team, opts=pulumi.InvokeOutputOptions(parent=self))
            owner = heroku_pipeline.PipelineOwnerArgs(id=team.id, type="team")
        self.pipeline = heroku_pipeline.Pipeline(
            name,
            name=args.name,  # explicit: the bridge auto-names otherwise (H2)
            owner=owner,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.pipeline_id = self.pipeline.id
        self.register_outputs({"pipelineId": self.pipeline_id})
