"""The docs name what exists: every repository path in the README and docs/ exists, and docs/
holds no file that no doc cites (a run log nobody reads)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream_app.settings import PROJECT_ROOT

# folders of the repository itself; .cache/, .kafka/, out/ and tests/artifacts/ are made by runs
ROOTS = ("stream_app/", "docs/", "scripts/", "schemas/", "tests/", "config/")
GENERATED = ("tests/artifacts/",)
PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").rglob("*.md"))]


def named_paths(text: str) -> set[str]:
    """Repository paths in a page: in backticks or as link targets, templates (``<name>``) left
    out, ``#anchors`` cut off.

    >>> sorted(named_paths("see `stream_app/cli.py` and [x](docs/a.md#b), `schemas/<n>.json`"))
    ['docs/a.md', 'stream_app/cli.py']
    """
    found = re.findall(r"`([^`\s]+)`", text) + re.findall(r"\]\(([^)\s]+)\)", text)
    paths = set()
    for token in found:
        token = token.split("#")[0].rstrip(".,:;")
        if token.startswith(ROOTS) and "<" not in token and not token.startswith(GENERATED):
            paths.add(token)
    return paths


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_path_a_page_names_exists(page: Path):
    missing = [p for p in sorted(named_paths(page.read_text()))
               if not (any(PROJECT_ROOT.glob(p)) if "*" in p else (PROJECT_ROOT / p).exists())]
    assert not missing, f"{page.name} names paths that do not exist: {missing}"


def test_the_architecture_page_exists_and_names_the_code():
    text = (PROJECT_ROOT / "docs" / "architecture.md").read_text()
    assert len(named_paths(text)) >= 30
    for section in ("## One message through the engine", "## The state", "## The topics",
                    "### a policy", "### a business rule", "### a topic", "### a metric",
                    "## Scaling out", "## The learning layer"):
        assert section in text


def test_every_file_in_docs_is_cited_by_a_page():
    texts = {page: page.read_text() for page in PAGES}
    uncited = []
    for path in sorted((PROJECT_ROOT / "docs").rglob("*")):
        if path.is_dir():
            continue
        stem = path.name.split(".")[0]
        if not any(stem in text for page, text in texts.items() if page != path):
            uncited.append(str(path.relative_to(PROJECT_ROOT)))
    assert not uncited, f"files in docs/ that no page cites: {uncited}"
