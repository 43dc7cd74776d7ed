"""The README's commands work as written: every command in a ```sh block and every inline command
starts with a program a fresh machine has (an external CLI named below, with the reason it may be
assumed), a console script that `make setup` puts in `.venv/bin`, or a path in the repository;
every `.venv/bin/shipyard …` parses with shipyard's own argument parser, so a flag the README
names and shipyard lacks fails here; every `make X` is a Makefile target; and the secrets-provider
keys follow one story in every step. Pure file reads and argument parsing."""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.cli.main import build_diff_parser, build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent  # the .venv/bin that `make setup` made and the tests run in

# Programs the README may run without a path: not shipyard's to install, each with the reason the
# reader has it where the README uses it.
EXTERNAL = {
    "make": "the one tool the README asks of a fresh machine besides Python (`make setup` does the rest)",
    "git": "how the repository got onto the machine",
    "pulumi": "the Pulumi CLI, installed in step 1 of the real path",
    "heroku": "the Heroku CLI, for the long-lived API keys the stacks and CI need",
    "aws": "the AWS CLI: Session Manager shells, ECR look-ups",
    "uv": "the package manager `make setup` installs; only for changing dependencies",
    "sudo": "the distribution's own, to install its packages that some tests run (gpg, cloud-init)",
    "cosign": "runs inside the delivery jobs' image: the README names what the job runs",
    "skopeo": "runs inside the delivery jobs' image: the README names what the job runs",
    "gitlab-runner": "runs on the runner host: the README names what the host runs",
}
# The secrets-provider key of each stack: its own per stack, so that the preview role, which every
# merge request may assume, decrypts staging's secrets and never production's (P1; `shipyard
# ci-access` refuses one key for both). Both come from one `shipyard bootstrap` run, staging's
# first: bootstrap also encrypts the state bucket with its first alias's key.
STACK_KEYS = {"staging": "alias/shipyard-staging", "prod": "alias/shipyard-prod"}

SH_BLOCK = re.compile(r"^[ \t]*```sh[ \t]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
ANY_BLOCK = re.compile(r"^[ \t]*```.*?^[ \t]*```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`]+)`")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PROGRAM = re.compile(r"^[a-z][a-z0-9._-]*$")
SEPARATORS = {"|", "||", "&&", ";"}


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]  # the program and its arguments, environment assignments left out
    source: str  # the README text it came from
    inline: bool

    @property
    def program(self) -> str:
        return self.words[0]


def readme() -> str:
    return README.read_text(encoding="utf-8")


def words_of(text: str) -> list[str]:
    """Shell words; a `<placeholder with spaces>` stays one word, as the reader means it."""
    text = re.sub(r"<[^<>\n]+>", lambda m: m.group(0).replace(" ", "_"), text)
    return shlex.split(text, comments=True)


def split(words: list[str]) -> Iterator[list[str]]:
    """The commands of one shell line: split at pipes and `&&` outside [optional] groups, without
    redirections and leading variable assignments."""
    depth, current = 0, list[str]()
    for word in words:
        depth += word.count("[") - word.count("]")
        if word in SEPARATORS and depth == 0:
            yield current
            current = []
        else:
            current.append(word)
    yield current


def command(words: list[str], source: str, inline: bool) -> Command | None:
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in (">", ">>", "2>", "<"):
            skip = True
        elif not re.match(r"^\d?>", word) and not (ASSIGNMENT.match(word) and not kept):
            kept.append(word)
    return Command(tuple(kept), source, inline) if kept else None


def block_commands(text: str) -> list[Command]:
    found = []
    for block in SH_BLOCK.findall(text):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            for words in split(words_of(line)):
                cmd = command(words, line.strip(), inline=False)
                if cmd:
                    found.append(cmd)
    return found


def looks_like_command(words: list[str]) -> bool:
    """An inline code span that runs something: a known program or shipyard, a path in `.venv/bin`
    or `.tools`, or any program word followed by an option."""
    first = words[0]
    if first in EXTERNAL or first == "shipyard" or first.startswith((".venv/", ".tools/", "./")):
        return True
    return bool(PROGRAM.match(first)) and any(w.startswith("-") and len(w) > 1 for w in words[1:])


def inline_commands(text: str) -> list[Command]:
    found = []
    for span in INLINE.findall(ANY_BLOCK.sub("", text)):
        source = " ".join(span.split())  # a span may wrap a line
        try:
            words = words_of(source)
        except ValueError:  # an unbalanced quote: a value, not a command
            continue
        for part in split(words):
            cmd = command(part, source, inline=True)
            if cmd and looks_like_command(list(cmd.words)):
                found.append(cmd)
    return found


def commands() -> list[Command]:
    return _commands(readme())


@functools.cache
def _commands(text: str) -> list[Command]:
    return block_commands(text) + inline_commands(text)


def console_scripts() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"])


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {
        name for names in re.findall(r"^([A-Za-z0-9_.%-][^:=\n]*):(?!=)", text, re.MULTILINE) for name in names.split()
    }


def strict(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser and its subcommands' parsers without abbreviated options: the README must name a
    flag exactly as shipyard spells it."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                strict(sub)
    return parser


def alternatives(words: list[str], i: int = 0) -> tuple[list[list[str]], int]:
    """Every way to read a synopsis: each [optional] group left out or given, each `a | b` choice."""
    options: list[list[str]] = []
    current: list[list[str]] = [[]]
    while i < len(words) and words[i] != "]":
        if words[i] == "|":
            options, current, i = options + current, [[]], i + 1
        elif words[i] == "[":
            inner, i = alternatives(words, i + 1)
            current, i = [v + w for v in current for w in [[], *inner]], i + 1
        else:
            current, i = [[*v, words[i]] for v in current], i + 1
    return options + current, i


def synopsis_variants(args: tuple[str, ...]) -> list[list[str]]:
    tokens = [t for word in args for t in re.findall(r"\[|\]|[^\[\]]+", word)]
    return alternatives(tokens)[0]


def parse_shipyard(argv: list[str]) -> argparse.Namespace:
    """argv as `shipyard` parses it; SystemExit with argparse's message when it refuses."""
    return _parse(tuple(argv))


@functools.cache
def _parse(argv: tuple[str, ...]) -> argparse.Namespace:
    parser, rest = (build_diff_parser(), argv[2:]) if argv[:2] == ("plan", "diff") else (build_parser(), argv)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return strict(parser).parse_args(list(rest))
    except SystemExit as done:
        if done.code == 0:  # --version or --help: printed, nothing more to parse
            return argparse.Namespace()
        raise SystemExit(err.getvalue().strip().splitlines()[-1]) from None


def shipyard_runs() -> list[tuple[Command, list[str], argparse.Namespace]]:
    """Every reading of every `.venv/bin/shipyard …` command in the README, parsed."""
    runs = []
    for cmd in commands():
        if cmd.program == ".venv/bin/shipyard" and cmd.words[1:]:  # alone, it names the command
            for argv in synopsis_variants(cmd.words[1:]):
                with contextlib.suppress(SystemExit):  # the parser test names those
                    runs.append((cmd, argv, parse_shipyard(argv)))
    return runs


def subcommand_names(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    names = {prefix}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                names |= subcommand_names(sub, (*prefix, name))
    return names


def shipyard_names() -> set[tuple[str, ...]]:
    """`shipyard` alone and each of its commands: `plan`, `plan diff`, `policy check`, …"""
    return subcommand_names(build_parser()) | {("plan", "diff")}


def test_the_scan_finds_the_readme_commands() -> None:
    programs = [c.program for c in commands()]
    assert programs.count(".venv/bin/shipyard") >= 6 and "pulumi" in programs and "make" in programs


def test_every_command_starts_with_a_program_a_fresh_machine_has() -> None:
    scripts, names = console_scripts(), shipyard_names()
    wrong = []
    for cmd in commands():
        program = cmd.program
        if program in EXTERNAL:
            continue
        if program.startswith(".venv/bin/"):
            name = program.removeprefix(".venv/bin/")
            if name in scripts or (VENV_BIN / name).exists():
                continue
            wrong.append(f"{cmd.source!r}: {name} is no console script of pyproject.toml and not in .venv/bin")
        elif program == "shipyard":
            if not (cmd.inline and tuple(cmd.words[1:]) in names):  # an inline name is no command to run
                wrong.append(f"{cmd.source!r}: `shipyard` is not on PATH; run it as .venv/bin/shipyard")
        elif "/" in program:
            if not (ROOT / program).exists():
                wrong.append(f"{cmd.source!r}: no such path in the repository: {program}")
        else:
            wrong.append(f"{cmd.source!r}: {program} is not on a fresh machine's PATH (nor in EXTERNAL, with a reason)")
    assert not wrong, "README commands that cannot run as written:\n" + "\n".join(wrong)


def test_shipyard_is_named_bare_only_as_a_command_name() -> None:
    # Inline mentions such as `shipyard plan diff` name a command; with arguments they are meant to
    # be run, and must say .venv/bin/shipyard like every other step.
    names = shipyard_names()
    wrong = [c.source for c in inline_commands(readme()) if c.program == "shipyard" and tuple(c.words[1:]) not in names]
    assert not wrong, "inline `shipyard …` with arguments; write .venv/bin/shipyard …: " + "; ".join(wrong)


def test_every_shipyard_command_in_the_readme_parses_with_shipyards_own_parser() -> None:
    refused = []
    for cmd in commands():
        if cmd.program != ".venv/bin/shipyard" or not cmd.words[1:]:
            continue
        for argv in synopsis_variants(cmd.words[1:]):
            try:
                parse_shipyard(argv)
            except SystemExit as exc:
                refused.append(f"{cmd.source!r} read as {shlex.join(argv)!r}: {exc}")
    assert not refused, "README shipyard commands that shipyard refuses:\n" + "\n".join(refused)


def test_every_make_target_in_the_readme_is_in_the_makefile() -> None:
    targets = make_targets()
    named = {w for c in commands() if c.program == "make" for w in c.words[1:] if not ASSIGNMENT.match(w)}
    assert named, "the scan found no `make` command in the README"
    assert named <= targets, f"README runs make targets the Makefile lacks: {', '.join(sorted(named - targets))}"


def test_every_step_uses_each_stacks_own_secrets_provider_key() -> None:
    keys = set(STACK_KEYS.values())
    wrong = []
    created: set[str] = set()
    for cmd in commands():
        words = list(cmd.words)
        for word in words:
            for alias in re.findall(r"awskms://(alias/[^?'\s]*)", word):
                if alias not in keys:
                    wrong.append(f"{cmd.source!r}: secrets provider {alias} is not a stack's key ({', '.join(keys)})")
        if words[:3] == ["pulumi", "stack", "init"] and "--secrets-provider" in words:
            stack, provider = words[3], words[words.index("--secrets-provider") + 1]
            if provider.startswith("awskms://") and not provider.startswith(f"awskms://{STACK_KEYS[stack]}?"):
                wrong.append(f"{cmd.source!r}: stack {stack} must use {STACK_KEYS[stack]}")
    for cmd, argv, args in shipyard_runs():
        if argv[0] == "bootstrap":
            from infra.ops.bootstrap import DEFAULT_KMS_ALIASES

            aliases = args.kms_alias or list(DEFAULT_KMS_ALIASES)
            created.update(aliases)
            wrong.extend(f"{cmd.source!r}: {alias} is not a stack's key" for alias in aliases if alias not in keys)
            if aliases[0] != STACK_KEYS["staging"]:
                wrong.append(
                    f"{cmd.source!r}: bootstrap encrypts the bucket with its first alias's key: "
                    f"staging's, {STACK_KEYS['staging']}"
                )
        if argv[0] == "ci-access" and (args.staging_kms_key, args.prod_kms_key) != (
            STACK_KEYS["staging"],
            STACK_KEYS["prod"],
        ):
            wrong.append(f"{cmd.source!r}: ci-access takes {STACK_KEYS['staging']} and {STACK_KEYS['prod']}")
    assert not wrong, "\n".join(wrong)
    assert created == keys, f"the README creates the keys {sorted(created)}, the stacks use {sorted(keys)}"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("```sh\nshipyard plan --stack staging\n```\n", "is not on PATH"),
        ("run `shipyard plan --stack staging` first\n", "with arguments"),
        ("```sh\n.venv/bin/shipyard plan --stack staging --jsn\n```\n", "unrecognized arguments: --jsn"),
        ("```sh\n.venv/bin/shipyard mr-note --stack s --plan p --dry\n```\n", "unrecognized arguments: --dry"),
        ("```sh\nterraform apply\n```\n", "terraform is not on a fresh machine's PATH"),
        ("```sh\nmake deploy\n```\n", "make targets the Makefile lacks: deploy"),
        (
            "```sh\npulumi stack init prod --secrets-provider 'awskms://alias/shipyard-pulumi?region=eu-west-1'\n```\n",
            "alias/shipyard-pulumi is not a stack's key",
        ),
        (
            "```sh\n.venv/bin/shipyard bootstrap --bucket b --region r --kms-alias alias/shipyard-pulumi\n```\n",
            "alias/shipyard-pulumi is not a stack's key",
        ),
        (
            "```sh\n.venv/bin/shipyard bootstrap --bucket b --region r --kms-alias alias/shipyard-prod\n```\n",
            "its first alias's key: staging's",
        ),
    ],
)
def test_the_checks_catch_what_they_guard(monkeypatch: pytest.MonkeyPatch, text: str, problem: str) -> None:
    monkeypatch.setattr(sys.modules[__name__], "readme", lambda: readme_text() + text)
    failures = []
    for check in (
        test_every_command_starts_with_a_program_a_fresh_machine_has,
        test_shipyard_is_named_bare_only_as_a_command_name,
        test_every_shipyard_command_in_the_readme_parses_with_shipyards_own_parser,
        test_every_make_target_in_the_readme_is_in_the_makefile,
        test_every_step_uses_each_stacks_own_secrets_provider_key,
    ):
        try:
            check()
        except AssertionError as exc:
            failures.append(str(exc))
    assert any(problem in f for f in failures), failures


def readme_text() -> str:
    return README.read_text(encoding="utf-8")
