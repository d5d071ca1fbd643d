"""MkDocs hook: the Changelog page, made from `git log` at build time (so it is never stale and never committed)."""

from __future__ import annotations

import subprocess
from collections import OrderedDict
from pathlib import Path

from mkdocs.structure.files import File

PAGE = "project/changelog.md"
MAX_SUBJECT = 300


def changelog(repo: Path) -> str:
    """The commits of the branch, newest first, grouped by day; merges left out."""
    try:
        out = subprocess.run(["git", "log", "--no-merges", "--date=short", "--format=%ad%x09%h%x09%s"], cwd=repo,
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "# Changelog\n\nThis copy has no git history: run `git log` in a clone.\n"
    days: OrderedDict[str, list[str]] = OrderedDict()
    for line in out.splitlines():
        date, commit, subject = line.split("\t", 2)
        if len(subject) > MAX_SUBJECT:
            subject = subject[:MAX_SUBJECT].rsplit(" ", 1)[0] + " …"
        subject = subject.replace("<", "&lt;").replace(">", "&gt;")
        days.setdefault(date, []).append(f"- {subject} (`{commit}`)")
    text = ["# Changelog", "", "Every change, newest first, from `git log` when these pages were built.", ""]
    for date, entries in days.items():
        text += [f"## {date}", "", *entries, ""]
    return "\n".join(text)


def on_files(files, config):  # noqa: ANN001 (MkDocs' hook signature)
    """Add the changelog page to the site's files."""
    repo = Path(config["config_file_path"]).parent
    files.append(File.generated(config, PAGE, content=changelog(repo)))
    return files
