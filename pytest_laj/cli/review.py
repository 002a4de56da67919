"""`laj review`: a local page for working through a run's review queue, served on 127.0.0.1 only.

The standard library's `ThreadingHTTPServer` serves it: one page and one write endpoint need no framework, and
every check that keeps the labels file safe is explicit here rather than in a library's defaults. The page is
the only reader of the labels it writes, so a site open in the same browser must not be able to write any:
the server listens on loopback only, answers only requests addressed to its own host and port (a DNS-rebound
name is refused), accepts a write only from its own origin, with the per-server random token that only its
page holds (in the page, never in the URL), as JSON of bounded size. Everything from the run is data the page
shows as text under a strict Content-Security-Policy.
"""

from __future__ import annotations

import argparse
import hmac
import json
import secrets
import threading
import webbrowser
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pytest_laj.cli.labels import load_labels, load_report, print_queue
from pytest_laj.cli.project import Project, find_project
from pytest_laj.cli.queue import Item, build_queue, parse_include, record_decision, reviewer_name, rubric_for
from pytest_laj.core.models import Outcome
from pytest_laj.core.rubric import Rubric
from pytest_laj.errors import UsageError
from pytest_laj.render.review import render_review, review_policy
from pytest_laj.results.record import RunRecord

__all__ = ["ReviewServer", "ReviewSession", "review_command"]

MAX_BODY = 64 * 1024
"""The largest decision the page can send: levels for every criterion and a note, with room to spare."""
TOKEN_HEADER = "X-Laj-Token"


class _DecideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    index: int = Field(ge=0)
    key: str
    levels: dict[str, str]
    note: str = Field(default="", max_length=4000)


class ReviewSession:
    """The queue of one report, the reviewer, and the labels file decisions go to; shared by the handler
    threads, which write one at a time."""

    def __init__(
        self,
        project: Project,
        run: RunRecord,
        labels: Path,
        reviewer: str,
        include: Sequence[Outcome] = (),
    ) -> None:
        self.project, self.run, self.labels, self.reviewer, self.include = project, run, labels, reviewer, include
        self.token = secrets.token_urlsafe(32)
        self.saved = 0
        self._lock = threading.Lock()
        items = self.items()
        # every rubric checked up front: a decision keyed for a rubric that changed would never match
        self._rubrics: dict[str, Rubric] = {i.assessment.rubric: rubric_for(project, i.record) for i in items}

    def items(self) -> list[Item]:
        store = load_labels(self.project, self.labels)
        return build_queue(self.run, store, self.include)

    def view(self) -> dict[str, Any]:
        """What the page draws: the queue as it stands in the labels file now."""
        return {
            "reviewer": self.reviewer,
            "labels": str(self.labels),
            "token": self.token,
            "items": [self._item_view(item) for item in self.items()],
        }

    def _item_view(self, item: Item) -> dict[str, Any]:
        a, rubric = item.assessment, self._rubrics[item.assessment.rubric]
        criteria = []
        for criterion in rubric.criteria:
            result = a.criteria.get(criterion.id)
            criteria.append(
                {
                    "id": criterion.id,
                    "question": criterion.question,
                    "guidance": criterion.guidance,
                    "applicable": bool(result and result.applicable),
                    "at_issue": criterion.id in item.at_issue,
                    "disputed": criterion.id in a.review_criteria,
                    "consensus": result.consensus if result else None,
                    "agreement": result.agreement if result else 0.0,
                    "human": result.human.describe() if result and result.human else None,
                    "levels": [
                        lv.model_dump(include={"id", "label", "description", "critical"})
                        for lv in rubric.levels_for(criterion)
                    ],
                    "votes": [
                        v.model_dump(include={"judge", "level", "rationale", "evidence", "critical", "driver", "path"})
                        for v in (result.votes if result else [])
                    ],
                }
            )
        decisions = item.label.decisions if item.label else []
        mine = next((d for d in decisions if d.reviewer == self.reviewer), None)
        return {
            "key": a.label_key,
            "nodeid": item.record.nodeid,
            "case_id": item.record.case_id,
            "outcome": a.outcome.value,
            "provisional": a.provisional.value if a.provisional else None,
            "why": item.why,
            "rubric": a.rubric,
            "rubric_version": a.rubric_version,
            "input": a.input,
            "context": a.context,
            "output": a.output,
            "missing": [f"{j.judge}: {j.error}" for j in a.judges if not j.valid],
            "criteria": criteria,
            "mine": mine.model_dump(exclude={"earlier"}) if mine else None,
            "others": [d.model_dump(exclude={"earlier"}) for d in decisions if d.reviewer != self.reviewer],
            "stale": [
                {**d.model_dump(exclude={"earlier"}), "excerpt": label.output_excerpt}
                for label in item.stale
                for d in label.decisions
            ],
        }

    def decide(self, request: _DecideRequest) -> dict[str, Any]:
        """Record the reviewer's decision on the item the page names; the item as it is now, for the page."""
        with self._lock:
            items = self.items()
            if request.index >= len(items) or items[request.index].assessment.label_key != request.key:
                raise UsageError("that item is not in the queue any more: reload the page")
            record_decision(
                self.project, self.labels, items[request.index].record, self.reviewer, request.levels, request.note
            )
            self.saved += 1
            return self._item_view(self.items()[request.index])


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "pytest-laj-review"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal is the reviewer's, and request lines would only repeat node ids."""

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, policy: str = "default-src 'none'") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", policy)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: HTTPStatus, value: dict[str, Any]) -> None:
        self._send(status, json.dumps(value).encode("utf-8"), "application/json")

    def _refuse(self, status: HTTPStatus, why: str) -> None:
        self.close_connection = True
        self._json(status, {"error": why})

    def _addressed_to_us(self) -> bool:
        return self.headers.get("Host") == self.server.host

    def do_GET(self) -> None:
        if not self._addressed_to_us():
            return self._refuse(HTTPStatus.FORBIDDEN, "not this server's host")
        if self.path != "/":
            return self._refuse(HTTPStatus.NOT_FOUND, "not found")
        try:
            page = render_review(self.server.session.view())
        except UsageError as error:  # the labels file broke while the page was open
            return self._refuse(HTTPStatus.CONFLICT, str(error))
        self._send(HTTPStatus.OK, page.encode("utf-8"), "text/html; charset=utf-8", review_policy())

    def do_POST(self) -> None:
        token = self.headers.get(TOKEN_HEADER, "")
        if not self._addressed_to_us():
            return self._refuse(HTTPStatus.FORBIDDEN, "not this server's host")
        if self.headers.get("Origin") != self.server.url.rstrip("/"):
            return self._refuse(HTTPStatus.FORBIDDEN, "not this page's origin")
        if not hmac.compare_digest(token.encode(), self.server.session.token.encode()):
            return self._refuse(HTTPStatus.FORBIDDEN, "no valid token")
        if self.path != "/api/decide":
            return self._refuse(HTTPStatus.NOT_FOUND, "not found")
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "expected application/json")
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            return self._refuse(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required")
        if int(length) > MAX_BODY:
            return self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"at most {MAX_BODY} bytes")
        try:
            request = _DecideRequest.model_validate_json(self.rfile.read(int(length)))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            return self._refuse(HTTPStatus.BAD_REQUEST, f"{where}: {first['msg']}")
        try:
            item = self.server.session.decide(request)
        except UsageError as error:
            return self._refuse(HTTPStatus.BAD_REQUEST, str(error))
        self._json(HTTPStatus.OK, {"item": item})


class ReviewServer(ThreadingHTTPServer):
    """The review page and its write endpoint on 127.0.0.1 (port 0: a free one)."""

    daemon_threads = True

    def __init__(self, session: ReviewSession, port: int = 0) -> None:
        self.session = session
        try:
            super().__init__(("127.0.0.1", port), _Handler)
        except OSError as error:
            raise UsageError(f"cannot listen on 127.0.0.1:{port} ({error.strerror or error})") from None
        self.host = f"127.0.0.1:{self.server_address[1]}"
        self.url = f"http://{self.host}/"


def review_command(args: argparse.Namespace) -> int:
    """`laj review [REPORT]`: print the queue (`--list`), or serve the page until Ctrl-C."""
    project = find_project()
    report, run = load_report(project, args.report)
    if args.list:
        return print_queue(report, run, load_labels(project, args.labels), args.include)
    include = parse_include(args.include)
    labels = project.labels_file(args.labels)
    session = ReviewSession(project, run, labels, reviewer_name(args.reviewer, cwd=project.rootdir), include)
    count = len(session.items())
    if not count:
        print(f"nothing to review in {report}")
        return 0
    server = ReviewServer(session, args.port)
    print(f"{count} item(s) to review from {report}; decisions by {session.reviewer} go to {labels}")
    print(f"review page: {server.url}  (Ctrl-C to stop)", flush=True)
    if not args.no_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print(f"stopped; {session.saved} decision(s) saved to {labels}; rerun the suite to apply them")
    return 0
