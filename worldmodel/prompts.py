"""Prompts of the LLM world model: files under worldmodel/prompts/, rendered with explicit
variables ($name placeholders). A missing or unexpected variable is an error, so a prompt
never goes out with a hole in it or silently drops what the caller meant to say."""

from __future__ import annotations

import string
from pathlib import Path

PROMPTS = Path(__file__).parent / "prompts"


class PromptError(ValueError):
    pass


def variables(name: str) -> set[str]:
    """The placeholders of prompt `name`."""
    template = string.Template(_text(name))
    return set(template.get_identifiers())


def render(name: str, **values: object) -> str:
    """Prompt `name` with every placeholder filled; the variables must match exactly."""
    needed = variables(name)
    missing, extra = needed - values.keys(), values.keys() - needed
    if missing or extra:
        raise PromptError(
            f"prompt {name}: missing {sorted(missing) or 'nothing'}, "
            f"unexpected {sorted(extra) or 'nothing'}"
        )
    return string.Template(_text(name)).substitute({k: str(v) for k, v in values.items()})


def _text(name: str) -> str:
    path = PROMPTS / f"{name}.md"
    if not path.is_file():
        known = sorted(p.stem for p in PROMPTS.glob("*.md"))
        raise PromptError(f"no prompt {name!r}; known: {', '.join(known)}")
    return path.read_text()
