"""The `shipyard` command: the offline plan and what drives it. Never imported by the program."""
