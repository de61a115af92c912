"""Documentation references stay true.

Across the package, the tests, the benches, the docs, the README, the notebooks, the kernelspecs
and the JupyterLab extension's sources:

* every ``*.md`` document cited exists in the repository, as a path relative to the citing file
  or to the repository's root (so code cites ``docs/PROTOCOL.md``, not a bare ``PROTOCOL.md``),
  and a ``#section`` after it names one of that document's headings;
* a Markdown document's own ``(#section)`` links name one of its headings;
* no absolute path under the build machine's ``/work`` folder appears;
* nobody says "Part A" or "Part B": the documents name their sections by topic
  (docs/PROTOCOL.md#our-extensions).

This file is not scanned: it has to spell out the patterns it looks for.
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve()
SCANNED = ("remote_kernel", "tests", "bench", "docs", "README.md", "notebooks", "kernelspecs",
           "labextension/src")
# Build output and caches, when git cannot say what is ignored.
_SKIPPED_DIRS = {"__pycache__", "node_modules", ".ipynb_checkpoints", ".pytest_cache"}
_SKIPPED_PATHS = {ROOT / "remote_kernel" / "labextension"}  # the built JupyterLab extension
_BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".ico", ".pdf", ".gz", ".zip", ".whl", ".pyc"}

# A document path: segments of letters, digits, '.', '_' and '-' ending in '.md', not inside a
# URL or a longer path (no '/', ':' or word character just before it), then an optional #anchor.
_MD_REF = re.compile(r"(?<![\w./:-])((?:[\w.-]+/)*[\w.-]+\.md)(?!\w)(#[\w-]+)?")
_SELF_ANCHOR = re.compile(r"\]\((#[\w-]+)\)")  # [text](#section) inside a Markdown document
_WORK_PATH = re.compile(r"(?<![\w.~-])/work(?:/|\b)")
_PART_AB = re.compile(r"(?<![a-z])part[ _-]?[ab](?![a-z0-9])", re.IGNORECASE)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def _listed_by_git() -> list[Path] | None:
    try:
        done = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", *SCANNED],
                              cwd=ROOT, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return [ROOT / name for name in done.stdout.decode("utf-8", "surrogateescape").split("\0") if name]


def _walked() -> list[Path]:
    found = []
    for top in SCANNED:
        start = ROOT / top
        if start.is_file():
            found.append(start)
            continue
        for path in start.rglob("*"):
            if path.is_file() and not _SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts) \
                    and not any(skipped in path.parents for skipped in _SKIPPED_PATHS):
                found.append(path)
    return found


@functools.lru_cache(maxsize=None)
def scanned_files() -> tuple[tuple[Path, str], ...]:
    """(path, text) of every scanned text file but this one."""
    paths = _listed_by_git()
    if paths is None:
        paths = _walked()
    files = []
    for path in sorted(set(paths)):
        if path.resolve() == THIS or path.suffix.lower() in _BINARY_SUFFIXES or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if "\0" not in text:
            files.append((path, text))
    return tuple(files)


def _where(path: Path, text: str, index: int) -> str:
    return f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, index) + 1}"


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


@functools.lru_cache(maxsize=None)
def anchors_of(document: Path) -> frozenset[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in document.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced:
            continue
        anchors.update(_HTML_ANCHOR.findall(line))
        match = _HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(anchors)


def _resolve(citing: Path, reference: str) -> Path | None:
    for base in (citing.parent, ROOT):
        candidate = (base / reference).resolve()
        if candidate.is_file() and (candidate == ROOT or ROOT in candidate.parents):
            return candidate
    return None


def _report(problems: list[str]) -> str:
    return f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_cited_documents_exist():
    problems = []
    for path, text in scanned_files():
        for match in _MD_REF.finditer(text):
            reference, anchor = match.group(1), match.group(2)
            target = _resolve(path, reference)
            if target is None:
                problems.append(f"{_where(path, text, match.start())}: cites {reference!r}, which is not "
                                f"a file of the repository (relative to the citing file or to the root)")
            elif anchor and anchor[1:] not in anchors_of(target):
                problems.append(f"{_where(path, text, match.start())}: cites {reference}{anchor}, "
                                f"but {target.relative_to(ROOT)} has no such section")
        if path.suffix == ".md":
            for match in _SELF_ANCHOR.finditer(text):
                if match.group(1)[1:] not in anchors_of(path):
                    problems.append(f"{_where(path, text, match.start())}: links to {match.group(1)}, "
                                    f"which is no section of this document")
    assert not problems, _report(problems)


def test_no_paths_of_the_build_machine():
    problems = [f"{_where(path, text, match.start())}: names a path under /work"
                for path, text in scanned_files() for match in _WORK_PATH.finditer(text)]
    assert not problems, _report(problems)


def test_sections_named_by_topic_not_part_a_or_b():
    problems = [f"{_where(path, text, match.start())}: says {match.group(0)!r}; name the section by its "
                f"topic (e.g. 'our extensions', docs/PROTOCOL.md#our-extensions)"
                for path, text in scanned_files() for match in _PART_AB.finditer(text)]
    assert not problems, _report(problems)


def test_the_checks_see_what_they_look_for(tmp_path):
    """The patterns themselves: what must be caught is, what must pass does."""
    assert [m.group(1) for m in _MD_REF.finditer(
        "see docs/PROTOCOL.md#errors, [x](../README.md) and PROTOCOL.md A4; "
        "not https://example.org/a/B.md nor *.md nor x.md5")] == ["docs/PROTOCOL.md", "../README.md", "PROTOCOL.md"]
    assert _MD_REF.search("docs/PROTOCOL.md#the-execute-loop.").group(2) == "#the-execute-loop"
    assert _WORK_PATH.search("(see " + "/work" + "/shared/x)") and _WORK_PATH.search('"' + "/work" + '"')
    assert not _WORK_PATH.search("~/work/x") and not _WORK_PATH.search("a/work/b") \
        and not _WORK_PATH.search("/workspace")
    for bad in ("Part " + "B", "part " + "a", "PART_" + "B_OPTIONS", "as_part_" + "a("):
        assert _PART_AB.search(bad), bad
    for fine in ("apart a", "part of", "parts", "part ab", "counterpart b"):
        assert not _PART_AB.search(fine), fine
    assert github_slug("Part X — our extension (embedded server only; never required)") == \
        "part-x--our-extension-embedded-server-only-never-required"
    assert github_slug("Our extensions: jupyter-outputs") == "our-extensions-jupyter-outputs"
    document = tmp_path / "d.md"
    document.write_text("# Title\n\n```\n# not a heading\n```\n## Same\n## Same\n", encoding="utf-8")
    assert anchors_of(document) == {"title", "same", "same-1"}
