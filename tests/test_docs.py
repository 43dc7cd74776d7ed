"""docs/pitfalls.md explains every pitfall code (H1, G5, R6, P2, …) that shipyard cites: in the
README, the program, the policy pack, the runner's host files, the delivery template, the scripts,
the CI and make files, and the tests; and nothing in the repository points to a document that is
not in it. Pure file reads."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PITFALLS_PAGE = ROOT / "docs" / "pitfalls.md"

# What users read: single files at the top and every text file under these folders.
CITING_FILES = ("README.md", ".gitlab-ci.yml", "Pulumi.yaml", "Pulumi.staging.yaml", "Pulumi.prod.yaml", "Makefile")
CITING_DIRS = ("infra", "policy", "runner_userdata", "ci", "scripts", ".ci")
SKIPPED_DIRS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
# What is not the repository's own: git's data and what `make setup` installs.
NOT_OURS = SKIPPED_DIRS | {".git", ".venv", ".tools", "build", "dist"}
# References to documents the repository does not hold: a section sign (a numbered section of some
# other document), or a design or pitfalls document by its capitalised name (docs/pitfalls.md is
# the repository's own). Spelled so that this file does not match itself.
OUTSIDE_REFERENCE = re.compile(r"\u00a7|\bD[E]SIGN\b|\bP[I]TFALLS\b")

CODE = re.compile(r"\b[HGRP][0-9]{1,2}\b")
# A definition: a heading (`### H4 — …`) or a bold anchor at the start of a line (`**H4** …`).
DEFINITION = re.compile(r"^(?:#{2,6}[ \t]+(?:\*\*)?|\*\*)([HGRP][0-9]{1,2})\b", re.MULTILINE)
# The codes that exist: H1-H15 (Heroku), G1-G11 (GitLab), R1-R22 (runner on AWS), P1-P11 (Pulumi).
RANGES = {"H": 15, "G": 11, "R": 22, "P": 11}
KNOWN = frozenset(f"{letter}{n}" for letter, last in RANGES.items() for n in range(1, last + 1))


def order(code: str) -> tuple[int, int]:
    return "HGRP".index(code[0]), int(code[1:])


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary file."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def files_under(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and not SKIPPED_DIRS.intersection(p.relative_to(ROOT).parts)
    )


def cited(paths: list[Path]) -> dict[str, set[str]]:
    """Code → the files (relative to the repository) that cite it."""
    found: dict[str, set[str]] = {}
    for path in paths:
        text = text_of(path)
        for code in CODE.findall(text or ""):
            found.setdefault(code, set()).add(str(path.relative_to(ROOT)))
    return found


def defined() -> list[str]:
    """Every code docs/pitfalls.md defines, in order, repeats included."""
    return DEFINITION.findall(PITFALLS_PAGE.read_text(encoding="utf-8"))


def user_facing_files() -> list[Path]:
    files = [ROOT / name for name in CITING_FILES if (ROOT / name).is_file()]
    for folder in CITING_DIRS:
        files += files_under(ROOT / folder)
    return files


def test_every_code_cited_by_the_product_is_defined_in_the_pitfalls_page() -> None:
    citations = cited(user_facing_files())
    assert len(citations) > 20, "the scan found almost no codes: has the layout changed?"
    missing = sorted(set(citations) - set(defined()), key=order)
    assert not missing, "codes cited but not defined in docs/pitfalls.md: " + "; ".join(
        f"{code} (in {', '.join(sorted(citations[code]))})" for code in missing
    )


def repository_files() -> list[Path]:
    """Every file of the repository, without git's data and what `make setup` installs."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in NOT_OURS and not d.endswith(".egg-info"))
        found += [Path(folder) / name for name in sorted(files)]
    return found


def test_every_code_a_test_says_it_guards_is_defined_in_the_pitfalls_page() -> None:
    # Test modules, and the stubs and data files the tests run with.
    this = Path(__file__).resolve()
    citations = cited([p for p in files_under(ROOT / "tests") if p.resolve() != this])
    missing = sorted(set(citations) - set(defined()), key=order)
    assert not missing, "codes cited in tests but not defined in docs/pitfalls.md: " + "; ".join(
        f"{code} (in {', '.join(sorted(citations[code]))})" for code in missing
    )


def test_the_pitfalls_page_defines_only_known_codes_each_once() -> None:
    codes = defined()
    unknown = sorted(set(codes) - KNOWN, key=order)
    assert not unknown, f"docs/pitfalls.md defines codes outside H1-H15, G1-G11, R1-R22, P1-P11: {', '.join(unknown)}"
    repeated = sorted({c for c in codes if codes.count(c) > 1}, key=order)
    assert not repeated, f"docs/pitfalls.md defines these codes more than once: {', '.join(repeated)}"


def test_the_pitfalls_page_defines_every_known_code() -> None:
    missing = sorted(KNOWN - set(defined()), key=order)
    assert not missing, f"docs/pitfalls.md has no entry for: {', '.join(missing)}"


def test_the_paths_and_tests_the_pitfalls_page_names_exist() -> None:
    text = PITFALLS_PAGE.read_text(encoding="utf-8")
    # Repository paths as the page writes them: bare (a path in backticks is an upstream one).
    paths = set(re.findall(r"(?<![\w/.`-])((?:infra|policy|runner_userdata|ci|tests)/[\w./-]*[\w/])", text))
    missing_paths = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing_paths, f"docs/pitfalls.md names paths that do not exist: {', '.join(missing_paths)}"
    test_names = set(re.findall(r"`(test_\w+)`", text))
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    gone = sorted(name for name in test_names if not re.search(rf"\bdef {name}\b", sources))
    assert not gone, f"docs/pitfalls.md names tests that do not exist: {', '.join(gone)}"


def test_nothing_refers_to_a_document_outside_the_repository() -> None:
    found = []
    for path in repository_files():
        for number, line in enumerate((text_of(path) or "").splitlines(), start=1):
            if OUTSIDE_REFERENCE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert len(repository_files()) > 100, "the scan found almost no files: has the layout changed?"
    assert not found, (
        "references to documents the repository does not hold; say it here (docs/pitfalls.md, the README) "
        "or drop the reference:\n" + "\n".join(found)
    )
