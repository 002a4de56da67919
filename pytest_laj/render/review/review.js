/* pytest-laj review page: draws the queue embedded as JSON in #laj-review and saves a reviewer's decisions to the
 * server that served it. Every string from the run is untrusted (outputs are what is being tested): it reaches
 * the page only as text nodes or a title attribute; never innerHTML, never a URL built from data.
 * Keys: j/k or Down/Up next/previous item, h/l or Left/Right previous/next criterion, 1-9 a level for the
 * focused criterion (0 clears it), n the note, Enter or s saves (Ctrl+Enter from the note). */
"use strict";
(function () {
  var data = JSON.parse(document.getElementById("laj-review").textContent);
  var app = document.getElementById("app");
  var state = {at: 0, drafts: data.items.map(function (item) { return draft(item); }), status: "", error: false};

  function h(tag, props) {
    var el = document.createElement(tag);
    Object.keys(props || {}).forEach(function (key) {
      var value = props[key];
      if (value === undefined || value === null || value === false) return;
      if (key === "class") el.className = value;
      else if (key.indexOf("on") === 0) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, String(value));
    });
    for (var i = 2; i < arguments.length; i++) add(el, arguments[i]);
    return el;
  }
  function add(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) child.forEach(function (c) { add(el, c); });
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
  function pct(x) { return Math.round(x * 100) + "%"; }
  function day(iso) { return String(iso || "").slice(0, 10); }
  function levelsText(levels) {
    return Object.keys(levels).sort().map(function (c) { return c + " = " + levels[c]; }).join(", ");
  }

  function draft(item) {
    // What the reviewer has chosen on this item and not saved yet; starts from their saved decision, if any.
    var mine = item.mine, first = item.criteria.filter(function (c) { return c.at_issue; })[0] ||
      item.criteria.filter(function (c) { return c.applicable; })[0];
    return {levels: mine ? Object.assign({}, mine.levels) : {}, note: mine ? mine.note : "", focus: first ? first.id : null};
  }
  function decidable(item) { return item.criteria.filter(function (c) { return c.applicable; }); }
  function done(item) { return !!item.mine; }

  // -- the output with each judge's quoted evidence marked -----------------------------------------------------

  function highlighted(text, item) {
    var spans = [];
    item.criteria.forEach(function (c) {
      c.votes.forEach(function (v) {
        var quote = (v.evidence || "").trim(), at = quote ? text.indexOf(quote) : -1;
        while (at >= 0) {
          spans.push({start: at, end: at + quote.length, who: v.judge + " on " + c.id});
          at = text.indexOf(quote, at + quote.length);
        }
      });
    });
    var cuts = [0, text.length];
    spans.forEach(function (s) { cuts.push(s.start, s.end); });
    cuts = cuts.filter(function (c, i, all) { return all.indexOf(c) === i; }).sort(function (x, y) { return x - y; });
    var pre = h("pre", {"class": "output", id: "output"});
    for (var i = 0; i + 1 < cuts.length; i++) {
      var from = cuts[i], to = cuts[i + 1];
      var who = spans.filter(function (s) { return s.start <= from && s.end >= to; }).map(function (s) { return s.who; });
      add(pre, who.length ? h("mark", {title: "quoted by " + who.join("; ")}, text.slice(from, to)) : text.slice(from, to));
    }
    return pre;
  }

  // -- the queue and one item ----------------------------------------------------------------------------------

  function queueList() {
    return h("ol", {"class": "queue", id: "queue"}, data.items.map(function (item, index) {
      var label = done(item) ? "decided" : item.stale.length ? "to do, stale label" : "to do";
      return h("li", {"class": (index === state.at ? "current " : "") + (done(item) ? "done" : "todo"),
        "data-index": index, "aria-current": index === state.at ? "true" : null, onclick: function () { go(index); }},
        h("span", {"class": "badge o-" + item.outcome}, item.outcome.toUpperCase()), " ",
        h("span", {"class": "node"}, item.nodeid), h("span", {"class": "state"}, label));
    }));
  }

  function staleBox(item) {
    if (!item.stale.length) return null;
    return h("div", {"class": "stale", id: "stale"}, item.stale.map(function (s) {
      var who = s.reviewer === data.reviewer ? "You" : s.reviewer;
      return h("p", null, who + " decided " + levelsText(s.levels) + " on " + day(s.decided_at) +
        " for the previous output: ", h("q", null, s.excerpt), s.note ? " (note: " + s.note + ")" : null);
    }));
  }

  function decisionsBox(item) {
    var lines = [];
    if (item.mine) lines.push(h("p", {id: "mine"}, "You decided " + levelsText(item.mine.levels) + " on " +
      day(item.mine.decided_at) + (item.mine.note ? " (note: " + item.mine.note + ")" : "") +
      ". Rerun the suite to apply it."));
    item.others.forEach(function (d) {
      lines.push(h("p", null, d.reviewer + " decided " + levelsText(d.levels) + " on " + day(d.decided_at) +
        (d.note ? " (note: " + d.note + ")" : "")));
    });
    return lines.length ? h("div", {"class": "decided"}, lines) : null;
  }

  function itemPath(v) { return lajItemPath(h, v); }

  function criterionBox(item, c) {
    var d = state.drafts[state.at], chosen = d.levels[c.id], focused = d.focus === c.id;
    var head = h("h3", null, c.id, c.at_issue ? h("span", {"class": "tag"}, c.disputed ? "disputed" : "at issue") : null,
      h("span", {"class": "muted"}, " \u2014 " + c.question));
    if (!c.applicable) return h("div", {"class": "criterion na", "data-cid": c.id}, head, h("p", {"class": "muted"}, "not relevant in this context"));
    var panel = c.human ? "people: " + c.consensus + " (" + c.human + ")" :
      c.consensus === null ? "panel: no valid vote" : "panel: " + c.consensus + ", agreement " + pct(c.agreement);
    var votes = h("ul", {"class": "votes"}, c.votes.map(function (v) {
      return h("li", null, h("strong", null, v.judge), " ", h("span", {"class": v.critical ? "lv crit" : "lv"}, v.level), ": ",
        v.rationale || h("span", {"class": "muted"}, "(no rationale)"),
        v.evidence ? [" ", h("span", {"class": "muted"}, "evidence:"), " \u201c", v.evidence, "\u201d"] : null,
        itemPath(v));
    }));
    var buttons = h("div", {"class": "levels", role: "group", "aria-label": "level for " + c.id}, c.levels.map(function (lv, i) {
      return h("button", {type: "button", "class": "level" + (lv.critical ? " crit" : ""), "data-level": lv.id,
        "aria-pressed": chosen === lv.id ? "true" : "false", title: (c.guidance[lv.id] || lv.description || ""),
        onclick: function () { choose(c.id, lv.id); }}, h("kbd", null, String(i + 1)), " " + lv.label);
    }));
    return h("div", {"class": "criterion" + (focused ? " focused" : "") + (chosen ? " chosen" : ""), "data-cid": c.id,
      onclick: function () { if (d.focus !== c.id) { d.focus = c.id; draw(); } }},
      head, h("p", {"class": "panel"}, panel), votes, buttons);
  }

  function itemView(item) {
    var d = state.drafts[state.at];
    var context = Object.keys(item.context).map(function (k) { return k + "=" + item.context[k]; }).join(", ") || "none";
    return h("section", {"class": "item", id: "item", "data-key": item.key},
      h("h2", null, h("span", {"class": "badge o-" + item.outcome}, item.outcome.toUpperCase()), " ", item.nodeid),
      h("p", {"class": "muted"}, "rubric " + item.rubric + " v" + item.rubric_version + " \u00b7 context " + context +
        (item.case_id ? " \u00b7 case " + item.case_id : "") +
        (item.provisional ? " \u00b7 the panel alone would " + item.provisional.toUpperCase() : "")),
      h("div", {"class": "why", id: "why"}, h("strong", null, "Why it is here: "), item.why),
      staleBox(item), decisionsBox(item),
      item.input !== null ? [h("h3", null, "Input"), h("pre", {id: "input"}, item.input)] : null,
      h("h3", null, "Output"), highlighted(item.output, item),
      item.missing.length ? h("p", {"class": "muted"}, "missing judges: " + item.missing.join("; ")) : null,
      h("div", {"class": "criteria"}, item.criteria.map(function (c) { return criterionBox(item, c); })),
      h("label", {"for": "note"}, "Note"),
      h("textarea", {id: "note", rows: 3, maxlength: 4000, oninput: function (e) { d.note = e.target.value; }}),
      h("div", {"class": "actions"},
        h("button", {type: "button", id: "save", onclick: save}, "Save (Enter)"),
        h("span", {id: "status", role: state.error ? "alert" : "status", "class": state.error ? "error" : ""}, state.status)));
  }

  function draw() {
    var item = data.items[state.at];
    var decided = data.items.filter(done).length;
    app.textContent = "";
    add(app, [
      h("header", null, h("h1", null, "pytest-laj review"),
        h("p", {id: "summary"}, data.items.length + " to review, " + decided + " decided \u00b7 reviewer " + data.reviewer +
          " \u00b7 labels file " + data.labels)),
      h("div", {"class": "layout"}, queueList(), item ? itemView(item) : h("p", null, "Nothing to review.")),
      h("footer", {"class": "muted"}, "j/k or \u2193/\u2191 next/previous item \u00b7 h/l or \u2190/\u2192 criterion \u00b7 " +
        "1\u20139 choose a level (0 clears) \u00b7 n note \u00b7 Enter or s save")]);
    var note = document.getElementById("note");
    if (note) note.value = state.drafts[state.at].note;
  }

  // -- actions ---------------------------------------------------------------------------------------------

  function go(index) {
    if (index < 0 || index >= data.items.length) return;
    state.at = index; state.status = ""; state.error = false;
    draw();
    window.scrollTo(0, 0);
  }

  function moveFocus(step) {
    var item = data.items[state.at], d = state.drafts[state.at], ids = decidable(item).map(function (c) { return c.id; });
    if (!ids.length) return;
    var at = ids.indexOf(d.focus);
    d.focus = ids[Math.max(0, Math.min(ids.length - 1, at + step))];
    draw();
  }

  function choose(cid, level) {
    var item = data.items[state.at], d = state.drafts[state.at];
    if (level === null) delete d.levels[cid]; else d.levels[cid] = level;
    d.focus = cid;
    if (level !== null) {  // on to the next criterion still to decide
      var next = item.criteria.filter(function (c) { return c.at_issue && !d.levels[c.id]; })[0];
      if (next) d.focus = next.id;
    }
    draw();
  }

  function chooseByNumber(n) {
    var item = data.items[state.at], d = state.drafts[state.at];
    var c = item && item.criteria.filter(function (x) { return x.id === d.focus; })[0];
    if (!c || !c.applicable) return;
    if (n === 0) choose(c.id, null);
    else if (n <= c.levels.length) choose(c.id, c.levels[n - 1].id);
  }

  function report(text, error) { state.status = text; state.error = error; draw(); }

  function save() {
    var index = state.at, item = data.items[index], d = state.drafts[index];
    if (!item) return;
    if (!Object.keys(d.levels).length) { report("Choose a level for at least one criterion first.", true); return; }
    var open = item.criteria.filter(function (c) { return c.at_issue && !d.levels[c.id]; }).map(function (c) { return c.id; });
    report("Saving\u2026", false);
    fetch("/api/decide", {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: {"Content-Type": "application/json", "X-Laj-Token": data.token},
      body: JSON.stringify({index: index, key: item.key, levels: d.levels, note: d.note})
    }).then(function (response) {
      return response.json().then(function (body) { return {ok: response.ok, body: body}; });
    }).then(function (answer) {
      if (!answer.ok) { report("Not saved: " + (answer.body.error || "refused"), true); return; }
      data.items[index] = answer.body.item;
      state.drafts[index] = draft(answer.body.item);
      var next = data.items.map(function (x, i) { return i; }).filter(function (i) { return i > index && !done(data.items[i]); })
        .concat(data.items.map(function (x, i) { return i; }).filter(function (i) { return i < index && !done(data.items[i]); }))[0];
      var saved = "Saved " + levelsText(answer.body.item.mine.levels) + (open.length ? "; still open: " + open.join(", ") : "") + ".";
      if (next === undefined) { report(saved + " Every item is decided: rerun the suite to apply the labels.", false); return; }
      state.at = next; report(saved + " Next item.", false);
    }).catch(function (err) { report("Not saved: " + err, true); });
  }

  document.addEventListener("keydown", function (e) {
    var target = e.target, tag = target && target.tagName;
    if (tag === "TEXTAREA" || tag === "INPUT") {
      if (e.key === "Escape") target.blur();
      else if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); save(); }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Enter" && tag === "BUTTON") return;  // the button's own click
    var handled = true;
    if (e.key === "j" || e.key === "ArrowDown") go(state.at + 1);
    else if (e.key === "k" || e.key === "ArrowUp") go(state.at - 1);
    else if (e.key === "h" || e.key === "ArrowLeft") moveFocus(-1);
    else if (e.key === "l" || e.key === "ArrowRight") moveFocus(1);
    else if (/^[0-9]$/.test(e.key)) chooseByNumber(Number(e.key));
    else if (e.key === "Enter" || e.key === "s") save();
    else if (e.key === "n") { var note = document.getElementById("note"); if (note) note.focus(); }
    else handled = false;
    if (handled) e.preventDefault();
  });

  draw();
})();
