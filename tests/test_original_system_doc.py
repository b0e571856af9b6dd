"""Every "spec §N" the repository cites resolves in docs/original-system.md, and nothing points outside the repository
for it: a reader of the repository alone can follow each reference to the old system."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "original-system.md"
#: "§5.7", "§2.5-2.7", "§3.3-§3.4": a section or a range of them.
CITATION = re.compile(r"§\s?(\d+(?:\.\d+)?)(?:-§?(\d+(?:\.\d+)?))?")
TEXT_SUFFIXES = {".py", ".md", ".sh", ".yaml", ".yml", ".toml", ".txt"}


def _cited() -> dict[str, set[str]]:
    """Section number -> the tracked files that cite it."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    cited: dict[str, set[str]] = {}
    for name in files:
        path = REPO / name
        if path.suffix not in TEXT_SUFFIXES or path == DOC or not path.is_file():
            continue
        for match in CITATION.finditer(path.read_text(errors="replace")):
            for number in filter(None, match.groups()):
                cited.setdefault(number, set()).add(name)
    return cited


def _targets() -> set[str]:
    """The numbers the page defines: its sections (## N., ### N.M) and the numbered bugs of section 5 (5.N)."""
    text = DOC.read_text()
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, flags=re.MULTILINE))
    bug_list = text.split("\n## 5. ", 1)[1]
    bugs = {f"5.{number}" for number in re.findall(r"^(\d+)\. \*\*", bug_list, flags=re.MULTILINE)}
    return sections | bugs


def test_every_citation_resolves() -> None:
    cited, targets = _cited(), _targets()
    assert {"1.1", "2.6", "3.3", "5", "5.7", "5.17"} <= set(cited)  # the scan finds the code's citations
    missing = {number: sorted(files) for number, files in cited.items() if number not in targets}
    assert not missing, f"cited but not in docs/original-system.md: {missing}"


def test_the_bug_list_is_complete_and_in_order() -> None:
    bug_list = DOC.read_text().split("\n## 5. ", 1)[1]
    assert [int(n) for n in re.findall(r"^(\d+)\. \*\*", bug_list, flags=re.MULTILINE)] == list(range(1, 20))


def test_no_reference_points_outside_the_repository() -> None:
    pattern = r"ORIGINAL-SYSTEM|AWSDocumentation\.md|shared/(spec|seed)"
    files = subprocess.run(
        ["git", "grep", "-l", "-I", "-E", pattern], cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    assert set(files) <= {"tests/test_original_system_doc.py"}, files
