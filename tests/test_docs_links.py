"""Every relative link in the Markdown documentation points at a file that exists and, with #anchor, at a heading
of that file (GitHub's slugs: lower case, punctuation dropped except '-' and '_', spaces to '-')."""

import os
import re

import pytest

from conftest import REPOSITORY

DOCUMENTS = ["README.md", "docs/performance.md", "docs/results.md", "slurm/README.md", "data/README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)   # \w keeps letters of any script, digits and '_'
    return text.replace(" ", "-")


def anchors(path: str) -> set:
    found, counts = set(), {}
    in_code = False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        base = slug(line.lstrip("#"))
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if os.path.exists(os.path.join(REPOSITORY, d))])
def test_relative_links_and_anchors_resolve(document):
    source = os.path.join(REPOSITORY, document)
    broken = []
    for target in LINK.findall(open(source, encoding="utf-8").read()):
        if re.match(r"[a-z]+:", target):   # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(source), path)) if path else source
        if not os.path.exists(resolved):
            broken.append(f"{target}: no such file")
        elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, "\n".join(broken)
