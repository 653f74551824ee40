"""What the LLM world model asks the LLM to answer, as pydantic models: they validate the
answers (worldmodel.parse) and their JSON schemas go out as structured-output formats."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Step(BaseModel):
    """One proposed step, as the LLM states it."""

    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    speedup: float = Field(gt=0, description="predicted speedup over the current kernel")
    confidence: float = Field(ge=0, le=1)
    difficulty: int = Field(ge=1, le=5)


class Steps(BaseModel):
    steps: list[Step] = Field(max_length=8)


class Edit(BaseModel):
    op: Literal["update", "prune", "insert"]
    plan: str = Field(description="update/prune: the open plan's id; insert: the parent's id")
    title: str = ""
    speedup: float | None = Field(default=None, gt=0)
    confidence: float | None = Field(default=None, ge=0, le=1)
    difficulty: int | None = Field(default=None, ge=1, le=5)


class Edits(BaseModel):
    edits: list[Edit] = Field(max_length=20)
