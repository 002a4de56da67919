"""The review page `laj review` serves: the queue as JSON inside the page, drawn by the page's own script.

As with the dashboard, every string from the run reaches the page as text (`textContent`, never markup) and a
strict Content-Security-Policy allows only the page's own inline script and style, by hash; the one thing the
page may fetch is its own server (`connect-src 'self'`), to save a decision.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from pytest_laj.render.html import csp_hash, script_data, shared_script

__all__ = ["render_review", "review_policy"]


def _asset(name: str) -> str:
    return (resources.files("pytest_laj.render") / "review" / name).read_text(encoding="utf-8")


def _script() -> str:
    return shared_script("item_path.js") + _asset("review.js")


def review_policy() -> str:
    """The page's Content-Security-Policy: its own script and style, its own server, nothing else."""
    script, style = csp_hash(_script()), csp_hash(_asset("review.css"))
    return (
        f"default-src 'none'; script-src {script}; style-src {style}; "
        "connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def render_review(data: dict[str, Any]) -> str:
    """The review page for `data` (the queue, the reviewer and the server's write token) as one HTML document."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>pytest-laj review</title>\n"
        f"<style>{_asset('review.css')}</style>\n"
        "</head>\n<body>\n"
        "<noscript><p>This page is drawn by its own inline script.</p></noscript>\n"
        '<main id="app"><p>Loading the queue\u2026</p></main>\n'
        f'<script id="laj-review" type="application/json">{script_data(data)}</script>\n'
        f"<script>{_script()}</script>\n"
        "</body>\n</html>\n"
    )
