"""What every EC2 instance shipyard launches has in its launch template, a runner host or a fleet's
worker alike: Amazon Linux 2023 resolved at each launch, IMDSv2 only, and an encrypted gp3 root
volume on the AMI's own root device."""

from __future__ import annotations

from pulumi_aws import ec2

from infra.settings import architecture

# Amazon Linux 2023 through EC2's own resolution of AWS's public parameter: every launch (and so
# every self-heal, every new worker) gets the current patched AMI without a change here.
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
# The AMI's own root device; a volume on any other name is a second, unused disk (R10).
ROOT_DEVICE = "/dev/xvda"


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
