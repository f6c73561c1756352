"""A ranking explorer for the rendered book: pick a query, compare the systems' rankings.

:func:`ranking_explorer` turns the runs of a chapter into one self-contained block of
HTML, CSS and JavaScript (no kernel, no network, no external script): a list of the TREC
DL queries of both years and, for the query picked, one column per system (BM25, the
teacher, a student, ...) with

* the system's top ``top`` passages of the shared candidates, each with its qrels grade
  (0-3, or "-" when unjudged), a short text, and where the first system (BM25) put it;
* a strip of the whole ranking, one cell per rank coloured by grade, and the ranks of the
  relevant passages (grade >= ``relevant_grade``; 2 is TREC DL's threshold for passages);
* the query's nDCG@10 for that system (``ir_measures``, through :func:`.evaluation.per_query`).

Every system's ranking is cut to the same candidates (the first stage's top-k), so the
columns order the same passages. The data travel as JSON inside the HTML; the script
builds the columns when a query is picked. The block shows the same in Jupyter, Colab
and the static book, and :attr:`RankingExplorer.size` keeps it small (the chapter
checks it is under 2 MB for both years).
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .data import Candidates, Run, load_qrels
from .evaluation import per_query

YEAR_LABELS = {"dl19": "TREC DL 2019", "dl20": "TREC DL 2020"}


def short_text(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with an ellipsis when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut + "\u2026"


def _grade_string(ranking: Sequence[str], qrels: Mapping[str, int]) -> str:
    """One character per rank: the qrels grade (0-9), or '.' for an unjudged passage."""
    return "".join(str(min(max(qrels[d], 0), 9)) if d in qrels else "." for d in ranking)


def _query_entry(candidates: Candidates, rankings: Mapping[str, list[str]], ndcg: Mapping[str, float | None],
                 qrels: Mapping[str, int], top: int, text_chars: int, relevant_grade: int) -> dict:
    """The JSON of one query: its shown passages once each, then each system's top list and strip."""
    text_of = dict(zip(candidates.docids, candidates.texts))
    reference = {d: r for r, d in enumerate(next(iter(rankings.values())), start=1)}
    shown = list(dict.fromkeys(d for ranking in rankings.values() for d in ranking[:top]))
    index = {d: i for i, d in enumerate(shown)}
    return {
        "qid": candidates.qid,
        "text": candidates.query,
        "relevant": sum(1 for d in candidates.docids if qrels.get(d, 0) >= relevant_grade),
        "docs": [[d, qrels.get(d, -1), short_text(text_of[d], text_chars), reference.get(d)] for d in shown],
        "systems": [
            {"top": [index[d] for d in ranking[:top]], "grades": _grade_string(ranking, qrels), "ndcg": ndcg[name]}
            for name, ranking in rankings.items()
        ],
    }


def ranking_explorer(
    systems: Mapping[str, Mapping[str, Run]],
    candidates: Mapping[str, Sequence[Candidates]],
    datasets: Mapping[str, str],
    top: int = 20,
    text_chars: int = 160,
    relevant_grade: int = 2,
) -> RankingExplorer:
    """The explorer of ``systems[year] = {name: run}``; its ``data`` are
    ``{years: [{key, label, systems, queries: [...]}], top, relevant_grade}``.

    ``systems[year]`` maps a system's name to its run, in column order (the first is the
    reference whose ranks the other columns quote, e.g. BM25); ``candidates[year]`` are the
    shared candidate lists (their order is the query order); ``datasets[year]`` the
    ``ir_datasets`` id holding the qrels. Queries without judgements are left out.
    """
    years = []
    for year, runs in systems.items():
        if year not in candidates or year not in datasets:
            raise ValueError(f"explorer: year {year!r} has runs but no candidates or dataset "
                             f"(candidates: {sorted(candidates)}, datasets: {sorted(datasets)})")
        if not runs:
            raise ValueError(f"explorer: no systems for {year!r}")
        qrels = load_qrels(datasets[year])
        lists = [c for c in candidates[year] if c.qid in qrels]
        rankings = {name: {c.qid: [d for d in run.get(c.qid, {}) if d in set(c.docids)] for c in lists}
                    for name, run in runs.items()}
        ndcg = {}
        for name, ranked in rankings.items():
            run = Run({qid: {d: float(len(docs) - i) for i, d in enumerate(docs)} for qid, docs in ranked.items()
                       if docs})
            table = per_query(run, datasets[year], ["nDCG@10"]) if run else None
            ndcg[name] = {} if table is None else {q: round(float(v), 4) for q, v in zip(table["qid"], table["value"])}
        queries = [
            _query_entry(c, {name: rankings[name][c.qid] for name in runs}, {name: ndcg[name].get(c.qid) for name in runs},
                         qrels[c.qid], top, text_chars, relevant_grade)
            for c in lists
        ]
        years.append({"key": year, "label": YEAR_LABELS.get(year, year), "systems": list(runs), "queries": queries})
    return RankingExplorer({"years": years, "top": top, "relevant_grade": relevant_grade})


# Characters that could end or change the <script> element that holds the data, or end a
# JavaScript string in old engines: written as JSON escapes, which JSON.parse reads back as they were.
_SCRIPT_SAFE = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def embedded_json(data) -> str:
    """``data`` as JSON text that is safe inside ``<script type="application/json">``.

    ``<``, ``>``, ``&``, U+2028 and U+2029 are written as ``\\u003c``-style escapes (valid
    JSON, which ``JSON.parse`` turns back into the same characters), so no passage, query
    or id (``</script>``, ``<!--``, ...) can end the element or change how it is parsed.
    """
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).translate(_SCRIPT_SAFE)


@dataclass
class RankingExplorer:
    """The explorer as HTML; displays itself in a notebook (``_repr_html_``) and can be glued."""

    data: dict

    @property
    def element_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.data, sort_keys=True).encode()).hexdigest()
        return f"rdx-{digest[:10]}"

    @property
    def html(self) -> str:
        payload = embedded_json(self.data)
        count = sum(len(y["queries"]) for y in self.data["years"])
        return (
            f'<div class="rdx" id="{self.element_id}">'
            f"<style>{_CSS}</style>"
            '<div class="rdx-bar"><label>Query <select aria-label="query"></select></label>'
            '<button type="button" data-step="-1" aria-label="previous query">&#9664;</button>'
            '<button type="button" data-step="1" aria-label="next query">&#9654;</button>'
            f'<span class="rdx-count">{count} queries</span></div>'
            '<div class="rdx-query"></div><div class="rdx-scroll"><div class="rdx-cols"></div></div>'
            f'<div class="rdx-legend">{_legend(self.data["relevant_grade"])}</div>'
            f'<script type="application/json" class="rdx-data">{payload}</script>'
            f"<script>{_JS}</script></div>"
        )

    @property
    def size(self) -> int:
        """Bytes of the HTML (UTF-8)."""
        return len(self.html.encode("utf-8"))

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        queries = sum(len(y["queries"]) for y in self.data["years"])
        return f"RankingExplorer({queries} queries, {self.size / 1e6:.2f} MB of HTML)"


def _legend(relevant_grade: int) -> str:
    names = {3: "perfectly relevant", 2: "highly relevant", 1: "related", 0: "irrelevant"}
    items = "".join(f'<span class="rdx-g rdx-g{g}">{g}</span> {names[g]} ' for g in (3, 2, 1, 0))
    return (f"qrels grade: {items}<span class=\"rdx-g rdx-gu\">-</span> unjudged. "
            f"Relevant: grade {html.escape(str(relevant_grade))} or more. The strip shows every rank, "
            "best on the left; hover a passage to find it in the other columns.")


_CSS = """
.rdx{font-family:system-ui,sans-serif;font-size:13px;color:#1d1d1d;background:#fff;border:1px solid #ddd;
 border-radius:6px;padding:8px;margin:8px 0}
.rdx select{max-width:70%;font-size:13px;padding:2px}
.rdx button{margin-left:4px;font-size:12px;padding:1px 6px;cursor:pointer}
.rdx-bar{display:flex;align-items:center;gap:4px;flex-wrap:wrap}
.rdx-count{color:#666;margin-left:8px}
.rdx-query{margin:6px 0;font-size:14px}
.rdx-scroll{overflow-x:auto}
.rdx-cols{display:grid;gap:8px}
.rdx-col{min-width:14em;border-top:3px solid #5a9;padding-top:4px}
.rdx-head{font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.rdx-head span{display:block;font-weight:400;color:#555}
.rdx-strip{display:flex;height:12px;margin:4px 0 2px 0;border:1px solid #ccc}
.rdx-strip i{flex:1;min-width:1px}
.rdx-rel{color:#444;font-size:12px;margin-bottom:4px;min-height:2.4em}
.rdx-list{list-style:none;margin:0;padding:0}
.rdx-list li{display:flex;gap:6px;padding:2px 0;border-bottom:1px solid #eee;line-height:1.3}
.rdx-list li.rdx-hl{background:#fff3b0}
.rdx-rank{color:#888;min-width:1.6em;text-align:right}
.rdx-text{flex:1;display:-webkit-box;-webkit-line-clamp:2;-webkit-box-orient:vertical;overflow:hidden}
.rdx-from{color:#777;font-size:11px;white-space:nowrap}
.rdx-g{display:inline-block;min-width:1.3em;text-align:center;border-radius:3px;font-weight:600;height:1.3em}
.rdx-g3,.rdx-strip i.rdx-g3{background:#1a7f37;color:#fff}
.rdx-g2,.rdx-strip i.rdx-g2{background:#6cc644;color:#111}
.rdx-g1,.rdx-strip i.rdx-g1{background:#f2cc60;color:#111}
.rdx-g0,.rdx-strip i.rdx-g0{background:#e6e6e6;color:#555}
.rdx-gu,.rdx-strip i.rdx-gu{background:#fff;color:#999;outline:1px dashed #ccc}
.rdx-legend{color:#555;font-size:12px;margin-top:6px}
"""

_JS = r"""
(function () {
  var script = document.currentScript;
  var root = script ? script.parentNode : null;
  if (!root || root.getAttribute("data-ready")) { return; }
  root.setAttribute("data-ready", "1");
  var data = JSON.parse(root.querySelector("script.rdx-data").textContent);
  var select = root.querySelector("select");
  var cols = root.querySelector(".rdx-cols");
  var heading = root.querySelector(".rdx-query");
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }
  function gradeClass(g) { return g < 0 ? "rdx-g rdx-gu" : "rdx-g rdx-g" + Math.min(g, 3); }
  data.years.forEach(function (year, y) {
    var group = el("optgroup");
    group.label = year.label;
    year.queries.forEach(function (q, i) {
      var option = el("option", null, q.qid + ": " + q.text);
      option.value = y + ":" + i;
      group.appendChild(option);
    });
    select.appendChild(group);
  });
  function highlight(doc, on) {
    root.querySelectorAll("li[data-doc]").forEach(function (li) {  // compared, never put in a selector
      if (li.getAttribute("data-doc") === doc) { li.classList.toggle("rdx-hl", on); }
    });
  }
  function describe(relevant, depth) {
    if (depth === 0) { return "no ranking for this query"; }
    if (relevant.length === 0) { return "no relevant passage in its " + depth; }
    if (relevant.length <= 8) { return "relevant at rank " + relevant.join(", ") + " (of " + depth + ")"; }
    var top10 = relevant.filter(function (r) { return r <= 10; }).length;
    var top20 = relevant.filter(function (r) { return r <= 20; }).length;
    return relevant.length + " relevant: " + top10 + " in the top 10, " + top20 + " in the top 20, the last at rank " +
      relevant[relevant.length - 1] + " (of " + depth + ")";
  }
  function show(value) {
    var parts = value.split(":");
    var year = data.years[+parts[0]];
    var q = year.queries[+parts[1]];
    heading.textContent = "";
    heading.appendChild(el("b", null, q.qid + " \u00b7 " + q.text));
    heading.appendChild(el("span", null, " \u00b7 " + year.label + " \u00b7 " + q.relevant +
      " relevant passages among the candidates"));
    cols.textContent = "";
    cols.style.gridTemplateColumns = "repeat(" + year.systems.length + ", minmax(14em, 1fr))";
    year.systems.forEach(function (name, s) {
      var system = q.systems[s];
      var col = el("div", "rdx-col");
      var head = el("div", "rdx-head", name);
      head.title = name;
      head.appendChild(el("span", null, system.ndcg === null ? "(not judged)" : "nDCG@10 " + system.ndcg.toFixed(3)));
      col.appendChild(head);
      var strip = el("div", "rdx-strip");
      var relevant = [];
      for (var r = 0; r < system.grades.length; r++) {
        var ch = system.grades.charAt(r);
        var g = ch === "." ? -1 : +ch;
        var cell = el("i", gradeClass(g));
        cell.title = "rank " + (r + 1) + ": " + (g < 0 ? "unjudged" : "grade " + g);
        strip.appendChild(cell);
        if (g >= data.relevant_grade) { relevant.push(r + 1); }
      }
      col.appendChild(strip);
      col.appendChild(el("div", "rdx-rel", describe(relevant, system.grades.length)));
      var list = el("ol", "rdx-list");
      system.top.forEach(function (d, r) {
        var doc = q.docs[d];
        var li = el("li");
        li.setAttribute("data-doc", doc[0]);
        li.title = "passage " + doc[0];
        li.appendChild(el("span", "rdx-rank", String(r + 1)));
        li.appendChild(el("span", gradeClass(doc[1]), doc[1] < 0 ? "-" : String(doc[1])));
        var text = li.appendChild(el("span", "rdx-text"));
        if (s > 0 && doc[3]) { text.appendChild(el("span", "rdx-from", year.systems[0] + " #" + doc[3] + " \u00b7 ")); }
        text.appendChild(document.createTextNode(doc[2]));
        text.title = doc[2];
        li.addEventListener("mouseenter", function () { highlight(doc[0], true); });
        li.addEventListener("mouseleave", function () { highlight(doc[0], false); });
        list.appendChild(li);
      });
      col.appendChild(list);
      cols.appendChild(col);
    });
  }
  select.addEventListener("change", function () { show(select.value); });
  root.querySelectorAll("button[data-step]").forEach(function (button) {
    button.addEventListener("click", function () {
      var n = select.options.length;
      select.selectedIndex = (select.selectedIndex + (+button.getAttribute("data-step")) + n) % n;
      show(select.value);
    });
  });
  if (select.options.length) { show(select.value); }
})();
"""
