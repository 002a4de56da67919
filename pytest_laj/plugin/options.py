"""Every pytest-laj option in one `laj` group, and how ini, command line and environment combine.

Command line beats environment beats ini file, except for judges: `LAJ_JUDGES` beats `--laj-judge` beats the
ini file, so CI can switch a suite to real judges without touching the command it runs.
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
import shlex
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from pytest_laj.core.modes import (
    ASK_MODE_HELP,
    CACHE_MODE_HELP,
    GATE_MODE_HELP,
    GITHUB_MODE_HELP,
    PREFETCH_MODE_HELP,
    REVIEW_MODE_HELP,
    AskMode,
    CacheMode,
    GateMode,
    GithubMode,
    PrefetchMode,
    ReviewMode,
)
from pytest_laj.engine.settings import Settings
from pytest_laj.errors import UsageError

if TYPE_CHECKING:
    from pytest_laj.judges.base import JudgeSpec


__all__ = ["WORKER_BASELINE", "OptionError", "add_options", "check_rootdir", "settings_from_config"]


E = TypeVar("E", bound=Enum)


def _mode_help(intro: str, modes: Mapping[E, str]) -> str:
    return intro + "\n\n" + "\n".join(f"{mode.value}: {text}" for mode, text in modes.items())


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("laj", "LLM-as-judge safety testing")
    group.addoption(
        "--laj-judge",
        action="append",
        dest="laj_judges",
        metavar="MODEL",
        default=None,
        help="Add a judge: a litellm model string with optional key=value options, e.g. "
        "'openai/gpt-4o weight=2'. Repeatable. Replaces ini laj_judges; env LAJ_JUDGES replaces both.",
    )
    group.addoption(
        "--laj-simulate",
        dest="laj_simulate",
        metavar="RULES",
        default=None,
        help="Point every judge at the offline judge simulator scripted by RULES (YAML), or 'off'. Write "
        "--laj-simulate=RULES: pytest takes a path after a space for a test path when it picks the rootdir. "
        "Env: LAJ_SIMULATE. Ini: laj_simulate (yields to judges given by --laj-judge or LAJ_JUDGES).",
    )
    group.addoption(
        "--laj-cache",
        dest="laj_cache",
        choices=[m.value for m in CacheMode],
        default=None,
        help=_mode_help("Verdict cache mode (env LAJ_CACHE, ini laj_cache):", CACHE_MODE_HELP),
    )
    group.addoption("--laj-cache-dir", dest="laj_cache_dir", metavar="DIR", default=None, help="Cache directory.")
    group.addoption(
        "--laj-cache-url",
        dest="laj_cache_url",
        metavar="URL",
        default=None,
        help="Keep verdicts in this Redis server (redis://[:password@]host:6379/0), shared by CI machines, "
        "instead of the cache directory, which keeps the last run's report (env LAJ_CACHE_URL, ini laj_cache_url).",
    )
    group.addoption(
        "--laj-review",
        dest="laj_review",
        choices=[m.value for m in ReviewMode],
        default=None,
        help=_mode_help("What a REVIEW outcome does (env LAJ_REVIEW, ini laj_review):", REVIEW_MODE_HELP),
    )
    group.addoption(
        "--laj-ask",
        dest="laj_ask",
        choices=[m.value for m in AskMode],
        default=None,
        help=_mode_help("How a question-graph rubric is asked (env LAJ_ASK, ini laj_ask):", ASK_MODE_HELP),
    )
    group.addoption(
        "--laj-prefetch",
        dest="laj_prefetch",
        choices=[m.value for m in PrefetchMode],
        default=None,
        help=_mode_help("Suite-level judging (env LAJ_PREFETCH, ini laj_prefetch):", PREFETCH_MODE_HELP),
    )
    group.addoption(
        "--laj-concurrency",
        dest="laj_concurrency",
        type=int,
        default=None,
        metavar="N",
        help="Judge calls in flight at once across the session (default 16).",
    )
    group.addoption(
        "--laj-timeout",
        dest="laj_timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Timeout of one judge call (default 60).",
    )
    group.addoption(
        "--laj-max-calls",
        dest="laj_max_calls",
        type=int,
        default=None,
        metavar="N",
        help="Make at most N judge calls in this run (all xdist workers together); the rest are ERROR.",
    )
    group.addoption(
        "--laj-max-cost",
        dest="laj_max_cost",
        type=float,
        default=None,
        metavar="USD",
        help="Stop calling judges once this much is spent (litellm's prices, where it knows them).",
    )
    group.addoption(
        "--laj-max-chars",
        dest="laj_max_chars",
        type=int,
        default=None,
        metavar="N",
        help="Refuse outputs and inputs longer than N characters instead of truncating (default 100000).",
    )
    group.addoption(
        "--laj-retries",
        dest="laj_retries",
        type=int,
        default=None,
        metavar="N",
        help="Retries of a judge call after a transient failure (default 3).",
    )
    _add_report_options(group)
    parser.addini("laj_judges", "Judges, one litellm model string (with key=value options) per line.", "linelist")
    parser.addini("laj_simulate", "Simulator rules file (relative to the ini file), or 'off'.", "string")
    parser.addini("laj_cache", "Verdict cache mode: " + ", ".join(m.value for m in CacheMode), "string")
    parser.addini("laj_cache_dir", "Verdict cache directory, relative to the rootdir.", "string")
    parser.addini(
        "laj_cache_url", "A Redis server for the verdicts (redis://host:6379/0) instead of the directory.", "string"
    )
    parser.addini(
        "laj_rubric_dirs", "Directories searched for rubric YAML files (relative to the rootdir).", "linelist"
    )
    parser.addini("laj_review", "What a REVIEW does: " + ", ".join(m.value for m in ReviewMode), "string")
    parser.addini("laj_ask", "How a question-graph rubric is asked: " + ", ".join(m.value for m in AskMode), "string")
    parser.addini("laj_prefetch", "Suite-level judging: " + ", ".join(m.value for m in PrefetchMode), "string")
    parser.addini("laj_concurrency", "Judge calls in flight at once (default 16).", "string")
    parser.addini("laj_timeout", "Timeout in seconds of one judge call (default 60).", "string")
    parser.addini("laj_retries", "Retries of a judge call after a transient failure (default 3).", "string")
    parser.addini("laj_max_calls", "At most this many judge calls per run.", "string")
    parser.addini("laj_max_cost", "Stop calling judges once this many USD are spent.", "string")
    parser.addini("laj_max_chars", "Longest output or input judged, in characters (default 100000).", "string")
    parser.addini("laj_report", "Write the run's JSON report here (relative to the rootdir).", "string")
    parser.addini("laj_html", "Write the run's HTML dashboard here (relative to the rootdir).", "string")
    parser.addini("laj_github", "GitHub Actions job summary and annotations: auto, on, off.", "string")
    parser.addini("laj_compare", "Compare every run with this baseline (a name or a path).", "string")
    parser.addini("laj_compare_fail", "Which changes against the baseline fail the run, e.g. 'outcome'.", "string")
    parser.addini("laj_gate", "What fails the run: " + ", ".join(m.value for m in GateMode), "string")
    parser.addini(
        "laj_labels", "People's decisions to honour (default laj-labels.yaml at the rootdir; off: none).", "string"
    )
    parser.addini("laj_baseline_dir", "Where baselines are kept (default .laj/baselines under the rootdir).", "string")


def _add_report_options(group: pytest.OptionGroup) -> None:
    """What a run leaves behind for people and for the next run: reports, job summary, baselines."""
    group.addoption(
        "--laj-report",
        dest="laj_report",
        metavar="PATH",
        default=None,
        help="Write the run's JSON report to PATH (env LAJ_REPORT, ini laj_report). Every run also writes "
        "<cache dir>/last-run.json unless the cache is off.",
    )
    group.addoption(
        "--laj-html",
        dest="laj_html",
        metavar="PATH",
        default=None,
        help="Write a self-contained HTML dashboard of the run to PATH (env LAJ_HTML, ini laj_html).",
    )
    group.addoption(
        "--laj-github",
        dest="laj_github",
        choices=[m.value for m in GithubMode],
        default=None,
        help=_mode_help(
            "GitHub Actions job summary and annotations (env LAJ_GITHUB, ini laj_github):", GITHUB_MODE_HELP
        ),
    )
    group.addoption(
        "--laj-save",
        dest="laj_save",
        metavar="NAME",
        default=None,
        help="Save this run's report as baseline NAME (under laj_baseline_dir, default .laj/baselines). Env LAJ_SAVE.",
    )
    group.addoption(
        "--laj-compare",
        dest="laj_compare",
        metavar="NAME_OR_PATH",
        nargs="?",
        const="latest",
        default=None,
        help="Compare this run with a baseline: a saved NAME, a report PATH, or (no value) the newest saved one. "
        "Env LAJ_COMPARE, ini laj_compare.",
    )
    group.addoption(
        "--laj-compare-fail",
        dest="laj_compare_fail",
        metavar="EXPR",
        default=None,
        help="With --laj-compare, fail the run on these changes, comma-separated: 'outcome' (any worse outcome), "
        "'score:D' (a score up by more than D), 'agreement:D' (agreement down by more than D). "
        "Env LAJ_COMPARE_FAIL, ini laj_compare_fail.",
    )
    group.addoption(
        "--laj-labels",
        dest="laj_labels",
        metavar="PATH",
        default=None,
        help="The labels file of people's decisions, which the run honours (default laj-labels.yaml at the rootdir; "
        "'off': none). YAML, or JSONL by its suffix. Env LAJ_LABELS, ini laj_labels.",
    )
    group.addoption(
        "--laj-gate",
        dest="laj_gate",
        choices=[m.value for m in GateMode],
        default=None,
        help=_mode_help("What fails the run (env LAJ_GATE, ini laj_gate):", GATE_MODE_HELP),
    )


class OptionError(UsageError):
    """An option has a value that cannot work."""


def settings_from_config(config: pytest.Config, environ: Mapping[str, str] = os.environ) -> Settings:
    """The run's settings from the ini file, command line and environment."""
    root = config.rootpath
    ini_dir = config.inipath.parent if config.inipath else root
    judges, source = _judges(config, environ)
    simulate = _simulate(config, environ, ini_dir, judges_from_ini=source in ("ini", "none"))
    baseline_dir = root / (str(config.getini("laj_baseline_dir") or "").strip() or ".laj/baselines")
    settings = Settings(
        judges=judges,
        judges_source=source,
        simulate=simulate,
        cache_mode=_enum(CacheMode, _pick(config, "laj_cache", "LAJ_CACHE", environ) or "rw", "laj_cache"),
        cache_dir=root / (_pick(config, "laj_cache_dir", "LAJ_CACHE_DIR", environ) or ".laj_cache"),
        cache_url=_cache_url(config, environ),
        rubric_dirs=_rubric_dirs(config, root),
        review=_enum(ReviewMode, _pick(config, "laj_review", "LAJ_REVIEW", environ) or "fail", "laj_review"),
        ask=_enum(AskMode, _pick(config, "laj_ask", "LAJ_ASK", environ) or "whole", "laj_ask"),
        prefetch=_enum(PrefetchMode, _pick(config, "laj_prefetch", "LAJ_PREFETCH", environ) or "auto", "laj_prefetch"),
        concurrency=_number(int, config, "laj_concurrency", environ, 16, minimum=1),
        timeout=_number(float, config, "laj_timeout", environ, 60.0, minimum=0.001),
        retries=_number(int, config, "laj_retries", environ, 3, minimum=0),
        max_calls=_optional(int, config, "laj_max_calls", environ, minimum=0),
        max_cost=_optional(float, config, "laj_max_cost", environ, minimum=0.0),
        max_chars=_number(int, config, "laj_max_chars", environ, 100_000, minimum=1),
        run_id=getattr(config, "workerinput", {}).get("testrunuid"),
        base_dir=root,
        report=_output_path(config, "laj_report", "LAJ_REPORT", environ),
        html=_output_path(config, "laj_html", "LAJ_HTML", environ),
        github=_enum(GithubMode, _pick(config, "laj_github", "LAJ_GITHUB", environ) or "auto", "laj_github"),
        save=_pick_cli_env(config, "laj_save", "LAJ_SAVE", environ),
        compare=_baseline(config, environ, baseline_dir),
        compare_fail=_pick(config, "laj_compare_fail", "LAJ_COMPARE_FAIL", environ),
        gate=_enum(GateMode, _pick(config, "laj_gate", "LAJ_GATE", environ) or "all", "laj_gate"),
        baseline_dir=baseline_dir,
        labels=_labels_path(config, environ),
    )
    _check_baseline_options(settings)
    return settings


def _cache_url(config: pytest.Config, environ: Mapping[str, str]) -> str | None:
    """The Redis store's URL, if one is configured; checked for its scheme here, reached at session start."""
    from pytest_laj.core.redact import redact

    url = _pick(config, "laj_cache_url", "LAJ_CACHE_URL", environ)
    schemes = ("redis://", "rediss://", "unix://")
    if url and not url.lower().startswith(schemes):
        raise OptionError(
            f"laj_cache_url: expected a Redis URL ({', '.join(s + '...' for s in schemes)}), got {redact(url)!r}"
        )
    return url or None


WORKER_BASELINE = "laj_baseline"
"""The baseline the xdist controller found, for its workers: they compare with the same report."""


def _baseline(config: pytest.Config, environ: Mapping[str, str], directory: Path) -> Path | None:
    """The report `--laj-compare` names, found now: a missing one stops the run before any test. A name or path
    on the command line or in the environment is relative to where pytest was run, one in the ini file to the
    rootdir (like `_output_path`)."""
    found = getattr(config, "workerinput", {}).get(WORKER_BASELINE)
    if found:
        return Path(found)
    ini = str(config.getini("laj_compare") or "").strip()
    given = [
        (config.getoption("laj_compare"), config.invocation_params.dir),
        (environ.get("LAJ_COMPARE", "").strip(), config.invocation_params.dir),
        (ini, config.rootpath),
    ]
    for spec, base in given:
        if spec:
            from pytest_laj.results.baseline import resolve  # pydantic: paid only by runs that compare

            return resolve(str(spec), directory, base)
    return None


def _check_baseline_options(settings: Settings) -> None:
    """A baseline name, the `--laj-compare-fail` rules, and what needs a baseline to compare with."""
    needs = [
        *(["laj_compare_fail"] if settings.compare_fail is not None else []),
        *(["laj_gate regressions"] if settings.gate is GateMode.REGRESSIONS else []),
    ]
    if needs and settings.compare is None:
        raise OptionError(f"{' and '.join(needs)}: needs a baseline to compare with; add --laj-compare [NAME]")
    if settings.save is None and settings.compare_fail is None:
        return
    from pytest_laj.results.baseline import check_name, parse_rules  # pydantic: paid only by runs that use them

    if settings.save is not None:
        check_name(settings.save)
    if settings.compare_fail is not None:
        parse_rules(settings.compare_fail)


def _labels_path(config: pytest.Config, environ: Mapping[str, str]) -> Path | None:
    """The labels file (default `laj-labels.yaml` at the rootdir); `off` honours no decision."""
    for given in (config.getoption("laj_labels"), environ.get("LAJ_LABELS", "").strip()):
        if given:
            return None if given == "off" else config.invocation_params.dir / str(given)
    ini = str(config.getini("laj_labels") or "").strip() or "laj-labels.yaml"
    return None if ini == "off" else config.rootpath / ini


def _output_path(config: pytest.Config, name: str, env: str, environ: Mapping[str, str]) -> Path | None:
    """Like --junitxml: a path on the command line or in the environment is relative to where pytest was run,
    one in the ini file to the rootdir."""
    for given in (config.getoption(name), environ.get(env, "").strip()):
        if given:
            return config.invocation_params.dir / str(given)
    ini = str(config.getini(name) or "").strip()
    return config.rootpath / ini if ini else None


def _pick_cli_env(config: pytest.Config, name: str, env: str, environ: Mapping[str, str]) -> str | None:
    """An option with no ini form: saving a baseline is a decision for one run, not for every run."""
    cli = config.getoption(name)
    if cli not in (None, ""):
        return str(cli)
    return environ.get(env, "").strip() or None


def _pick(config: pytest.Config, name: str, env: str, environ: Mapping[str, str]) -> str | None:
    cli = config.getoption(name)
    if cli not in (None, ""):
        return str(cli)
    if environ.get(env, "").strip():
        return environ[env].strip()
    return str(config.getini(name) or "").strip() or None


def _enum(kind: type[E], value: str, option: str) -> E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        raise OptionError(f"{option}: {value!r} is not a mode; expected one of: {allowed}") from None


N = TypeVar("N", int, float)


def _number(kind: type[N], config: pytest.Config, name: str, environ: Mapping[str, str], default: N, minimum: N) -> N:
    value = _optional(kind, config, name, environ, minimum)
    return default if value is None else value


def _optional(kind: type[N], config: pytest.Config, name: str, environ: Mapping[str, str], minimum: N) -> N | None:
    raw = _pick(config, name, name.upper(), environ)
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise OptionError(f"{name}: expected a {kind.__name__}, got {raw!r}") from None
    if not math.isfinite(value):
        raise OptionError(f"{name}: expected a finite number, got {raw!r}")
    if value < minimum:
        raise OptionError(f"{name}: must be at least {minimum}, got {value}")
    return value


def _judges(config: pytest.Config, environ: Mapping[str, str]) -> tuple[list[JudgeSpec], str]:
    env = environ.get("LAJ_JUDGES", "").strip()
    cli = config.getoption("laj_judges")
    ini = [line for line in config.getini("laj_judges") if line.strip()]
    if env:
        entries, source, where = [e.strip() for e in env.split(",") if e.strip()], "env", "LAJ_JUDGES"
    elif cli:
        entries, source, where = list(cli), "cli", "--laj-judge"
    elif ini:
        entries, source, where = ini, "ini", "ini laj_judges"
    else:
        return [], "none"
    from pytest_laj.judges.base import parse_judge_specs  # pydantic: paid only by runs that configure judges
    from pytest_laj.judges.llm import completion_params  # imports litellm only to check a rare option

    return parse_judge_specs(entries, where, completion_params), source


def _rubric_dirs(config: pytest.Config, root: Path) -> list[Path]:
    """The directories searched for rubrics; one the ini names that does not exist is a mistake (the default
    `rubrics` may be absent in a project that only passes rubrics by path)."""
    configured = [line for line in config.getini("laj_rubric_dirs") if line.strip()]
    missing = [root / d for d in configured if not (root / d).is_dir()]
    if missing:
        raise OptionError(
            f"laj_rubric_dirs: rubric director{'y' if len(missing) == 1 else 'ies'} not found: "
            f"{', '.join(map(str, missing))} (relative to the rootdir {root})"
        )
    return [root / d for d in configured or ["rubrics"]]


_PATH_OPTIONS = ("--laj-simulate", "--laj-cache-dir")


def check_rootdir(config: pytest.Config) -> None:
    """Stop when `--laj-simulate PATH` (with a space) moved pytest's rootdir away from the project's ini file.

    pytest picks its rootdir and ini file from the command's path arguments before any plugin's options are
    known, so it takes such a PATH for a test path; the ini file (judges, rubric directories) is then silently
    not read. The rootdir is worked out again without the option's value: only if it differs is it a mistake."""
    invocation = config.invocation_params
    args = [*shlex.split(os.environ.get("PYTEST_ADDOPTS", "")), *map(str, invocation.args)]
    spaced = [
        option
        for option, value in itertools.pairwise(args)
        if option in _PATH_OPTIONS and os.path.exists(invocation.dir / value)  # False for any OSError
    ]
    if not spaced or config.option.rootdir or config.option.inifilename:
        return
    from _pytest.config.findpaths import determine_setup  # how pytest itself decides; keyword-only arguments

    known = {
        "inifile": None,
        "override_ini": config.option.override_ini,
        "args": config.option.file_or_dir or [],
        "rootdir_cmd_arg": None,
        "invocation_dir": invocation.dir,
    }
    accepted = inspect.signature(determine_setup).parameters
    rootpath, inipath = determine_setup(**{k: v for k, v in known.items() if k in accepted})[:2]
    if (rootpath, inipath) != (config.rootpath, config.inipath):
        option = spaced[0]
        raise OptionError(
            f"{option} PATH (with a space) made pytest take PATH for a test path and choose the rootdir "
            f"{config.rootpath} (ini file: {config.inipath or 'none'}) instead of {rootpath} (ini file: "
            f"{inipath or 'none'}); pytest decides the rootdir before it knows pytest-laj's options. "
            f"Write {option}=PATH."
        )


def _simulate(config: pytest.Config, environ: Mapping[str, str], ini_dir: Path, judges_from_ini: bool) -> Path | None:
    cli = config.getoption("laj_simulate")
    env = environ.get("LAJ_SIMULATE", "").strip()
    if cli:
        value, base = str(cli), config.invocation_params.dir
    elif env:
        value, base = env, config.invocation_params.dir
    elif judges_from_ini and str(config.getini("laj_simulate")).strip():
        value, base = str(config.getini("laj_simulate")).strip(), ini_dir
    else:
        return None
    if value.lower() == "off":
        return None
    path = Path(value)
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise OptionError(f"laj_simulate: simulator rules file not found: {path}")
    return path
