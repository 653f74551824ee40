"""Chat completions over any OpenAI-compatible endpoint, every call recorded.

One retry layer (429 and 5xx answers, timeouts, dropped connections; `Retry-After`
honoured, exponential backoff otherwise), caps on calls, tokens and dollars, and a
record of each call in the run database keyed by a hash of its request: a resumed run
never pays twice for a recorded call, and `mode="replay"` answers from the record alone,
counting the requests it has no answer for.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ksearch.protocols import WorldModelError

log = logging.getLogger(__name__)

Message = Mapping[str, str]


class LlmError(WorldModelError):
    """The endpoint cannot be used (authentication, unknown model, down); the message says
    what to fix. A search stops on it with that message."""


class BudgetExhausted(LlmError):
    """A cap on calls, tokens or dollars is reached."""


class ReplayMiss(LlmError):
    """A replay was asked for a call the database does not hold."""


@dataclass(frozen=True, slots=True)
class LlmSettings:
    """Endpoint, limits and prices (conf/llm/*.yaml).

    Args:
        base_url: an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.
        model: the model name the endpoint serves.
        timeout: seconds for one request.
        retries: further attempts after a retryable failure.
        backoff: seconds before the first retry without Retry-After; doubles per retry.
        max_wait: the longest single wait, Retry-After included (seconds).
        max_calls, max_tokens, max_dollars: caps for the run (None: no cap).
        prices: dollars per million (prompt, completion) tokens by model; unknown: free.
        temperature: sampling temperature sent with every request.
    """

    base_url: str
    model: str
    timeout: float = 120.0
    retries: int = 4
    backoff: float = 1.0
    max_wait: float = 60.0
    max_calls: int | None = None
    max_tokens: int | None = None
    max_dollars: float | None = None
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    temperature: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        price_in, price_out = self.prices.get(self.model, (0.0, 0.0))
        return (prompt_tokens * price_in + completion_tokens * price_out) / 1e6


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer: its text, why it ended, and what it cost (nothing when it was recorded)."""

    key: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cost: float
    recorded: bool


class CallLog(Protocol):
    """Where calls are recorded: the run's Store."""

    def llm_call(self, key: str) -> dict[str, Any] | None: ...

    def save_llm_call(self, row: dict[str, Any]) -> None: ...

    def llm_totals(self) -> dict[str, float]: ...

    def mark_llm_invalid(self, key: str, error: str) -> None: ...


class ReplayLog:
    """The call log of a replay: answers come from a recorded run's database and are
    copied into the new run's, so the new database shows what its search used."""

    def __init__(self, source: CallLog, run: CallLog) -> None:
        self.source, self.run = source, run

    def llm_call(self, key: str) -> dict[str, Any] | None:
        row = self.run.llm_call(key)
        if row is None:
            row = self.source.llm_call(key)
            if row is not None:
                self.run.save_llm_call({k: v for k, v in row.items() if k != "created"})
        return row

    def save_llm_call(self, row: dict[str, Any]) -> None:
        self.run.save_llm_call(row)

    def llm_totals(self) -> dict[str, float]:
        return self.run.llm_totals()

    def mark_llm_invalid(self, key: str, error: str) -> None:
        self.run.mark_llm_invalid(key, error)


def request_key(model: str, messages: Sequence[Message], schema: Mapping[str, Any] | None) -> str:
    """The hash a call is recorded under: the model, the messages and the output schema."""
    body = json.dumps(
        {"model": model, "messages": list(messages), "schema": schema}, sort_keys=True
    )
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a server asked us to wait (`retry-after-ms`, or `retry-after` in seconds or as
    an HTTP date), or None."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


class Llm:
    """Chat completions with retries, caps and a record of every call.

    Args:
        settings: endpoint, limits and prices.
        log_to: the run's call log.
        mode: "live" calls the endpoint for calls not recorded; "replay" never does.
        client: an `openai.OpenAI` client (made from the settings and OPENAI_API_KEY if None).
        sleep: how to wait between attempts (tests pass a recorder).
    """

    def __init__(
        self,
        settings: LlmSettings,
        log_to: CallLog,
        *,
        mode: str = "live",
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if mode not in ("live", "replay"):
            raise ValueError(f"unknown LLM mode {mode!r}; expected live or replay")
        self.settings = settings
        self.log_to = log_to
        self.mode = mode
        self.sleep = sleep
        self.misses = 0
        self.structured = True  # until the server refuses response_format
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import os

            import openai

            self._client = openai.OpenAI(
                base_url=self.settings.base_url,
                api_key=os.environ.get("OPENAI_API_KEY") or "none",
                timeout=self.settings.timeout,
                max_retries=0,  # the one retry layer is ours
            )
        return self._client

    def chat(
        self, messages: Sequence[Message], *, purpose: str, schema: Mapping[str, Any] | None = None
    ) -> Reply:
        """The answer to `messages`, from the record if it holds one, else from the endpoint.

        Args:
            messages: chat messages ({"role", "content"}).
            purpose: what the call is for (propose, instantiate, repair, revise), recorded.
            schema: a JSON schema the answer should follow; sent as a structured-output
                format where the server supports it.
        """
        key = request_key(self.settings.model, messages, schema)
        row = self.log_to.llm_call(key)
        if row is not None:
            return Reply(
                key,
                row["response"],
                row["finish_reason"],
                row["prompt_tokens"],
                row["completion_tokens"],
                row["latency_s"],
                0.0,
                recorded=True,
            )
        if self.mode == "replay":
            self.misses += 1
            raise ReplayMiss(f"no recorded {purpose} call with key {key}")
        self._check_caps()
        start = time.monotonic()
        completion = self._create(messages, schema)
        latency = time.monotonic() - start
        choice = completion.choices[0]
        usage = completion.usage
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        text = choice.message.content or ""
        refusal = getattr(choice.message, "refusal", None)
        finish = "refusal" if refusal and not text else str(choice.finish_reason or "stop")
        reply = Reply(
            key,
            text or (refusal or ""),
            finish,
            prompt_tokens,
            completion_tokens,
            latency,
            self.settings.cost(prompt_tokens, completion_tokens),
            recorded=False,
        )
        self.log_to.save_llm_call(
            {
                "key": key,
                "purpose": purpose,
                "model": self.settings.model,
                "request": json.dumps({"messages": list(messages), "schema": schema}),
                "response": reply.text,
                "finish_reason": reply.finish_reason,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "latency_s": latency,
                "cost": reply.cost,
            }
        )
        return reply

    def _check_caps(self) -> None:
        s, totals = self.settings, self.log_to.llm_totals()
        for name, cap, used in (
            ("calls", s.max_calls, totals["calls"]),
            ("tokens", s.max_tokens, totals["tokens"]),
            ("dollars", s.max_dollars, totals["dollars"]),
        ):
            if cap is not None and used >= cap:
                raise BudgetExhausted(f"the LLM budget is spent: {used:g} {name} of {cap:g}")

    def _create(self, messages: Sequence[Message], schema: Mapping[str, Any] | None) -> Any:
        """One completion, retried on 429, 5xx, timeouts and dropped connections."""
        import openai

        s = self.settings
        for attempt in range(s.retries + 1):
            kwargs: dict[str, Any] = {
                "model": s.model,
                "messages": list(messages),
                "temperature": s.temperature,
            }
            if schema is not None and self.structured:
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": dict(schema)},
                }
            try:
                return self.client.chat.completions.create(**kwargs)
            except openai.BadRequestError as e:
                if "response_format" in kwargs and "response_format" in str(e):
                    log.info("the endpoint refuses structured outputs; asking for plain JSON")
                    self.structured = False
                    return self._create(messages, schema)
                raise LlmError(f"the endpoint refused the request: {_brief(e)}") from e
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                raise LlmError(
                    f"the endpoint {s.base_url} refused the key (set OPENAI_API_KEY): {_brief(e)}"
                ) from e
            except openai.NotFoundError as e:
                raise LlmError(
                    f"the endpoint {s.base_url} does not serve model {s.model!r}: {_brief(e)}"
                ) from e
            except (
                openai.RateLimitError,
                openai.InternalServerError,
                openai.APITimeoutError,
                openai.APIConnectionError,
            ) as e:
                if attempt == s.retries:
                    tries = f"{attempt + 1} time" + ("s" if attempt else "")
                    raise LlmError(
                        f"the endpoint {s.base_url} failed {tries}; last: {_brief(e)}"
                    ) from e
                response = getattr(e, "response", None)
                asked = retry_after(response.headers if response is not None else None)
                wait = min(s.max_wait, asked if asked is not None else s.backoff * 2**attempt)
                log.warning("LLM call failed (%s); retrying in %.1f s", _brief(e), wait)
                self.sleep(wait)
        raise AssertionError("unreachable")


def _brief(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e)[:200]}"
