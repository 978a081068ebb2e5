"""The container image gets the pipeline only: ``.dockerignore`` leaves the tools out of the build context.

Docker's rules, applied to every tracked file: patterns are relative to the context root, a pattern
matches a path or any of its parent directories, ``**`` spans directories, and the last pattern that
matches decides (``!`` re-includes).
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _patterns() -> list[tuple[bool, str]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        rules.append((include, line.lstrip("!").rstrip("/")))
    return rules


def _matches(pattern: str, path: str) -> bool:
    regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    regex = regex.replace(r"\?", "[^/]")
    parts = path.split("/")
    return any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)) or fnmatch.fnmatch(
        path, pattern
    )


def _in_context(path: str, rules: list[tuple[bool, str]]) -> bool:
    included = True
    for include, pattern in rules:
        if _matches(pattern, path):
            included = include
    return included


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line]


def test_the_build_context_holds_the_pipeline_and_not_the_tools() -> None:
    rules = _patterns()
    context = {path for path in _tracked() if _in_context(path, rules)}
    tools = [path for path in _tracked() if path.startswith("worker/tools/")]
    assert tools, "the tools package exists"
    assert not context & set(tools), sorted(context & set(tools))[:5]
    for required in (
        "pyproject.toml",
        "README.md",
        "worker/app.py",
        "worker/cli.py",
        "schemas/decode.py",
        "inference/scorer.py",
        "schemas/json/transaction_event.v1.json",
    ):
        assert required in context, required
    assert not any(path.startswith(("tests/", "ops/", "benchmarks/")) for path in context)


def test_the_pipeline_never_imports_the_tools() -> None:
    """Nothing the image runs may need ``worker.tools`` (only the CLI's tool commands load it, lazily)."""
    for path in sorted((ROOT / "worker").glob("*.py")):
        text = path.read_text()
        if path.name == "cli.py":
            top = text.split("\ndef ", 1)[0]  # module level only: commands import their tool inside
            assert "worker.tools" not in top.replace("``worker.tools.produce.read_event_file``", ""), path
        else:
            assert "worker.tools" not in text, path
