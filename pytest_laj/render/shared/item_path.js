/* pytest-laj: a question-graph judge's path through one dimension, drawn the same way by the dashboard and the
 * review page (each passes its own element builder `h`). Every string is untrusted: it becomes text nodes only. */
"use strict";

function lajItemPath(h, v) {
  // A graph judge's walk through a dimension: each item and its answer, the one that set the level marked in words.
  if (!v.path || !v.path.length) return null;
  return h("ol", {"class": "item-path", "aria-label": v.judge + "'s questions and answers"}, v.path.map(function (step) {
    var driver = step.item === v.driver;
    return h("li", {"class": driver ? "driver" : null, "data-item": step.item},
      h("code", null, step.item), " = ", h("strong", null, step.answer),
      step.auto ? h("span", {"class": "muted"}, " (auto)") : null,
      driver ? h("span", {"class": "tag"}, " drove the level") : null,
      step.evidence ? [" ", h("span", {"class": "muted"}, "evidence:"), " \u201c", step.evidence, "\u201d"] : null);
  }));
}
