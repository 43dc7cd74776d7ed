"""Every policy of the pack, called for real: a passing resource taken from the offline plan of a
committed stack, and a violating variant of it. Then the pack built from the same validators."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import re
import subprocess
import sys
from typing import Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from policy.policies import (
    POLICIES,
    SECRET,
    UNKNOWN,
    Policy,
    Resource,
    check,
    pack_policies,
)
from tests.conftest import ROOT
from tests.policy.pack import BY_NAME, changed, one, through_the_pack, violations

# The staging stack builds with two runners, the release build runner (`runner-…`, protected refs
# only) and the review runner (`review-runner-…`), into two repositories, acme/storefront and
# acme/storefront-review: the variants below start from the release runner's and repository's
# resources, named. Both runners' resources pass in the test of the whole plans.


def test_the_offline_plans_of_both_stacks_pass_every_policy(plans: dict[str, list[Resource]]) -> None:
    for resources in plans.values():
        assert check(resources) == ([], 0)
        for policy in POLICIES:  # and so does the pack, as `pulumi preview --policy-pack` runs it
            assert through_the_pack(policy.name, tuple(resources), parents=True) == [], policy.name
            assert through_the_pack(policy.name, tuple(resources)) == [], policy.name  # and without parents


def test_imdsv2_is_required(plans: dict[str, list[Resource]]) -> None:  # guards R6
    template = one(plans["staging"], "aws:ec2/launchTemplate:LaunchTemplate", named="runner-lt")
    assert violations("imdsv2-required", template) == []
    optional = changed(template, metadataOptions={"httpEndpoint": "enabled", "httpTokens": "optional"})
    assert violations("imdsv2-required", optional) == [
        "the instance metadata service accepts IMDSv1 (metadataOptions.httpTokens is 'optional')"
    ]


def test_a_value_known_only_at_apply_waits_instead_of_failing(plans: dict[str, list[Resource]]) -> None:
    template = one(plans["staging"], "aws:ec2/launchTemplate:LaunchTemplate", named="runner-lt")
    template = changed(template, metadataOptions=UNKNOWN)
    assert check([template], [BY_NAME["imdsv2-required"]]) == ([], 1)


def test_ebs_volumes_are_encrypted(plans: dict[str, list[Resource]]) -> None:  # guards R14
    template = one(plans["staging"], "aws:ec2/launchTemplate:LaunchTemplate", named="runner-lt")
    assert violations("ebs-encrypted", template) == []
    mapping = copy.deepcopy(template.props["blockDeviceMappings"])
    mapping[0]["ebs"]["encrypted"] = "false"
    assert violations("ebs-encrypted", changed(template, blockDeviceMappings=mapping)) == [
        "the EBS volume on /dev/xvda is not encrypted"
    ]
    assert "unencrypted by default" in violations("ebs-encrypted", changed(template, blockDeviceMappings=[]))[0]
    volume = Resource("aws:ebs/volume:Volume", "cache", "urn:cache", {"size": 100})
    assert violations("ebs-encrypted", volume) == ["the EBS volume is not encrypted"]
    assert violations("ebs-encrypted", changed(volume, encrypted=True)) == []


def test_no_security_group_ingress_from_anywhere(plans: dict[str, list[Resource]]) -> None:  # guards R13
    group = one(plans["staging"], "aws:ec2/securityGroup:SecurityGroup", named="runner-sg")
    assert violations("no-ingress-from-anywhere", group) == []  # egress to anywhere is fine
    ssh = {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}
    assert violations("no-ingress-from-anywhere", changed(group, ingress=[ssh])) == [
        "ingress from 0.0.0.0/0 on ports 22-22"
    ]
    rule = Resource("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "https", "urn:r", {"cidrIpv6": "::/0"})
    assert violations("no-ingress-from-anywhere", rule) == ["ingress from ::/0 on ports None-None"]
    egress = Resource(
        "aws:ec2/securityGroupRule:SecurityGroupRule", "out", "urn:e", {"type": "egress", "cidrBlocks": ["0.0.0.0/0"]}
    )
    assert violations("no-ingress-from-anywhere", egress) == []


def test_the_runner_token_parameter_is_a_secure_string(plans: dict[str, list[Resource]]) -> None:  # guards R1
    parameter = one(plans["staging"], "aws:ssm/parameter:Parameter", named="runner-token")
    assert violations("secret-parameter-is-secure-string", parameter) == []
    assert violations("secret-parameter-is-secure-string", changed(parameter, type="String")) == [
        "parameter /shipyard/staging/gitlab-runner-token holds a secret but is a String, readable without decryption"
    ]
    plain = Resource("aws:ssm/parameter:Parameter", "region", "urn:p", {"name": "/app/region", "type": "String"})
    assert violations("secret-parameter-is-secure-string", plain) == []


def test_iam_statements_name_their_actions_and_resources(plans: dict[str, list[Resource]]) -> None:  # guards R1, R7
    policy = one(plans["staging"], "aws:iam/rolePolicy:RolePolicy", named="runner-least-privilege")
    assert violations("iam-least-privilege", policy) == []  # ecr:GetAuthorizationToken on "*" is allowed

    def with_statement(statement: dict[str, Any]) -> Resource:
        return changed(policy, policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))

    everything = with_statement({"Sid": "Admin", "Effect": "Allow", "Action": "*", "Resource": "*"})
    assert violations("iam-least-privilege", everything) == ["Admin allows every action (*)"]
    service = with_statement({"Effect": "Allow", "Action": ["s3:*"], "Resource": "arn:aws:s3:::b/*"})
    assert violations("iam-least-privilege", service) == ["a statement allows every action (s3:*)"]
    unscoped = with_statement(
        {"Sid": "Read", "Effect": "Allow", "Action": ["ssm:GetParameter", "ecr:GetAuthorizationToken"], "Resource": "*"}
    )
    assert violations("iam-least-privilege", unscoped) == [
        'Read allows ssm:GetParameter on every resource (`Resource: "*"`)'
    ]
    deny = with_statement({"Effect": "Deny", "Action": "*", "Resource": "*"})
    assert violations("iam-least-privilege", deny) == []
    role = one(plans["staging"], "aws:iam/role:Role", named="runner-role")
    assert violations("iam-least-privilege", role) == []  # the trust policy is not a grant
    inline = changed(role, inlinePolicies=[{"name": "x", "policy": everything.props["policy"]}])
    assert violations("iam-least-privilege", inline) == ["Admin allows every action (*)"]


def user_data(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode())).decode()


def test_user_data_holds_no_credential(plans: dict[str, list[Resource]]) -> None:  # guards R1
    template = one(plans["staging"], "aws:ec2/launchTemplate:LaunchTemplate", named="runner-lt")
    assert violations("no-credential-in-user-data", template) == []
    token = "glrt-leakedRunnerToken12345"
    leaked = changed(template, userData=user_data(f"#!/bin/bash\ngitlab-runner register --token {token}\n"))
    found = violations("no-credential-in-user-data", leaked)
    assert found == ["the user data holds a credential (glrt-…)"]
    assert token not in found[0]  # the violation never repeats the credential
    assert violations("no-credential-in-user-data", changed(template, userData=SECRET)) == [
        "the user data is a secret value: something secret flowed into it"
    ]
    instance = Resource(
        "aws:ec2/instance:Instance", "host", "urn:i", {"userData": "export AWS_KEY=AKIAABCDEFGHIJKLMNOP"}
    )
    assert violations("no-credential-in-user-data", instance) == ["the user data holds a credential (AKIAA…)"]


def test_pushed_images_are_scanned_by_the_registry_scanning_configuration(
    plans: dict[str, list[Resource]],
) -> None:  # guards R21
    scanning_type = "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"
    repository = one(plans["staging"], "aws:ecr/repository:Repository", name="acme/storefront")
    scanning = one(plans["staging"], scanning_type)
    assert violations("ecr-scan-on-push", *plans["staging"]) == []
    assert violations("ecr-scan-on-push", *plans["prod"]) == []  # no repository, nothing to scan
    unscanned = ["no registry scanning configuration scans the images pushed to repository acme/storefront"]
    # The deprecated per-repository flag does not count.
    flag_only = changed(repository, imageScanningConfiguration={"scanOnPush": True})
    assert violations("ecr-scan-on-push", flag_only) == unscanned
    [rule] = scanning.props["rules"]
    other = {**rule, "repositoryFilters": [{"filter": "acme/checkout*", "filterType": "WILDCARD"}]}
    inner = {**rule, "repositoryFilters": [{"filter": "storefront*", "filterType": "WILDCARD"}]}
    variants = [
        changed(scanning, rules=[other]),  # filters another repository
        changed(scanning, rules=[inner]),  # with a wildcard the filter must match the whole name
        changed(scanning, rules=[{**rule, "scanFrequency": "MANUAL"}]),  # scans nothing by itself
        changed(scanning, scanType="BASIC", rules=[{**rule, "scanFrequency": "CONTINUOUS_SCAN"}]),  # not BASIC's
        changed(scanning, rules=[]),
    ]
    for variant in variants:
        assert violations("ecr-scan-on-push", repository, variant) == unscanned, variant.props
    enhanced = changed(scanning, scanType="ENHANCED", rules=[{**rule, "scanFrequency": "CONTINUOUS_SCAN"}])
    wildcard = changed(
        scanning, rules=[{**rule, "repositoryFilters": [{"filter": "acme/*", "filterType": "WILDCARD"}]}]
    )
    contains = changed(scanning, rules=[{**rule, "repositoryFilters": [{"filter": "store", "filterType": "WILDCARD"}]}])
    for variant in (enhanced, wildcard, contains):  # a filter without `*` matches names that contain it
        assert violations("ecr-scan-on-push", repository, variant) == [], variant.props
    assert check([repository, changed(scanning, scanType=UNKNOWN)], [BY_NAME["ecr-scan-on-push"]]) == ([], 1)
    # The review repository is scanned by the same rule, through its own filter or the release
    # one's (a filter without `*` matches every name that contains it); the review filter alone does
    # not cover the release repository.
    review = one(plans["staging"], "aws:ecr/repository:Repository", name="acme/storefront-review")
    assert violations("ecr-scan-on-push", repository, review, scanning) == []
    review_filter = {"filter": "acme/storefront-review", "filterType": "WILDCARD"}
    review_only = changed(scanning, rules=[{**rule, "repositoryFilters": [review_filter]}])
    assert violations("ecr-scan-on-push", repository, review, review_only) == unscanned


def test_every_repository_has_a_lifecycle(plans: dict[str, list[Resource]]) -> None:
    assert violations("ecr-lifecycle-policy", *plans["staging"]) == []
    lifecycle = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
    # Two repositories in staging, each with its own lifecycle: without any, both are reported.
    without = [r for r in plans["staging"] if r.type != lifecycle]
    assert violations("ecr-lifecycle-policy", *without) == [
        "repository acme/storefront has no lifecycle policy: images pile up",
        "repository acme/storefront-review has no lifecycle policy: images pile up",
    ]
    # The release repository's lifecycle does not cover the review repository: merge-request images
    # need their own (they expire by age).
    review_lifecycle = one(plans["staging"], lifecycle, repository="acme/storefront-review")
    without_review = [r for r in plans["staging"] if r.urn != review_lifecycle.urn]
    assert violations("ecr-lifecycle-policy", *without_review) == [
        "repository acme/storefront-review has no lifecycle policy: images pile up"
    ]


def test_heroku_api_key_is_masked_everywhere_and_protected_in_production(
    plans: dict[str, list[Resource]],
) -> None:  # guards G1, G2, G4
    prod_key = one(plans["prod"], "gitlab:index/projectVariable:ProjectVariable", key="HEROKU_API_KEY")
    staging_key = one(plans["staging"], "gitlab:index/projectVariable:ProjectVariable", key="HEROKU_API_KEY")
    assert violations("ci-secrets-masked", prod_key, staging_key) == []
    assert staging_key.props["protected"] is False  # staging's key need not be protected
    assert violations("ci-secrets-masked", changed(staging_key, masked=False)) == [
        "HEROKU_API_KEY (staging) is not masked: it shows in job logs"
    ]
    assert violations("ci-secrets-masked", changed(prod_key, protected=False)) == [
        "HEROKU_API_KEY of production is not protected: merge-request pipelines receive it"
    ]
    app_name = one(plans["prod"], "gitlab:index/projectVariable:ProjectVariable", key="HEROKU_APP_NAME")
    assert violations("ci-secrets-masked", app_name) == []


def test_heroku_secrets_only_in_sensitive_config_vars(plans: dict[str, list[Resource]]) -> None:  # guards H5
    app = one(plans["staging"], "heroku:app/app:App")
    assert app.props["configVars"] and violations("heroku-secrets-sensitive", app) == []
    leaky = changed(
        app,
        configVars={
            "DATABASE_URL": "postgres://app:hunter2@db.example.com/app",
            "STRIPE_SECRET_KEY": "sk_live_x",
            "PASSED_IN": SECRET,
            "LOG_LEVEL": "info",
        },
    )
    assert violations("heroku-secrets-sensitive", leaky) == [
        "config var DATABASE_URL holds a credential in plain text",
        "config var PASSED_IN holds a secret value in the plain `config_vars`",
        "config var STRIPE_SECRET_KEY looks like a secret and is stored in plain text",
    ]


def test_heroku_apps_run_containers_under_explicit_names(plans: dict[str, list[Resource]]) -> None:  # guards H1, H2
    app = one(plans["staging"], "heroku:app/app:App")
    assert violations("heroku-container-app", app) == []
    assert "not `container`" in violations("heroku-container-app", changed(app, stack="heroku-24"))[0]
    auto = changed(app, name=f"{app.name}-1a2b3c4")
    assert "no explicit name" in violations("heroku-container-app", auto)[0]
    assert "breaks Heroku's rule" in violations("heroku-container-app", changed(app, name="Acme_Web"))[0]


def test_names_the_outside_world_sees_are_explicit(plans: dict[str, list[Resource]]) -> None:  # guards H2, G7
    feature = one(plans["prod"], "heroku:app/feature:Feature")
    environment = one(plans["prod"], "gitlab:index/projectEnvironment:ProjectEnvironment")
    assert violations("explicit-names", feature, environment) == []
    assert violations("explicit-names", changed(feature, name=f"{feature.name}-0a1b2c3")) == [
        f"Feature {feature.name} has no explicit name ('{feature.name}-0a1b2c3')"
    ]
    assert violations("explicit-names", changed(environment, name=None)) == [
        "ProjectEnvironment production has no explicit name (None)"
    ]


def test_production_apps_are_protected(plans: dict[str, list[Resource]]) -> None:
    assert violations("production-protected", *plans["prod"]) == []
    unprotected = [changed(r, protect=False) if r.type == "heroku:app/app:App" else r for r in plans["prod"]]
    assert violations("production-protected", *unprotected) == ["production app acme-storefront is not protected"]
    staging = [changed(r, protect=False) for r in plans["staging"]]
    assert violations("production-protected", *staging) == []  # staging is not production


# --- the pack -------------------------------------------------------------------------------------


def test_every_policy_names_its_pitfall_and_a_fix() -> None:
    assert len({p.name for p in POLICIES}) == len(POLICIES)
    for policy in POLICIES:
        assert policy.description and policy.guards and policy.fix
        assert (policy.check is None) != (policy.check_stack is None), policy.name
        assert bool(policy.types) == (policy.check is not None), policy.name


def test_the_pack_runs_the_same_validators_as_mandatory_policies(plans: dict[str, list[Resource]]) -> None:
    from pulumi_policy import (
        EnforcementLevel,
    )

    built = {p.name: p for p in pack_policies()}
    assert set(built) == set(BY_NAME)
    assert {p.enforcement_level for p in built.values()} == {EnforcementLevel.MANDATORY}

    template = one(plans["staging"], "aws:ec2/launchTemplate:LaunchTemplate", named="runner-lt")
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    reported: list[tuple[str, Any]] = []

    def validate(policy: Policy | str, props: dict[str, Any]) -> None:
        pack_policy = built[policy if isinstance(policy, str) else policy.name]
        assert isinstance(pack_policy, ResourceValidationPolicy)
        args = ResourceValidationArgs(template.type, props, template.urn, template.name, options, None)

        def report(message: str, urn: str | None = None) -> None:
            reported.append((message, urn))

        pack_policy.validate(args, report)

    validate("imdsv2-required", dict(template.props))
    assert reported == []
    validate("imdsv2-required", {**template.props, "metadataOptions": {"httpTokens": "optional"}})
    assert reported == [
        (
            "the instance metadata service accepts IMDSv1 (metadataOptions.httpTokens is 'optional'). Fix: set "
            "metadata_options http_tokens='required' (hop limit 2 for jobs in containers) (R6).",
            None,
        )
    ]


def test_importing_the_validators_starts_no_policy_server() -> None:  # guards P3
    code = "import sys, policy.policies; sys.exit('pulumi_policy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
    main = (ROOT / "policy" / "__main__.py").read_text()
    assert "PolicyPack(" in main and "def " not in main  # the entry point only builds the pack
    importer = re.compile(
        r"^\s*(from policy(\.__main__)? import __main__|from policy\.__main__ |import policy\.__main__)", re.M
    )
    for path in [*ROOT.glob("infra/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("policy/*.py")]:
        assert not importer.search(path.read_text()), path
