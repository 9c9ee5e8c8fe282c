"""Check the links of the README and of docs/, and (with --since) that no text was lost.

Links: every ``[text](target)`` in README.md, SECURITY.md, CHANGELOG.md, docs/*.md and
examples/README.md whose target is relative must name a file or directory that exists,
resolved from the page's own directory as GitHub resolves it; a ``#anchor`` must be the
GitHub slug of one of the target page's headings (lowercase, spaces to '-', punctuation
other than '-' and '_' removed; a repeated heading gets '-1', '-2', ...). Links inside
code are not links.

--since REV: every fenced code block and every table row of README.md and SECURITY.md
as they were at REV must appear, unchanged, in the current README.md, SECURITY.md or
docs/*.md; so must every sentence of their prose (compared with whitespace collapsed).
Rephrased sentences are listed for a person to review; the exit status counts only links,
code blocks and table rows.

    python scripts/check_docs.py [--since REV]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def pages() -> list[Path]:
    top = [ROOT / name for name in ("README.md", "SECURITY.md", "CHANGELOG.md")]
    found = [*top, *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "README.md"]
    return [page for page in found if page.exists()]


def without_code(text: str) -> str:
    """The text with fenced blocks blanked (line count kept) and inline code removed."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return INLINE_CODE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lowercased, punctuation dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    found: set[str] = set()
    seen: dict[str, int] = {}
    for match in HEADING.finditer(text):
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def check_links() -> list[str]:
    """Every broken relative link, as 'page:line: target: why'."""
    problems = []
    for page in pages():
        text = without_code(page.read_text())
        for match in LINK.finditer(text):
            target = match.group("target")
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            line = text.count("\n", 0, match.start()) + 1
            where = f"{page.relative_to(ROOT)}:{line}: {target}"
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                problems.append(f"{where}: no such file")
                continue
            if ROOT not in dest.parents and dest != ROOT:
                problems.append(f"{where}: outside the repository")
                continue
            if anchor:
                if dest.suffix != ".md" or dest.is_dir():
                    problems.append(f"{where}: an anchor into a file that is not markdown")
                elif anchor not in anchors(dest):
                    problems.append(f"{where}: no heading with that anchor")
    return problems


def normal(text: str) -> str:
    """Whitespace collapsed, a link reduced to its text, no emphasis, no list markers."""
    text = re.sub(r"^[ \t]*(?:[-*]|\d+\.)[ \t]+", "", text, flags=re.MULTILINE)
    text = re.sub(r"\[([^\]]*)\]\([^)\s]*\)", r"\1", text)
    text = text.replace("**", "").replace("*", "")
    return " ".join(text.split())


def sentences(prose: str) -> list[str]:
    """Prose split into sentences (after '. ', ': ' or ';'), whitespace collapsed."""
    parts = re.split(r"(?<=[.:;])\s+(?=[A-Z`(\"])", normal(prose))
    return [p for p in parts if len(p) > 25]


def check_lost(rev: str) -> tuple[list[str], list[str]]:
    """(lost code blocks and table rows, sentences not found verbatim) since ``rev``."""
    now = normal("\n".join(p.read_text() for p in pages()))
    now_lines = {normal(line) for p in pages() for line in p.read_text().splitlines()}
    lost, reworded = [], []
    for name in ("README.md", "SECURITY.md"):
        before = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:{name}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for block in FENCE.findall(before):
            if normal(block) not in now:
                lost.append(f"{name}@{rev}: code block: {block.splitlines()[0:2]}")
        prose_lines = []
        for line in FENCE.sub("", before).splitlines():
            if line.startswith("|"):
                if normal(line) not in now_lines:
                    lost.append(f"{name}@{rev}: table row: {line[:100]}")
            elif not line.startswith("#"):
                prose_lines.append(line)
        for paragraph in "\n".join(prose_lines).split("\n\n"):
            for sentence in sentences(paragraph):
                if sentence not in now:
                    reworded.append(f"{name}@{rev}: {sentence}")
    return lost, reworded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", metavar="REV", help="also check nothing was lost since REV")
    args = parser.parse_args()
    problems = check_links()
    for problem in problems:
        print(f"broken link: {problem}")
    links = sum(len(LINK.findall(without_code(p.read_text()))) for p in pages())
    print(f"{links} links in {len(pages())} pages, {len(problems)} broken")
    if args.since:
        lost, reworded = check_lost(args.since)
        for item in lost:
            print(f"lost: {item}")
        for item in reworded:
            print(f"reworded (review): {item}")
        print(
            f"since {args.since}: {len(lost)} code blocks or table rows lost, "
            f"{len(reworded)} sentences not found verbatim"
        )
        problems += lost
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
