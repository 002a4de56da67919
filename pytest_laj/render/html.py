"""The HTML dashboard: one self-contained file a reviewer opens from disk or a CI artifact. It decides nothing.

The run travels as JSON inside a `<script type="application/json">` element and the page's own script builds
the view from it with `textContent` and `createElement` only, so an output full of markup stays text. A strict
Content-Security-Policy (no source at all, and the one script and style allowed by their hashes) means even a
bug cannot run injected code or fetch anything. Rows are built as they scroll into view and an assessment's
details when it is opened, so a run of thousands of assessments opens at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
from importlib import resources
from typing import Any

from pytest_laj.results.calibration import Calibration
from pytest_laj.results.record import RunRecord

__all__ = ["csp_hash", "render_html", "script_data"]

# What the page never shows, or shows from elsewhere: a verdict repeats its judge's votes, a question is the same
# in every assessment of a rubric (kept once, in `questions`), hashes identify content for machines.
_UNSHOWN: Any = {
    "records": {
        "__all__": {
            "output_sha256": True,
            "input_sha256": True,
            "assessment": {
                "identity": True,
                "rubric_fingerprint": True,
                "criteria": {"__all__": {"question": True, "votes": {"__all__": {"weight"}}}},
                "judges": {"__all__": {"verdict"}},
            },
        }
    }
}

# Characters that could end the data's script element or start markup, and the two that end a JavaScript line.
_UNSAFE_IN_SCRIPT = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _asset(name: str) -> str:
    return (resources.files("pytest_laj.render") / "dashboard" / name).read_text(encoding="utf-8")


def shared_script(name: str) -> str:
    """A script both pages run (the dashboard and the review page), put before each page's own."""
    return (resources.files("pytest_laj.render") / "shared" / name).read_text(encoding="utf-8")


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _view(run: RunRecord, calibration: Calibration | None = None) -> dict[str, Any]:
    """The run as the page reads it: the record, less what it repeats, plus whether each judge's verdict counted."""
    data: dict[str, Any] = run.model_dump(mode="json", exclude=_UNSHOWN)
    questions: dict[str, str] = {}
    for record, shown in zip(run.records, data["records"], strict=True):
        a = record.assessment
        for cid, criterion in a.criteria.items():
            questions.setdefault(f"{a.rubric}/{a.rubric_version}/{cid}", criterion.question)
        for judge, judge_shown in zip(a.judges, shown["assessment"]["judges"], strict=True):
            judge_shown["valid"] = judge.valid
    data["questions"] = questions
    if calibration is not None:
        data["calibration"] = calibration.model_dump(mode="json")
    return data


def script_data(value: Any) -> str:
    """`value` as JSON that is inert inside a script element: no `</script>`, no markup, ASCII only (so even an
    unpaired surrogate in an output is written as an escape, not an encoding error)."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False).translate(_UNSAFE_IN_SCRIPT)


def render_html(run: RunRecord, calibration: Calibration | None = None) -> str:
    """The dashboard of `run` as one HTML document that loads nothing: styles and script inline, allowed by hash.
    With a `calibration` (`laj calibrate --html`), it has a section comparing the panel with people."""
    style, script = _asset("dashboard.css"), shared_script("item_path.js") + _asset("dashboard.js")
    policy = (
        f"default-src 'none'; script-src {csp_hash(script)}; style-src {csp_hash(style)}; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>pytest-laj report</title>\n"
        f"<style>{style}</style>\n"
        "</head>\n<body>\n"
        "<noscript><p>This report is drawn by its own inline script; the run is in the laj-data element as JSON."
        "</p></noscript>\n"
        '<main id="app"><p>Loading the run\u2026</p></main>\n'
        f'<script id="laj-data" type="application/json">{script_data(_view(run, calibration))}</script>\n'
        f"<script>{script}</script>\n"
        "</body>\n</html>\n"
    )
