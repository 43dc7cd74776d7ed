"""The operations room: shipyard's operations on AWS and GitLab themselves, through their APIs
(boto3, python-gitlab) rather than through Pulumi, for what the stacks cannot own: the access
shipyard's own pipeline needs before any stack exists (`shipyard ci-access`). Never imported by
the program; the `shipyard` command calls into it."""
