"""Find the runnable Python of a docs page: fenced ``python`` blocks and hidden setup comments.

A page is run top to bottom in one namespace. Besides its visible ```` ```python ```` blocks, a page
may hold hidden Python in HTML comments, which the rendered page does not show::

    <!-- snippet-setup
    Video = ...   # definitions the next visible block assumes
    -->

    <!-- snippet-check
    assert written == 3   # what the previous block must have done
    -->

Both kinds run in document order with the visible blocks (``setup`` and ``check`` only say what they
are for). A block that cannot run in a test (e.g. it needs a server) is preceded by
``<!-- snippet: skip (the reason) -->``; the test keeps the number of those small.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNABLE = {"python", "py"}
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_HIDDEN = re.compile(r"^<!--\s*snippet-(setup|check)\s*$")
_SKIP = re.compile(r"^<!--\s*snippet:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->\s*$")


@dataclass(frozen=True)
class Snippet:
    page: str
    line: int
    """1-based line of the first line of code in the page."""
    code: str
    hidden: bool = False
    skip: str | None = None
    """Why the block is not run (from a skip marker), or None."""

    def compile(self) -> object:
        # Pad so tracebacks point at the page's own line numbers.
        return compile("\n" * (self.line - 1) + self.code, self.page, "exec")


def pages() -> list[Path]:
    return [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]


def extract(path: Path, root: Path = ROOT) -> list[Snippet]:
    """Every visible python block and hidden snippet of ``path``, in page order."""
    name = str(path.relative_to(root))
    lines = path.read_text().splitlines()
    out: list[Snippet] = []
    skip: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        hidden = _HIDDEN.match(line.strip())
        if hidden:
            end = _find(lines, i + 1, lambda s: s.strip() == "-->", name, "-->")
            out.append(Snippet(name, i + 2, "\n".join(lines[i + 1 : end]) + "\n", hidden=True))
            i = end + 1
            continue
        marker = _SKIP.match(line.strip())
        if marker:
            skip = marker.group("reason").strip()
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            opener, indent = fence.group("fence"), len(fence.group("indent"))
            lang = (fence.group("info").split() or [""])[0].lower()
            end = _find(lines, i + 1, _closing(opener), name, opener)
            body = [raw[indent:] if raw[:indent].strip() == "" else raw for raw in lines[i + 1 : end]]
            if lang in RUNNABLE:
                out.append(Snippet(name, i + 2, "\n".join(body) + "\n", skip=skip))
            elif skip is not None:
                raise ValueError(f"{name}:{i + 1}: a skip marker precedes a '{lang}' block, which never runs")
            skip = None
            i = end + 1
            continue
        if line.strip() and skip is not None:
            raise ValueError(f"{name}:{i + 1}: a skip marker must be followed directly by a python block")
        i += 1
    return out


def _closing(opener: str) -> Callable[[str], bool]:
    """A fence closes with at least as many of the opener's characters and nothing else."""

    def done(line: str) -> bool:
        text = line.strip()
        return text.startswith(opener) and not text.strip(opener[0])

    return done


def _find(lines: list[str], start: int, done: Callable[[str], bool], page: str, what: str) -> int:
    for j in range(start, len(lines)):
        if done(lines[j]):
            return j
    raise ValueError(f"{page}:{start}: no closing {what}")


def run(snippets: list[Snippet]) -> int:
    """Execute ``snippets`` in order in one fresh namespace; returns how many ran.

    A failure raises ``AssertionError`` naming the page, the line and whether the block is hidden.
    """
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    for snippet in snippets:
        if snippet.skip:
            continue
        try:
            exec(snippet.compile(), namespace)  # type: ignore[arg-type]
        except Exception as exc:
            kind = "hidden snippet" if snippet.hidden else "code block"
            raise AssertionError(
                f"{snippet.page}:{snippet.line}: the {kind} failed: {type(exc).__name__}: {exc}"
            ) from exc
        ran += 1
    return ran
