"""The policies' less travelled branches, each with a violating resource: IAM `NotAction` and
`NotResource`, IPv6 and rule-resource ingress, secrets known only by their `[secret]` value, every
token shape in user data, EC2 instances, and production recognised by either of its marks.

Each case runs both ways a plan is judged: `check` over plain values (plan documents) and the pack as
`pulumi preview --policy-pack` runs it, with the properties wrapped in the policy SDK's proxies."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest

from policy.policies import SECRET, Resource
from tests.policy.pack import changed, one, violations

# Staging has two runners, `runner-…` (release builds) and `review-runner-…`: the variants below start
# from the release build runner's resources, named.

# --- IAM ------------------------------------------------------------------------------------------


def with_statement(policy: Resource, statement: dict[str, Any], as_object: bool = False) -> Resource:
    document = {"Version": "2012-10-17", "Statement": statement if as_object else [statement]}
    return changed(policy, policy=json.dumps(document))


def test_not_action_allows_every_action(plans: dict[str, list[Resource]]) -> None:  # guards R1, R7
    policy = one(plans["staging"], "aws:iam/rolePolicy:RolePolicy", named="runner-least-privilege")
    all_but_iam = {"Sid": "AllButIam", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}
    assert violations("iam-least-privilege", with_statement(policy, all_but_iam)) == [
        "AllButIam allows every action (NotAction)"
    ]
    # Denying everything but a few actions grants nothing.
    deny = {"Effect": "Deny", "NotAction": ["ecr:BatchGetImage"], "Resource": "*"}
    assert violations("iam-least-privilege", with_statement(policy, deny)) == []


def test_not_resource_allows_every_other_resource(plans: dict[str, list[Resource]]) -> None:  # guards R1
    policy = one(plans["staging"], "aws:iam/rolePolicy:RolePolicy", named="runner-least-privilege")
    elsewhere = {
        "Sid": "AnyParameter",
        "Effect": "Allow",
        "Action": ["ssm:GetParameter", "ecr:GetAuthorizationToken"],
        "NotResource": "arn:aws:ssm:eu-west-1:123456789012:parameter/shipyard/prod/*",
    }
    assert violations("iam-least-privilege", with_statement(policy, elsewhere)) == [
        'AnyParameter allows ssm:GetParameter on every resource (`Resource: "*"`)'
    ]


def test_a_single_statement_object_and_a_managed_policy_are_read_too(plans: dict[str, list[Resource]]) -> None:
    policy = one(plans["staging"], "aws:iam/rolePolicy:RolePolicy", named="runner-least-privilege")
    wildcard = {"Sid": "Wide", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": ["arn:x", "*"]}
    assert violations("iam-least-privilege", with_statement(policy, wildcard, as_object=True)) == [
        'Wide allows ssm:GetParameter on every resource (`Resource: "*"`)'
    ]
    document = with_statement(policy, wildcard).props["policy"]
    managed = Resource("aws:iam/policy:Policy", "deploy", "urn:managed", {"policy": document})
    assert violations("iam-least-privilege", managed) == [
        'Wide allows ssm:GetParameter on every resource (`Resource: "*"`)'
    ]


# --- security groups ------------------------------------------------------------------------------


def test_inline_ipv6_ingress_from_anywhere(plans: dict[str, list[Resource]]) -> None:  # guards R13
    group = one(plans["staging"], "aws:ec2/securityGroup:SecurityGroup", named="runner-sg")
    https6 = {"protocol": "tcp", "fromPort": 443, "toPort": 443, "ipv6CidrBlocks": ["2001:db8::/32", "::/0"]}
    assert violations("no-ingress-from-anywhere", changed(group, ingress=[https6])) == [
        "ingress from 2001:db8::/32 on ports 443-443",
        "ingress from ::/0 on ports 443-443",
    ]
    # guards R15: a narrower range is still an address range; only a security group may reach a host
    scoped = {**https6, "ipv6CidrBlocks": ["2001:db8::/32"]}
    assert violations("no-ingress-from-anywhere", changed(group, ingress=[scoped])) == [
        "ingress from 2001:db8::/32 on ports 443-443"
    ]
    assert violations("no-ingress-from-anywhere", changed(group, ingress=[])) == []


@pytest.mark.parametrize(
    ("cidrs", "opened"), [({"cidrBlocks": ["0.0.0.0/0"]}, "0.0.0.0/0"), ({"ipv6CidrBlocks": ["::/0"]}, "::/0")]
)
def test_a_security_group_rule_resource_with_ingress_from_anywhere(cidrs: dict[str, Any], opened: str) -> None:
    rule = Resource(
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        "ssh",
        "urn:ssh",
        {"type": "ingress", "protocol": "tcp", "fromPort": 22, "toPort": 22, **cidrs},
    )
    assert violations("no-ingress-from-anywhere", rule) == [f"ingress from {opened} on ports 22-22"]


def test_an_ingress_rule_resource_from_any_ipv4_address() -> None:  # guards R13
    rule = Resource(
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "ssh",
        "urn:ssh4",
        {"cidrIpv4": "0.0.0.0/0", "fromPort": 22, "toPort": 22, "ipProtocol": "tcp"},
    )
    assert violations("no-ingress-from-anywhere", rule) == ["ingress from 0.0.0.0/0 on ports 22-22"]
    assert violations("no-ingress-from-anywhere", changed(rule, cidrIpv4="10.0.0.0/16")) == [
        "ingress from 10.0.0.0/16 on ports 22-22"
    ]


def test_ssh_from_another_security_group_is_the_one_ingress_between_groups() -> None:  # guards R13, R15
    # A fleet runner's workers take SSH from the manager's security group, and nothing else.
    rule = Resource(
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "runner-workers-ssh-from-manager",
        "urn:workers-ssh",
        {"securityGroupId": "sg-workers", "referencedSecurityGroupId": "sg-manager", "ipProtocol": "tcp",
         "fromPort": 22, "toPort": 22},
    )  # fmt: skip
    assert violations("no-ingress-from-anywhere", rule) == []
    docker = changed(rule, fromPort=2375, toPort=2375)
    assert violations("no-ingress-from-anywhere", docker) == [
        "ingress from security group sg-manager on tcp ports 2375-2375: between security groups only SSH "
        "(tcp 22) from the runner manager to its workers is allowed"
    ]
    assert len(violations("no-ingress-from-anywhere", changed(rule, ipProtocol="-1", fromPort=None, toPort=None))) == 1
    # An address range on the same port is judged as before: from anywhere it is refused.
    opened = {k: v for k, v in rule.props.items() if k != "referencedSecurityGroupId"} | {"cidrIpv4": "0.0.0.0/0"}
    from_anywhere = Resource(rule.type, rule.name, rule.urn, opened)
    assert violations("no-ingress-from-anywhere", from_anywhere) == ["ingress from 0.0.0.0/0 on ports 22-22"]


def test_inline_and_legacy_rules_from_groups_are_held_to_ssh_too() -> None:  # guards R13
    group = Resource(
        "aws:ec2/securityGroup:SecurityGroup",
        "workers",
        "urn:sg",
        {"ingress": [{"protocol": "tcp", "fromPort": 0, "toPort": 65535, "securityGroups": ["sg-manager"]}]},
    )
    assert violations("no-ingress-from-anywhere", group) == [
        "ingress from security group sg-manager on tcp ports 0-65535: between security groups only SSH "
        "(tcp 22) from the runner manager to its workers is allowed"
    ]
    ssh = {"protocol": "tcp", "fromPort": 22, "toPort": 22, "securityGroups": ["sg-manager"]}
    assert violations("no-ingress-from-anywhere", changed(group, ingress=[ssh])) == []
    legacy = Resource(
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        "all-from-self",
        "urn:self",
        {"type": "ingress", "protocol": "-1", "fromPort": 0, "toPort": 0, "self": True},
    )
    assert [m.split(":")[0] for m in violations("no-ingress-from-anywhere", legacy)] == [
        "ingress from security group itself on -1 ports 0-0"
    ]


# --- secrets known by their value -----------------------------------------------------------------


def test_a_parameter_holding_a_secret_value_under_a_plain_name(plans: dict[str, list[Resource]]) -> None:  # guards R1
    parameter = one(plans["staging"], "aws:ssm/parameter:Parameter", named="runner-token")
    database = changed(parameter, name="/shipyard/staging/database-url", type="String", value=SECRET)
    assert violations("secret-parameter-is-secure-string", database) == [
        "parameter /shipyard/staging/database-url holds a secret but is a String, readable without decryption"
    ]
    assert violations("secret-parameter-is-secure-string", changed(database, type="SecureString")) == []
    assert violations("secret-parameter-is-secure-string", changed(database, value="eu-west-1")) == []


def test_a_ci_variable_holding_a_secret_value_under_a_plain_name(plans: dict[str, list[Resource]]) -> None:
    # guards G1, G4: the value is secret, the name says nothing of it
    app_name = one(plans["prod"], "gitlab:index/projectVariable:ProjectVariable", key="HEROKU_APP_NAME")
    database = changed(app_name, key="DATABASE_URL", value=SECRET, masked=False, protected=False)
    assert violations("ci-secrets-masked", database) == [
        "DATABASE_URL (production) is not masked: it shows in job logs",
        "DATABASE_URL of production is not protected: merge-request pipelines receive it",
    ]
    assert violations("ci-secrets-masked", changed(database, masked=True, protected=True)) == []
    assert violations("ci-secrets-masked", changed(database, value="postgres", masked=False)) == []


def test_a_token_shaped_value_in_a_plain_config_var(plans: dict[str, list[Resource]]) -> None:  # guards H5
    app = one(plans["staging"], "heroku:app/app:App")
    leaky = changed(app, configVars={"DEPLOY_HOOK_AUTH": "HRKU-leakedHerokuKey0123", "LOG_LEVEL": "info"})
    assert violations("heroku-secrets-sensitive", leaky) == [
        "config var DEPLOY_HOOK_AUTH holds a credential in plain text"
    ]


# --- user data ------------------------------------------------------------------------------------


def gzipped(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode())).decode()


@pytest.mark.parametrize(
    ("line", "token", "shown"),
    [
        ("curl -H 'PRIVATE-TOKEN: {}' https://gitlab.com/api/v4/user", "glpat-leakedPersonal1234567", "glpat"),
        ("export HEROKU_API_KEY={}", "HRKU-leakedHerokuKey01234", "HRKU-"),
        ("aws configure set aws_access_key_id {}", "ASIAABCDEFGHIJKLMNOP", "ASIAA"),
    ],
)
def test_every_token_shape_in_launch_template_user_data(
    plans: dict[str, list[Resource]], line: str, token: str, shown: str
) -> None:  # guards R1
    template = one(plans["staging"], "aws:ec2/launchTemplate:LaunchTemplate", named="runner-lt")
    leaked = changed(template, userData=gzipped(f"#!/bin/bash\n{line.format(token)}\n"))
    found = violations("no-credential-in-user-data", leaked)
    assert found == [f"the user data holds a credential ({shown}…)"]
    assert token not in found[0]  # the violation never repeats the credential


def test_an_instances_base64_user_data_is_scanned() -> None:  # guards R1
    token = "glpat-leakedPersonal1234567"
    instance = Resource("aws:ec2/instance:Instance", "host", "urn:i", {"userDataBase64": gzipped(f"TOKEN={token}\n")})
    assert violations("no-credential-in-user-data", instance) == ["the user data holds a credential (glpat…)"]


# --- EC2 instances --------------------------------------------------------------------------------


def test_an_instances_volumes_are_encrypted() -> None:  # guards R14
    encrypted = {
        "metadataOptions": {"httpTokens": "required"},
        "rootBlockDevice": {"encrypted": True},
        "ebsBlockDevices": [{"deviceName": "/dev/sdf", "encrypted": "true"}],
    }
    instance = Resource("aws:ec2/instance:Instance", "host", "urn:i", encrypted)
    assert violations("ebs-encrypted", instance) == []
    plain_root = changed(instance, rootBlockDevice={"encrypted": False})
    assert violations("ebs-encrypted", plain_root) == ["the root volume is not encrypted"]
    plain_data = changed(instance, ebsBlockDevices=[{"deviceName": "/dev/sdf"}])
    assert violations("ebs-encrypted", plain_data) == ["the EBS volume on /dev/sdf is not encrypted"]
    assert violations("imdsv2-required", changed(instance, metadataOptions={"httpTokens": "optional"})) == [
        "the instance metadata service accepts IMDSv1 (metadataOptions.httpTokens is 'optional')"
    ]


# --- production -----------------------------------------------------------------------------------


PRODUCTION_MARKS = {
    "environment tier": "gitlab:index/projectEnvironment:ProjectEnvironment",
    "coupling stage": "heroku:pipeline/coupling:Coupling",
}


@pytest.mark.parametrize("kept", PRODUCTION_MARKS)
def test_either_mark_of_production_requires_a_protected_app(plans: dict[str, list[Resource]], kept: str) -> None:
    # Production recognised by one mark alone: the other mark's resource is not in the stack.
    dropped = next(t for name, t in PRODUCTION_MARKS.items() if name != kept)
    stack = [r for r in plans["prod"] if r.type != dropped]
    unprotected = [changed(r, protect=False) if r.type == "heroku:app/app:App" else r for r in stack]
    assert violations("production-protected", *unprotected) == ["production app acme-storefront is not protected"]
