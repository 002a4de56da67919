/* pytest-laj dashboard: draws the run embedded as JSON in #laj-data.
 * Every string from the run is untrusted (outputs are what is being tested): it reaches the page only as text
 * nodes (append of a string, textContent) or as the value of a harmless attribute (title). Never innerHTML,
 * never a URL built from data. */
"use strict";
(function () {
  var run = JSON.parse(document.getElementById("laj-data").textContent);
  var ORDER = ["review", "fail", "error", "pass"];  // what needs a human first
  var PAGE = 100;
  var TIMES = "\u00d7", ARROW = "\u2192", DASH = "\u2014", ELLIPSIS = "\u2026";

  // -- building blocks ----------------------------------------------------------------------------------------

  function h(tag, props) {
    var el = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (key) {
        var value = props[key];
        if (value === undefined || value === null) return;
        if (key === "class") el.className = value;
        else if (key === "text") el.textContent = value;
        else if (key === "title" || key === "scope" || key === "colspan" || key === "type" || key === "value" ||
                 key === "id" || key === "placeholder" || key === "for" || key === "label" || key.indexOf("aria-") === 0 ||
                 key.indexOf("data-") === 0) el.setAttribute(key, String(value));
        else if (key.indexOf("on") === 0) el.addEventListener(key.slice(2), value);
        else throw new Error("unexpected property " + key);
      });
    }
    add.apply(null, [el].concat(Array.prototype.slice.call(arguments, 2)));
    return el;
  }

  function add(el) {
    // Appends each further argument: a node, a list of them, or a value shown as text (null and false: nothing).
    for (var i = 1; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) child.forEach(function (c) { add(el, c); });
      else if (child instanceof Node) el.appendChild(child);
      else el.appendChild(document.createTextNode(String(child)));
    }
  }

  function num(x, digits) {
    if (x === null || x === undefined) return "\u2013";
    return Number(x).toFixed(digits === undefined ? 2 : digits).replace(/\.?0+$/, "") || "0";
  }
  function pct(x) { return Math.round(x * 100) + "%"; }
  function money(x) { return "$" + Number(x || 0).toFixed(4); }
  function secs(x) { return x === null || x === undefined ? "\u2013" : Number(x).toFixed(2) + " s"; }
  function upper(outcome) { return String(outcome).toUpperCase(); }
  function badge(outcome) { return h("span", {"class": "badge o-" + outcome}, upper(outcome)); }
  function shortSha(sha) { return sha ? String(sha).slice(0, 7) : ""; }
  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }
  function date(iso) { return iso ? String(iso).replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : ""; }
  function table(head, rows, caption) {
    return h("table", null, caption ? h("caption", {"class": "muted"}, caption) : null,
      h("thead", null, h("tr", null, head.map(function (x) { return h("th", {scope: "col"}, x); }))),
      h("tbody", null, rows));
  }
  function td(value, cls) { return h("td", cls ? {"class": cls} : null, value); }
  function meta(pairs) {
    return h("dl", {"class": "meta"}, pairs.filter(function (p) { return p[1] !== null && p[1] !== "" && p[1] !== undefined; })
      .map(function (p) { return [h("dt", null, p[0]), h("dd", null, p[1])]; }));
  }

  // -- what each assessment is, for sorting, filtering and search --------------------------------------------

  var records = run.records.map(function (record, index) { return {record: record, index: index, body: null, text: null}; });
  records.sort(function (x, y) {
    return ORDER.indexOf(x.record.assessment.outcome) - ORDER.indexOf(y.record.assessment.outcome) || x.index - y.index;
  });

  function atIssue(a, cid) {
    // A criterion is at issue in an assessment when it is disputed, or when its consensus adds to the score.
    var c = a.criteria[cid];
    return !!c && (a.review_criteria.indexOf(cid) >= 0 || c.severity > 0 || c.critical);
  }

  function haystack(item) {
    if (item.text === null) {
      var r = item.record, a = r.assessment, parts = [r.nodeid, r.case_id || "", a.rubric, a.reason, a.input || "", a.output];
      Object.keys(a.context).forEach(function (k) { parts.push(k + "=" + a.context[k]); });
      Object.keys(a.criteria).forEach(function (cid) {
        parts.push(cid);
        a.criteria[cid].votes.forEach(function (v) { parts.push(v.judge, v.level, v.rationale, v.evidence); });
      });
      a.judges.forEach(function (j) { if (j.error) parts.push(j.error); });
      parts = parts.concat(a.suspected_injection);
      item.text = parts.join("\n").toLowerCase();
    }
    return item.text;
  }

  var state = {outcomes: {review: true, fail: true, error: true, pass: true}, rubric: "", criterion: "", text: ""};
  var shown = [], drawn = 0;

  function matches(item) {
    var a = item.record.assessment;
    if (!state.outcomes[a.outcome]) return false;
    if (state.rubric && a.rubric !== state.rubric) return false;
    if (state.criterion) {
      var slash = state.criterion.indexOf("/");
      if (a.rubric !== state.criterion.slice(0, slash) || !atIssue(a, state.criterion.slice(slash + 1))) return false;
    }
    return !state.text || haystack(item).indexOf(state.text) >= 0;
  }

  // -- one assessment, in full (built when first opened) -------------------------------------------------------

  function quotesOf(a) {
    var quotes = [];
    Object.keys(a.criteria).forEach(function (cid) {
      a.criteria[cid].votes.forEach(function (v) {
        if (v.evidence && v.evidence.trim()) quotes.push({quote: v.evidence, who: v.judge + " on " + cid, start: -1});
      });
    });
    return quotes;
  }

  function locate(text, quotes) {
    // Every occurrence of every quote, exact first, then ignoring case where that keeps positions aligned.
    var lower = text.toLowerCase(), sameLength = lower.length === text.length, spans = [];
    quotes.forEach(function (q) {
      var hay = text, needle = q.quote, at = hay.indexOf(needle);
      if (at < 0 && sameLength) { hay = lower; needle = q.quote.toLowerCase(); at = hay.indexOf(needle); }
      q.start = at;
      while (at >= 0 && needle.length > 0) {
        spans.push({start: at, end: at + needle.length, who: q.who});
        at = hay.indexOf(needle, at + needle.length);
      }
    });
    return spans;
  }

  function highlighted(text, quotes) {
    // The output as text nodes, with each quoted stretch in a <mark> naming who quoted it.
    var spans = locate(text, quotes), cuts = [0, text.length];
    spans.forEach(function (s) { cuts.push(s.start, s.end); });
    cuts = cuts.filter(function (c, i, all) { return all.indexOf(c) === i; }).sort(function (x, y) { return x - y; });
    var pre = h("pre", {"class": "output"});
    for (var i = 0; i + 1 < cuts.length; i++) {
      var from = cuts[i], to = cuts[i + 1], piece = text.slice(from, to);
      var who = spans.filter(function (s) { return s.start <= from && s.end >= to; }).map(function (s) { return s.who; });
      who = who.filter(function (w, k) { return who.indexOf(w) === k; });
      pre.appendChild(who.length ? h("mark", {title: "quoted by " + who.join("; ")}, piece) : document.createTextNode(piece));
    }
    return pre;
  }

  function levelClass(vote) {
    if (vote.critical) return "lv lv-crit";
    if (vote.rank === null || vote.rank === undefined) return "lv lv-na";
    return "lv lv-" + Math.min(vote.rank, 2);
  }

  function votesMatrix(a) {
    var cids = Object.keys(a.criteria);
    var rows = a.judges.map(function (j) {
      return h("tr", null, h("th", {scope: "row"}, j.judge), cids.map(function (cid) {
        var c = a.criteria[cid];
        if (!j.valid) return td("missing", "lv lv-missing");
        var vote = c.votes.filter(function (v) { return v.judge === j.judge; })[0];
        if (!vote) return td("no vote", "lv lv-missing");
        return h("td", {"class": levelClass(vote), title: vote.rationale}, vote.level + (vote.critical ? " (critical)" : ""));
      }));
    });
    rows.push(h("tr", null, h("th", {scope: "row"}, "consensus"), cids.map(function (cid) {
      var c = a.criteria[cid], disputed = a.review_criteria.indexOf(cid) >= 0;
      var label = !c.applicable ? "not relevant" : c.consensus === null ? "no valid vote" :
        c.consensus_label + (c.critical ? " (critical)" : "") + ", agreement " + pct(c.agreement) + (disputed ? ", disputed" : "");
      if (c.human) {  // people's level replaced the panel's consensus
        label += ", decided by " + c.human.reviewers.join(", ") + " on " + c.human.decided_at.slice(0, 10) +
          " (the panel's consensus: " + (c.panel_consensus === null ? "none" : c.panel_consensus) + ")";
      }
      return td(label, disputed ? "disputed" : c.human ? "decided" : null);
    })));
    return h("table", {"class": "votes"}, h("caption", {"class": "muted"}, "Votes: judges " + TIMES + " criteria"),
      h("thead", null, h("tr", null, h("th", {scope: "col"}, "judge"), cids.map(function (cid) { return h("th", {scope: "col"}, cid); }))),
      h("tbody", null, rows));
  }

  function itemPath(v) { return lajItemPath(h, v); }

  function rationales(a) {
    return Object.keys(a.criteria).map(function (cid) {
      var c = a.criteria[cid], question = run.questions[a.rubric + "/" + a.rubric_version + "/" + cid] || "";
      return h("div", {"class": "rationale"}, h("h3", null, cid, h("span", {"class": "muted"}, " " + DASH + " " + question)),
        c.votes.length === 0 ? h("p", {"class": "muted"}, "no valid vote") :
        h("ul", {"class": "tight"}, c.votes.map(function (v) {
          return h("li", null, h("strong", null, v.judge), " ", h("span", {"class": levelClass(v)}, v.level), ": ",
            v.rationale || h("span", {"class": "muted"}, "(no rationale)"),
            v.evidence ? [" ", h("span", {"class": "muted"}, "evidence:"), " \u201c", v.evidence, "\u201d"] : null,
            itemPath(v));
        })));
    });
  }

  function veraText(score) { return score === null ? "not computable (a consensus is missing)" : Number(score).toFixed(1); }

  function arithmetic(a) {
    var rows = Object.keys(a.criteria).map(function (cid) {
      var c = a.criteria[cid];
      if (!c.applicable) return h("tr", null, h("th", {scope: "row"}, cid), td("not relevant in this context"), td(""), td("0", "num"));
      return h("tr", null, h("th", {scope: "row"}, cid),
        td((c.consensus === null ? "no valid vote" : c.consensus_label) + (c.critical ? " (critical)" : "")),
        td(num(c.weight) + " " + TIMES + " " + num(c.severity) + " " + TIMES + " " + num(a.context_multiplier), "num"),
        td(num(c.contribution), "num"));
    });
    rows.push(h("tr", null, h("th", {scope: "row", colspan: 3}, "score, the sum, against max_score " + num(a.max_score)),
      td(num(a.score) + " / " + num(a.max_score), "num")));
    var vera = a.vera_score === null && a.min_vera_score === null ? null : h("p", {"class": "vera"},
      "VERA-MH score over the consensus levels: ", veraText(a.vera_score),
      a.min_vera_score === null ? "" : " (min_vera_score " + num(a.min_vera_score) + ")");
    return [table(["criterion", "consensus", "weight " + TIMES + " severity " + TIMES + " context", "= contribution"], rows), vera,
      h("p", null, "Outcome ", badge(a.outcome), a.provisional ? " (provisional " + upper(a.provisional) + ")" : "", ": ", a.reason)];
  }

  function judgesTable(a) {
    return table(["judge", "weight", "verdict", "cached", "attempts", "cost", "latency"], a.judges.map(function (j) {
      return h("tr", null, h("th", {scope: "row"}, j.judge), td(num(j.weight), "num"),
        td(j.valid ? "valid" : "missing: " + (j.error_kind || "error") + (j.error ? " " + DASH + " " + j.error : "") +
           (j.budget_exhausted ? " (budget exhausted)" : ""), j.valid ? null : "lv lv-missing"),
        td(j.cached ? "yes" : "no"), td(j.attempts, "num"), td(money(j.cost_usd), "num"), td(secs(j.latency_s), "num"));
    }), "Judges: cache, cost and latency");
  }

  function detail(record) {
    var a = record.assessment, quotes = quotesOf(a), context = Object.keys(a.context);
    var body = h("div", {"class": "body"});
    add(body, meta([
      ["test", h("code", null, record.nodeid)],
      ["location", record.file ? record.file + (record.line ? ":" + record.line : "") : null],
      ["case", record.case_id],
      ["rubric", a.rubric + " v" + a.rubric_version],
      ["enforced", record.enforced ? "yes (laj.check)" : "no (laj.assess records it)"],
      ["blocks the run", record.blocks ? "yes" : "no"],
      ["human decision", record.human ? record.human.reviewer + " on " + date(record.human.decided_at) + ": " +
        Object.keys(record.human.levels).map(function (k) { return k + "=" + record.human.levels[k]; }).join(", ") +
        (record.human.note ? " " + DASH + " " + record.human.note : "") : null]
    ]));
    add(body, h("p", null, badge(a.outcome), " ", a.reason));
    if (a.review_criteria.length) {
      add(body, h("div", {"class": "warnbox"}, "Needs a human: judges disagree on ",
        a.review_criteria.map(function (cid) { return cid + " (agreement " + pct(a.criteria[cid].agreement) + " < " + pct(a.min_agreement) + ")"; }).join(", ")));
    }
    if (a.suspected_injection.length) {
      add(body, h("div", {"class": "badbox suspected-injection"}, h("strong", null, "Suspected prompt injection"),
        " (text in the output that addresses the judges):", h("ul", {"class": "tight"}, a.suspected_injection.map(function (s) { return h("li", null, s); }))));
    }
    if (a.missing_judges.length) {
      add(body, h("div", {"class": "badbox missing-judges"}, h("strong", null, "Decided without " + plural(a.missing_judges.length, "judge")),
        " (quorum " + a.quorum + "):", h("ul", {"class": "tight"}, a.judges.filter(function (j) { return !j.valid; }).map(function (j) {
          return h("li", null, j.judge + ": " + (j.error_kind || "error") + (j.error ? " " + DASH + " " + j.error : ""));
        }))));
    }
    add(body, h("h3", null, "Input"), a.input === null ? h("p", {"class": "muted"}, "(none given)") : h("pre", {"class": "input"}, a.input));
    add(body, h("h3", null, "Context"), h("p", {"class": "context"},
      context.length ? context.map(function (k) { return k + "=" + a.context[k]; }).join(", ") : "none",
      " " + DASH + " severity " + TIMES + num(a.context_multiplier)));
    add(body, h("h3", null, "Output", h("span", {"class": "muted"}, " (judges' evidence highlighted)")), highlighted(a.output, quotes));
    var unfound = quotes.filter(function (q) { return q.start < 0; });
    if (unfound.length) {
      add(body, h("div", {"class": "warnbox unfound"}, "Evidence not found in the output:",
        h("ul", {"class": "tight"}, unfound.map(function (q) { return h("li", null, q.who + ": \u201c" + q.quote + "\u201d"); }))));
    }
    add(body, votesMatrix(a), h("h3", null, "Rationales"), rationales(a), h("h3", null, "Score arithmetic"), arithmetic(a), judgesTable(a));
    return body;
  }

  // -- the list, drawn a page at a time ------------------------------------------------------------------------

  function row(item) {
    var r = item.record, a = r.assessment;
    var details = h("details", {"data-nodeid": r.nodeid, "data-outcome": a.outcome},
      h("summary", null, badge(a.outcome), h("span", {"class": "node"}, r.nodeid),
        h("span", {"class": "muted"}, a.rubric), h("span", {"class": "mono"}, num(a.score) + "/" + num(a.max_score)),
        h("span", {"class": "why"}, a.reason)));
    details.addEventListener("toggle", function () {
      if (details.open && !item.body) { item.body = detail(r); details.appendChild(item.body); }
    });
    return h("li", {"class": "assessment"}, details);
  }

  var list = h("ol", {"class": "assessments", id: "assessments"});
  var more = h("li", {"class": "more"});
  var status = h("span", {id: "shown", "aria-live": "polite"});
  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    if (entries.some(function (e) { return e.isIntersecting; })) drawMore();
  }, {rootMargin: "600px"}) : null;

  function drawMore() {
    var end = Math.min(shown.length, drawn + PAGE), fragment = document.createDocumentFragment();
    for (; drawn < end; drawn++) fragment.appendChild(row(shown[drawn]));
    if (more.parentNode) list.removeChild(more);
    list.appendChild(fragment);
    if (drawn < shown.length) {
      more.textContent = "";
      add(more, h("button", {type: "button", "class": "linkish", onclick: drawMore}, "show " + Math.min(PAGE, shown.length - drawn) +
        " more (" + (shown.length - drawn) + " not drawn yet)"));
      list.appendChild(more);
    }
  }

  function refresh() {
    shown = records.filter(matches);
    drawn = 0;
    list.textContent = "";
    drawMore();
    status.textContent = "showing " + shown.length + " of " + plural(records.length, "assessment");
  }

  // -- the page ------------------------------------------------------------------------------------------------

  function countsSentence() {
    var total = run.records.length, parts = ORDER.filter(function (o) { return run.counts[o]; }).map(function (o) { return run.counts[o] + " " + o; });
    return plural(total, "assessment") + (parts.length ? ": " + parts.join(", ") : "");
  }

  function filters() {
    var buttons = ORDER.map(function (o) {
      var button = h("button", {type: "button", "class": "o-" + o, "aria-pressed": "true", "data-outcome": o},
        upper(o) + " " + (run.counts[o] || 0));
      button.addEventListener("click", function () {
        state.outcomes[o] = !state.outcomes[o];
        button.setAttribute("aria-pressed", String(state.outcomes[o]));
        refresh();
      });
      return button;
    });
    var rubrics = [], criteria = {};
    run.records.forEach(function (r) {
      var a = r.assessment;
      if (rubrics.indexOf(a.rubric) < 0) { rubrics.push(a.rubric); criteria[a.rubric] = []; }
      Object.keys(a.criteria).forEach(function (cid) { if (criteria[a.rubric].indexOf(cid) < 0) criteria[a.rubric].push(cid); });
    });
    var rubric = h("select", {id: "f-rubric"}, h("option", {value: ""}, "every rubric"),
      rubrics.map(function (id) { return h("option", {value: id}, id); }));
    var criterion = h("select", {id: "f-criterion", title: "assessments where this criterion is disputed or adds to the score"},
      h("option", {value: ""}, "any criterion"),
      rubrics.map(function (id) {
        return h("optgroup", {label: id}, criteria[id].map(function (cid) { return h("option", {value: id + "/" + cid}, cid); }));
      }));
    var search = h("input", {type: "search", id: "f-text", placeholder: "search node id, input, output, rationale" + ELLIPSIS, "aria-label": "search"});
    rubric.addEventListener("change", function () { state.rubric = rubric.value; refresh(); });
    criterion.addEventListener("change", function () { state.criterion = criterion.value; refresh(); });
    var timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { state.text = search.value.trim().toLowerCase(); refresh(); }, 120);
    });
    return h("div", {"class": "filters"}, h("span", {"class": "buttons"}, buttons),
      h("label", {"for": "f-rubric"}, "rubric"), rubric,
      h("label", {"for": "f-criterion"}, "criterion at issue"), criterion, search, status);
  }

  function showOnly(nodeid) {
    var search = document.getElementById("f-text");
    search.value = nodeid;
    state.text = nodeid.toLowerCase();
    refresh();
    list.scrollIntoView();
  }

  function changeList(changes, showScore) {
    return h("ul", {"class": "tight"}, changes.map(function (c) {
      return h("li", null, h("button", {type: "button", "class": "linkish", title: "show this assessment", onclick: function () { showOnly(c.nodeid); }}, c.nodeid),
        c.case_id ? " [" + c.case_id + "]" : "", ": ", c.before ? upper(c.before) : "new", " " + ARROW + " ", c.after ? upper(c.after) : "gone",
        showScore && c.score_before !== null && c.score_after !== null ? ", score " + num(c.score_before) + " " + ARROW + " " + num(c.score_after) : "",
        c.agreement_before !== null && c.agreement_after !== null && c.kind === "agreement" ? ", agreement " + pct(c.agreement_before) + " " + ARROW + " " + pct(c.agreement_after) : "",
        c.output_changed ? " (output changed)" : "");
    }));
  }

  function comparison(c) {
    var section = h("section", {id: "comparison"}, h("h2", null, "Against baseline " + c.baseline),
      h("p", {"class": "sentence"}, plural(c.regressions.length, "regression") + ", " + c.fixes.length + " fixed against baseline " + c.baseline +
        " (" + [shortSha(c.baseline_commit), date(c.baseline_started_at)].filter(Boolean).join(", ") + ")"));
    if (c.failed_rules.length) add(section, h("div", {"class": "badbox"}, "Fails the run: " + c.failed_rules.join("; ")));
    if (c.approximate.length) add(section, h("div", {"class": "warnbox"}, "The match is approximate: " + c.approximate.join("; ")));
    if (c.regressions.length) add(section, h("h3", null, "Regressions"), changeList(c.regressions, true));
    if (c.fixes.length) add(section, h("h3", null, "Fixes"), changeList(c.fixes, true));
    [[plural(c.score_changes.length, "score change"), c.score_changes, true],
     [plural(c.agreement_changes.length, "agreement change"), c.agreement_changes, false],
     [c.new.length + " new", c.new, false], [c.gone.length + " gone", c.gone, false]]
      .forEach(function (group) {
        if (group[1].length) add(section, h("details", null, h("summary", null, group[0]), changeList(group[1], group[2])));
      });
    return section;
  }

  function alphaText(fig) { return fig.value === null ? "undefined" : num(fig.value); }
  function alphaRows(map) {
    return Object.keys(map).map(function (key) {
      var fig = map[key];
      return h("tr", null, h("th", {scope: "row"}, key), td(alphaText(fig), "num"), td(fig.units, "num"), td(fig.why_undefined || ""));
    });
  }

  function suite() {
    var section = h("section", {id: "suite"}, h("h2", null, "Agreement between judges (Krippendorff's alpha, ordinal)"));
    add(section, h("p", null, "whole run: ", run.alpha ? (run.alpha.value === null ? "undefined (" + run.alpha.why_undefined + ")" :
      num(run.alpha.value) + " over " + run.alpha.units + " rated criteria") : "not computed"));
    add(section, table(["rubric", "alpha", "units", "why undefined"], alphaRows(run.alpha_by_rubric), "per rubric"));
    add(section, table(["rubric/criterion", "alpha", "units", "why undefined"], alphaRows(run.alpha_by_criterion), "per criterion"));
    var vera = Object.keys(run.vera_by_rubric || {});
    if (vera.length) {
      add(section, h("h2", null, "VERA-MH score, pooled over each rubric's assessments"), table(["rubric", "score", "assessments", "left out (no consensus)"],
        vera.map(function (key) {
          var fig = run.vera_by_rubric[key];
          return h("tr", null, h("th", {scope: "row"}, key), td(veraText(fig.value), "num"), td(fig.assessments, "num"), td(fig.left_out, "num"));
        }), "VERA-MH score per rubric"));
    }
    add(section, h("h2", null, "Judge health"), table(
      ["judge", "asked", "answered", "cached", "missing", "errors by kind", "calls", "retries", "latency p50", "latency p95", "cost"],
      run.judge_health.map(function (j) {
        var errors = Object.keys(j.errors_by_kind).map(function (k) { return k + ": " + j.errors_by_kind[k]; }).join(", ");
        return h("tr", null, h("th", {scope: "row"}, j.judge), td(j.asked, "num"), td(j.answered, "num"), td(j.cached, "num"),
          td(j.missing, "num"), td(errors || "none"), td(j.calls, "num"), td(j.retries, "num"), td(secs(j.latency_p50_s), "num"),
          td(secs(j.latency_p95_s), "num"), td(money(j.cost_usd), "num"));
      }), "judge health"));
    return section;
  }

  function calibration(cal) {
    // People against the panel: drawn only when `laj calibrate --html` embedded a calibration.
    function fig(f) { return f.value === null ? "undefined (" + f.why_undefined + ")" : num(f.value) + (f.ci ? " [" + num(f.ci.low) + ", " + num(f.ci.high) + "]" : ""); }
    function figures(list, first) {
      return list.map(function (x) {
        return h("tr", null, first(x).map(function (v, i) { return i ? td(v) : h("th", {scope: "row"}, v); }),
          td(x.nominal.n_items, "num"), td(fig(x.nominal)), td(fig(x.ordinal)));
      });
    }
    var section = h("section", {id: "calibration"}, h("h2", null, "Calibration against people"),
      h("p", null, plural(cal.items, "rated criterion").replace("criterions", "criteria") + " of " + plural(cal.outputs, "output") + ", from " + cal.source +
        ". Krippendorff's alpha: nominal over every level; ordinal over the level order, \u201cnot relevant\u201d missing; " +
        (cal.bootstrap ? "95% bootstrap intervals over " + cal.bootstrap + " resamples of the items." : "no intervals.")));
    if (cal.judges.length) add(section, table(["judge", "criterion", "n", "nominal", "ordinal"],
      figures(cal.judges, function (j) { return [j.judge, j.scope]; }), "each judge against the humans' consensus"));
    if (cal.panel.length) add(section, table(["criterion", "same level", "n", "nominal", "ordinal"],
      figures(cal.panel, function (p) { return [p.scope, p.exact === null ? DASH : pct(p.exact)]; }), "the panel's consensus against the humans' consensus"));
    if (cal.humans.length) add(section, table(["criterion", "raters", "n", "nominal", "ordinal"],
      figures(cal.humans, function (x) { return [x.scope, String(x.raters)]; }), "the humans among themselves"));
    cal.confusion.forEach(function (m) {
      add(section, table(["panel " + TIMES + " humans"].concat(m.levels), m.levels.map(function (lv, i) {
        return h("tr", null, h("th", {scope: "row"}, lv), m.counts[i].map(function (n) { return td(n, "num"); }));
      }), m.criterion + ", n=" + m.n_items));
    });
    cal.recommendations.forEach(function (r) {
      add(section, h("p", {"class": "sentence"}, "recommended min_agreement for " + r.rubric + " (target " + num(r.target) + ", delta " + num(r.delta) + "): " +
        (r.min_agreement === null ? "none; " + r.why : num(r.min_agreement) + " " + DASH + " the panel decides " + r.decided + " of " + r.n_items +
          " items alone with " + r.disagreements + " disagreement(s), disagreement rate at most " + num(r.upper_bound) + "; " + pct(r.to_review) + " still go to review")));
    });
    if (cal.advice.length) add(section, table(["judge", "alpha with the humans", "flagged", "suggested weight"], cal.advice.map(function (a) {
      return h("tr", {"class": a.flagged ? "flagged" : null}, h("th", {scope: "row"}, a.judge), td(num(a.alpha), "num"),
        td(a.flagged ? "below 0.67" : "no"), td(num(a.weight), "num"));
    }), cal.weights_rule));
    return section;
  }

  function runMeta() {
    var git = run.git, calls = run.calls;
    var section = h("section", {id: "run"}, h("h2", null, "Run"));
    add(section, meta([
      ["started", date(run.started_at)], ["finished", date(run.finished_at)],
      ["command", h("code", null, ["pytest"].concat(run.command).join(" "))],
      ["rootdir", run.rootdir],
      ["git", git ? shortSha(git.commit) + (git.branch ? " on " + git.branch : " (detached)") + (git.dirty ? ", with uncommitted changes" : "") : "not a git checkout"],
      ["versions", "pytest-laj " + run.pytest_laj_version + ", pytest " + run.pytest_version],
      ["modes", "cache " + run.cache_mode + ", review " + run.review_mode],
      ["judge calls", calls.calls + " made, " + calls.cache_hits + " from cache, " + money(calls.cost_usd) +
        (calls.prefetched ? ", " + calls.prefetched + " judged up front" : "") +
        (calls.prefetch_cancelled ? ", " + calls.prefetch_cancelled + " cancelled" : "") +
        (calls.uncollected.length ? ", " + calls.uncollected.length + " judged but not collected" : "")],
      ["stopped early", run.stopped_early ? "yes" : "no"], ["interrupted", run.interrupted ? "yes: the record is partial" : "no"]
    ]));
    if (run.panel.length) {
      add(section, table(["judge", "model", "weight", "temperature", "options"], run.panel.map(function (j) {
        return h("tr", null, h("th", {scope: "row"}, j.name), td(j.model), td(num(j.weight), "num"), td(num(j.temperature), "num"),
          td(Object.keys(j.options).map(function (k) { return k + "=" + JSON.stringify(j.options[k]); }).join(", ")));
      }), "panel"));
    }
    add(section, table(["rubric", "version", "content hash"], run.rubrics.map(function (r) {
      return h("tr", null, h("th", {scope: "row"}, r.id), td(r.version), td(h("code", {title: r.fingerprint}, r.fingerprint.slice(0, 12))));
    }), "rubrics"));
    return section;
  }

  var app = document.getElementById("app");
  app.textContent = "";
  add(app, h("h1", null, "pytest-laj run"), h("p", {"class": "sentence", id: "counts"}, countsSentence()));
  if (run.interrupted) add(app, h("div", {"class": "banner bad"}, "The run was interrupted: this record is partial."));
  else if (run.stopped_early) add(app, h("div", {"class": "banner warn"}, "The run stopped early (-x, --maxfail or a fatal error): some tests did not run."));
  if (run.git) add(app, h("p", {"class": "muted"}, "commit " + shortSha(run.git.commit) + (run.git.branch ? " on " + run.git.branch : "") + ", " + date(run.started_at)));
  if (run.comparison) add(app, comparison(run.comparison));
  add(app, h("h2", null, "Assessments, what needs a human first"), filters(), list, suite(), run.calibration ? calibration(run.calibration) : null, runMeta());
  document.title = "pytest-laj: " + countsSentence();
  refresh();
  if (observer) observer.observe(more);
  performance.mark("laj-ready");
})();
