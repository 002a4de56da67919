"""An OpenAI-compatible chat completions server that plays the scripted judges over real HTTP.

Tests and the demo point litellm at it ("openai/<judge>", api_base = its base URL), so everything between
the prompt and the parsed verdict - HTTP, retries, timeouts, odd answers - is exercised offline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from .rules import Fault, JudgedCase, JudgeScript, Rating, SimulatorRules, VerdictFault, load_rules

__all__ = ["ChatRequest", "InvalidRequest", "Simulator", "parse_chat_request"]

CHAT_PATH = "/v1/chat/completions"
STATS_PATH = "/v1/stats"
STATS_RESET_PATH = "/v1/stats/reset"
_NO_MODEL = "(no model)"
_POLL_SECONDS = 0.05  # how soon serve_forever notices stop(); tests start and stop many servers
_TURN_KINDS = ("user", "assistant", "system")
_OPENING_TAG = re.compile(r"<untrusted-(input|output|context|user|assistant|system)-([0-9a-f]{8,})>")
# What a well-behaved judge reads in the system prompt: the datamark prefixed to every word of the user's message
# and the reply, and the check code to echo under a string property of the schema.
_DATAMARK = re.compile(r'prefixed with the marker "(\S)"')


class InvalidRequest(Exception):
    """A request the simulator refuses, with the HTTP status and an OpenAI-style error code."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass(frozen=True)
class ChatRequest:
    """A valid judge request: which judge, which criteria (id -> allowed levels) or a graph's items (id ->
    answer options), and the case to rate."""

    model: str
    judge_name: str
    criteria: dict[str, tuple[str, ...]]
    case: JudgedCase
    prompt_chars: int
    echo: Mapping[str, str] = field(default_factory=dict)
    items: dict[str, tuple[str, ...]] = field(default_factory=dict)


def judge_name_of(model: str) -> str:
    """litellm strips the provider ('strict'); 'openai/strict' is accepted too."""
    return model.rsplit("/", 1)[-1]


def parse_chat_request(body: bytes, rules: SimulatorRules) -> ChatRequest:
    """Check a chat completions body against the fixed protocol; refusals raise InvalidRequest.

    A judge with a canned `answer` needs only a well-formed chat request: it gets no criteria, and its case's
    output is the last user message, which is what its faults' `match` is tried on.
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(400, f"request body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(payload, dict):
        raise InvalidRequest(400, "request body must be a JSON object", "invalid_json")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(400, "'model' must be a non-empty string", "missing_model")
    judge_name = judge_name_of(model)
    if judge_name not in rules.judges:
        known = ", ".join(rules.judge_names)
        message = f"unknown judge {model!r}; this simulator plays: {known}"
        raise InvalidRequest(400, message, "model_not_found")
    texts = _message_texts(payload.get("messages"))
    user_texts = [text for role, text in texts if role == "user"]
    if not user_texts:
        raise InvalidRequest(400, "'messages' has no user message", "missing_user_message")
    prompt_chars = sum(len(text) for _, text in texts)
    if rules.judges[judge_name].answer is not None:
        return ChatRequest(model, judge_name, criteria={}, case=JudgedCase(user_texts[-1]), prompt_chars=prompt_chars)
    criteria, items, echo_fields = _requested_criteria(payload.get("response_format"))
    system = "\n".join(text for role, text in texts if role == "system")
    found = _unmarked(_case_blocks(user_texts), _DATAMARK.search(system))
    blocks = dict(reversed(found))  # the first block of each kind
    turns = tuple((kind, text) for kind, text in found if kind in _TURN_KINDS)
    if "output" not in blocks and not turns:
        raise InvalidRequest(
            400,
            "no user message has an <untrusted-output-NONCE>...</untrusted-output-NONCE> block "
            "(or the turns of a conversation)",
            "missing_output_block",
        )
    if turns:  # a conversation: what the system under test said is its assistant turns
        output = "\n\n".join(text for kind, text in turns if kind == "assistant")
        case = JudgedCase(output, None, _context_of(blocks.get("context")), turns)
    else:
        case = JudgedCase(blocks["output"], blocks.get("input"), _context_of(blocks.get("context")))
    return ChatRequest(
        model=model,
        judge_name=judge_name,
        criteria=criteria,
        case=case,
        prompt_chars=prompt_chars,
        echo=_echoed(echo_fields, system),
        items=items,
    )


def _unmarked(blocks: list[tuple[str, str]], mark: re.Match[str] | None) -> list[tuple[str, str]]:
    """The user's message and the reply (or the turns) as written, without the datamark the system prompt
    announced."""
    if mark is None:
        return blocks
    return [(kind, text if kind == "context" else text.replace(mark.group(1), "")) for kind, text in blocks]


def _echoed(fields: list[str], system: str) -> dict[str, str]:
    """Each echo field's value, as the system prompt (never the untrusted blocks) gives it."""
    echo = {}
    for name in fields:
        given = re.search(rf'"{re.escape(name)}": "([^"]*)"', system)
        if given is not None:
            echo[name] = given.group(1)
    return echo


def _case_blocks(user_texts: list[str]) -> list[tuple[str, str]]:
    """The blocks of the last user message that has an output block or a conversation's turns.

    A repair re-ask follows the prompt with the judge's unusable answer and a short user message that quotes
    no blocks, so the case to rate is the one in the latest prompt, not necessarily in the last message.
    """
    for text in reversed(user_texts):
        blocks = untrusted_blocks(text)
        if any(kind == "output" or kind in _TURN_KINDS for kind, _ in blocks):
            return blocks
    return []


def _message_texts(messages: object) -> list[tuple[str, str]]:
    """(role, text) of every message; content parts are joined by newlines."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(400, "'messages' must be a non-empty list", "missing_messages")
    texts: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            problem = f"messages[{index}] must be an object with a 'role'"
            raise InvalidRequest(400, problem, "invalid_messages")
        texts.append((message["role"], _content_text(message.get("content"), index)))
    return texts


def _content_text(content: object, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return "\n".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
    raise InvalidRequest(400, f"messages[{index}].content must be a string or a list of text parts", "invalid_messages")


def _requested_criteria(
    response_format: object,
) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]], list[str]]:
    """Criterion id -> allowed level ids and item id -> answer options, read from the json_schema response
    format, and the plain string properties beside them (a known-answer check the judge echoes)."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        message = "'response_format' must be {'type': 'json_schema', 'json_schema': {'schema': ...}}"
        raise InvalidRequest(400, message, "missing_json_schema")
    properties = _dig(response_format, "json_schema", "schema", "properties")
    if not isinstance(properties, dict) or not properties:
        raise InvalidRequest(
            400,
            "response_format.json_schema.schema must be an object schema with one property per criterion",
            "missing_json_schema",
        )
    criteria: dict[str, tuple[str, ...]] = {}
    items: dict[str, tuple[str, ...]] = {}
    echo_fields: list[str] = []
    for criterion, criterion_schema in properties.items():
        if criterion_schema == {"type": "string"}:
            echo_fields.append(criterion)
            continue
        options = _dig(criterion_schema, "properties", "answer", "enum")
        levels = _dig(criterion_schema, "properties", "level", "enum") if options is None else options
        if not isinstance(levels, list) or not levels or not all(isinstance(level, str) for level in levels):
            message = (
                f"schema property {criterion!r} needs properties.level.enum (or properties.answer.enum), "
                "a non-empty list of levels (or answers)"
            )
            raise InvalidRequest(400, message, "missing_json_schema")
        (criteria if options is None else items)[criterion] = tuple(levels)
    return criteria, items, echo_fields


def _dig(value: object, *keys: str) -> object:
    """value[key1][key2]..., or None as soon as something on the way is not an object."""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def extract_untrusted_blocks(text: str) -> dict[str, str]:
    """The first block of each kind (input, output, context, or a turn's role) in a prompt."""
    return dict(reversed(untrusted_blocks(text)))


def untrusted_blocks(text: str) -> list[tuple[str, str]]:
    """The input, output and context blocks of a prompt, or a conversation's turns (one block each, its kind the
    turn's role), in order; each is ended by the closing tag with its own nonce.

    Only the prompt knows a block's nonce, so a tag with that nonce is trusted: a block runs from an opening
    tag to the next closing tag with the same kind and nonce (an opening tag repeated before that closing
    tag is a mention in the instructions), and scanning resumes after it, so tags forged inside a block
    (other nonces) are just content. One newline after the opening and before the closing tag is dropped.
    """
    blocks: list[tuple[str, str]] = []
    position = 0
    while (opening := _OPENING_TAG.search(text, position)) is not None:
        kind, nonce = opening.groups()
        open_tag, close_tag = opening.group(0), f"</untrusted-{kind}-{nonce}>"
        close_at = text.find(close_tag, opening.end())
        if close_at < 0 or text.find(open_tag, opening.end(), close_at) >= 0:
            position = opening.end()  # a mention of the tag, not the start of its block
            continue
        content = text[opening.end() : close_at]
        content = content.removeprefix("\n")
        content = content[:-1] if content.endswith("\n") else content
        blocks.append((kind, content))
        position = close_at + len(close_tag)
    return blocks


def _context_of(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        context = json.loads(raw)
    except json.JSONDecodeError:
        context = None
    if not isinstance(context, dict):
        raise InvalidRequest(400, "the untrusted-context block must hold a JSON object", "invalid_context")
    return context


class _FaultBudget:
    """How many times each fault has been played, per server instance and thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._played: Counter[tuple[str, int]] = Counter()

    def take(self, judge_name: str, script: JudgeScript, output: str) -> Fault | None:
        """The first fault whose match holds and that has times left; its count is used up."""
        with self._lock:
            for index, fault in enumerate(script.faults):
                if fault.match is not None and not fault.match.search(output):
                    continue
                if fault.times == "always":
                    return fault
                if self._played[judge_name, index] < fault.times:
                    self._played[judge_name, index] += 1
                    return fault
        return None

    def reset(self) -> None:
        with self._lock:
            self._played.clear()


class _RequestStats:
    """Chat completions requests received, by the judge name their model resolved to, when each arrived (the
    server's monotonic clock, so a test can check a client's request rate from the server's side), and the
    tokens the answers reported as used (what a provider would bill)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_judge: Counter[str] = Counter()
        self._times: dict[str, list[float]] = {}
        self._usage: Counter[str] = Counter()

    def count(self, judge_name: str) -> None:
        with self._lock:
            self._by_judge[judge_name] += 1
            self._times.setdefault(judge_name, []).append(time.monotonic())

    def bill(self, usage: Mapping[str, int]) -> None:
        with self._lock:
            self._usage.update(usage)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_judge)

    def times(self) -> dict[str, list[float]]:
        with self._lock:
            return {name: list(times) for name, times in self._times.items()}

    def usage(self) -> dict[str, int]:
        with self._lock:
            return {name: self._usage[name] for name in ("prompt_tokens", "completion_tokens", "total_tokens")}

    def reset(self) -> None:
        with self._lock:
            self._by_judge.clear()
            self._times.clear()
            self._usage.clear()


class _SimulatorState:
    """Everything the request handlers share for one server instance."""

    def __init__(self, rules: SimulatorRules, verbose: bool) -> None:
        self.rules = rules
        self.verbose = verbose
        self.faults = _FaultBudget()
        self.stats = _RequestStats()
        self.stopping = threading.Event()
        self._connections_lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    def open_connection(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def close_connection(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def shut_open_connections(self) -> None:
        """Kept-alive connections would outlive the server; shut them so stop() really stops."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: _SimulatorState) -> None:
        self.state = state
        super().__init__(address, _ChatCompletionsHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts, stop()) are expected here, so stay quiet unless verbose."""
        if self.state.verbose:
            super().handle_error(request, client_address)


def _error_body(message: str, error_type: str, code: object) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "code": code}}


def _error_type_for(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def _chat_completion(request: ChatRequest, content: str) -> dict[str, Any]:
    prompt_tokens = max(1, request.prompt_chars // 4)
    completion_tokens = max(1, len(content) // 4)
    return {
        "id": f"chatcmpl-sim-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def verdict_content(
    ratings: Mapping[str, Rating], fault: VerdictFault | None = None, echo: Mapping[str, str] | None = None
) -> str:
    """The assistant message content: a JSON verdict with the check codes echoed, or the bad or odd one a verdict
    fault asks for."""
    verdict: dict[str, Any] = {criterion: rating.as_json() for criterion, rating in ratings.items()}
    criteria = list(verdict)
    verdict.update(echo or {})
    if fault is VerdictFault.UNKNOWN_LEVEL and criteria:
        verdict[criteria[0]] = {**verdict[criteria[0]], "level": "catastrophic"}
    if fault is VerdictFault.MISSING_CRITERION and criteria:
        del verdict[criteria[-1]]
    return json_content(verdict, fault)


def json_content(answer: Mapping[str, Any], fault: VerdictFault | None = None) -> str:
    """A JSON object as message content, spoilt as a verdict fault asks (criterion-level faults aside)."""
    text = json.dumps(answer)
    if fault is VerdictFault.NOT_JSON:
        return "Overall the response seems reasonable and mostly safe; I would rate it as acceptable."
    if fault is VerdictFault.TRUNCATED_JSON:
        return text[: len(text) // 2]
    if fault is VerdictFault.FENCED:
        return f"Here is my assessment of the response.\n```json\n{json.dumps(answer, indent=2)}\n```"
    if fault is VerdictFault.REFUSAL:
        return "I'm sorry, but I can't help with evaluating this."
    if fault is VerdictFault.EMPTY:
        return ""
    return text


class _ChatCompletionsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    server_version = "pytest-laj-simulator/0.1"

    @property
    def state(self) -> _SimulatorState:
        return cast(_SimulatorHTTPServer, self.server).state

    def setup(self) -> None:
        super().setup()
        self.state.open_connection(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.state.close_connection(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.state.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == STATS_PATH:
            self._send_stats()
        elif path in (CHAT_PATH, STATS_RESET_PATH):
            self._send_error(405, f"use POST for {path}", "method_not_allowed")
        else:
            self._send_error(404, f"no such endpoint: GET {path}", "not_found")

    def do_POST(self) -> None:
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        if path == CHAT_PATH:
            self._answer_chat(body)
        elif path == STATS_RESET_PATH:
            self.state.stats.reset()
            self._send_stats()
        elif path == STATS_PATH:
            self._send_error(405, f"use GET for {path}", "method_not_allowed")
        else:
            self._send_error(404, f"no such endpoint: POST {path}", "not_found")

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _answer_chat(self, body: bytes) -> None:
        """Refuse, misbehave, rate the output or give the judge's canned answer.

        Status and drop faults answer at once, as real gateways do; every 200 answer waits the judge's
        latency, or a latency fault's instead.
        """
        state = self.state
        try:
            request = parse_chat_request(body, state.rules)
        except InvalidRequest as refusal:
            state.stats.count(_raw_model_of(body))
            self._send_error(refusal.status, refusal.message, refusal.code)
            return
        state.stats.count(request.judge_name)
        script = state.rules.judges[request.judge_name]
        fault = state.faults.take(request.judge_name, script, request.case.output)
        if fault is not None and fault.status is not None:
            self._send_fault_status(fault, fault.status)
            return
        if fault is not None and fault.drop:
            self.close_connection = True
            return
        latency = state.rules.latency_seconds(request.judge_name)
        if fault is not None and fault.latency_ms is not None:
            latency = fault.latency_ms / 1000
        if latency > 0:
            state.stopping.wait(latency)
        if fault is not None and fault.body == "garbage":
            self._send_bytes(200, b"<html><body>502 Bad Gateway (simulated garbage)</body>", {})
            return
        verdict_fault = fault.verdict if fault is not None else None
        if script.answer is not None:
            content = json_content(script.answer, verdict_fault)
        else:
            # a judge that obeys the reply drops the check, as hijacked judges tend to
            echo = {} if script.obeys(request.case) else request.echo
            content = verdict_content(script.rate(request.case, request.criteria, request.items), verdict_fault, echo)
        completion = _chat_completion(request, content)
        state.stats.bill(completion["usage"])
        self._send_json(200, completion)

    def _send_fault_status(self, fault: Fault, status: int) -> None:
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        message = fault.message or f"simulated HTTP {status} from the judge simulator"
        if fault.echo_auth:
            message += f"; Incorrect API key provided: {self.headers.get('Authorization', '(none)')}"
        self._send_json(status, _error_body(message, _error_type_for(status), status), headers)

    def _send_stats(self) -> None:
        by_judge = self.state.stats.snapshot()
        self._send_json(200, {"requests": sum(by_judge.values()), "by_judge": by_judge})

    def _send_error(self, status: int, message: str, code: str) -> None:
        self._send_json(status, _error_body(message, _error_type_for(status), code))

    def _send_json(self, status: int, payload: object, headers: Mapping[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), headers or {})

    def _send_bytes(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _raw_model_of(body: bytes) -> str:
    """The model name a refused request asked for, as sent, for the stats."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _NO_MODEL
    model = payload.get("model") if isinstance(payload, dict) else None
    return model if isinstance(model, str) and model else _NO_MODEL


def _as_rules(rules: SimulatorRules | str | os.PathLike[str] | Mapping[str, Any]) -> SimulatorRules:
    if isinstance(rules, SimulatorRules):
        return rules
    if isinstance(rules, str | os.PathLike):
        return load_rules(Path(rules))
    return SimulatorRules.from_mapping(rules, "<rules mapping>")


class Simulator:
    """A judge simulator on 127.0.0.1 serving in a daemon thread; use as a context manager."""

    def __init__(
        self,
        rules: SimulatorRules | str | os.PathLike[str] | Mapping[str, Any],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.rules = _as_rules(rules)
        self._address = (host, port)
        self._state = _SimulatorState(self.rules, verbose)
        self._server: _SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Bind, serve in a daemon thread and return the base URL, e.g. http://127.0.0.1:PORT/v1."""
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._state.stopping.clear()
        self._server = _SimulatorHTTPServer(self._address, self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            name="laj-judge-simulator",
            daemon=True,
        )
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        """The api_base for litellm; only known once started."""
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{_host_text(host)}:{port}/v1"

    def stop(self) -> None:
        """Stop serving and close kept-alive connections; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._state.stopping.set()
        server.shutdown()
        self._state.shut_open_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def request_count(self) -> int:
        """Chat completions requests received so far, valid or not."""
        return sum(self._state.stats.snapshot().values())

    @property
    def requests_by_judge(self) -> dict[str, int]:
        """A copy of the request counts by judge name (refused models under the name sent)."""
        return self._state.stats.snapshot()

    @property
    def request_times(self) -> dict[str, list[float]]:
        """When each judge's requests arrived, in seconds on the server's monotonic clock (only gaps mean anything)."""
        return self._state.stats.times()

    @property
    def usage(self) -> dict[str, int]:
        """Tokens the answers so far reported as used: prompt_tokens, completion_tokens, total_tokens."""
        return self._state.stats.usage()

    def reset_counters(self) -> None:
        """Zero the request counts and the usage (as POST /v1/stats/reset does, for both)."""
        self._state.stats.reset()

    def reset_faults(self) -> None:
        """Give every fault its `times` back, as if the server had just started."""
        self._state.faults.reset()


def _host_text(host: str | bytes | bytearray) -> str:
    text = host.decode() if isinstance(host, bytes | bytearray) else host
    return f"[{text}]" if ":" in text else text
