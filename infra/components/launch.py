"""What every EC2 instance shipyard launches has, a runner host or a fleet's worker alike: a role EC2
may assume, web egress, Amazon Linux 2023 resolved at each launch, IMDSv2 only, an encrypted gp3 root
volume on the AMI's own root device, and the tags its group, instances and volumes carry."""

from __future__ import annotations

import json

from pulumi_aws import autoscaling, ec2

from infra.settings import architecture

# Amazon Linux 2023 through EC2's own resolution of AWS's public parameter: every launch (and so
# every self-heal, every new worker) gets the current patched AMI without a change here.
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
# The AMI's own root device; a volume on any other name is a second, unused disk (R10).
ROOT_DEVICE = "/dev/xvda"


# Where hosts and workers may connect: HTTPS, and HTTP for package mirrors (R13).
WEB_PORTS = (443, 80)


def ec2_assume_role_policy() -> str:
    """The trust policy of an instance role: EC2 may assume it for the instances it launches."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def web_egress() -> list[ec2.SecurityGroupEgressArgs]:
    """Egress on the web ports to anywhere, IPv4 and IPv6, and nowhere else (R13)."""
    return [
        ec2.SecurityGroupEgressArgs(
            protocol="tcp", from_port=port, to_port=port, cidr_blocks=["0.0.0.0/0"], ipv6_cidr_blocks=["::/0"]
        )
        for port in WEB_PORTS
    ]


def instance_tags(name: str, stack: str) -> dict[str, str]:
    """The tags of a group and of what it launches: its name, and the stack that owns it."""
    return {"Name": name, "shipyard:stack": stack}


def launched_tags(tags: dict[str, str]) -> list[ec2.LaunchTemplateTagSpecificationArgs]:
    """The launch template's tags for each instance and its volumes."""
    return [ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=tags) for kind in ("instance", "volume")]


def group_tags(tags: dict[str, str]) -> list[autoscaling.GroupTagArgs]:
    """The group's own tags, which Auto Scaling also puts on every instance it launches."""
    return [autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=True) for k, v in tags.items()]


def image_id(instance_type: str) -> str:
    """The current Amazon Linux 2023 image for the instance type's architecture."""
    return f"resolve:ssm:{AMI_PARAMETER.format(arch=architecture(instance_type))}"


def imdsv2_only() -> ec2.LaunchTemplateMetadataOptionsArgs:
    # IMDSv2 only; hop limit 2 so job containers reach the instance role (R6).
    return ec2.LaunchTemplateMetadataOptionsArgs(
        http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=2
    )


def encrypted_root_volume(disk_gb: int) -> list[ec2.LaunchTemplateBlockDeviceMappingArgs]:
    return [
        ec2.LaunchTemplateBlockDeviceMappingArgs(
            device_name=ROOT_DEVICE,
            ebs=ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                volume_size=disk_gb, volume_type="gp3", encrypted="true", delete_on_termination="true"
            ),
        )
    ]
