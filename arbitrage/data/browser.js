// The sample browser of report.html (arbitrage/outputs/browser.py writes its data).
// No network: samples/index.js and samples/cNNNNN.js are loaded as <script> tags,
// which browsers allow from file:// (fetch is refused there). Model text is only
// ever set as textContent, never parsed as HTML.
(function () {
  "use strict";
  var PAGE = 50;
  var idx = null;          // samples/index.js
  var chunks = {};         // chunk number -> rows
  var waiting = {};        // chunk number -> callbacks
  var shown = [];          // prompt numbers passing the filters
  var page = 0;
  var selected = -1;
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function load(src) {
    var s = document.createElement("script");
    s.src = src;
    s.onerror = function () {
      $("sb-count").textContent = "could not load " + src + " (is samples/ next to this page?)";
    };
    document.head.appendChild(s);
  }

  function options(select, label, values, extra) {
    select.textContent = "";
    select.appendChild(new Option(label + ": all", ""));
    (extra || []).forEach(function (o) { select.appendChild(new Option(o[1], o[0])); });
    values.forEach(function (v, i) { select.appendChild(new Option(v, String(i))); });
  }

  window.arbitrageIndex = function (data) {
    idx = data;
    options($("sb-language"), "language", idx.languages);
    options($("sb-task"), "task", idx.tasks);
    options($("sb-teacher"), "answered by", idx.teachers);
    options($("sb-winner"), "winner", idx.teachers, [["-1", "no winner"]]);
    options($("sb-reason"), "row", idx.reasons.map(function (r) { return "dropped: " + r; }),
      [["-1", "kept"], ["d", "dropped (any reason)"]]);
    ["sb-language", "sb-task", "sb-teacher", "sb-winner", "sb-reason"].forEach(function (id) {
      $(id).addEventListener("change", function () { page = 0; filter(); });
    });
    var timer = null;
    $("sb-search").addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { page = 0; filter(); }, 150);
    });
    $("sb-prev").addEventListener("click", function () { if (page > 0) { page--; list(); } });
    $("sb-next").addEventListener("click", function () {
      if ((page + 1) * PAGE < shown.length) { page++; list(); }
    });
    fromHash();
  };

  window.arbitrageChunk = function (n, rows) {
    chunks[n] = rows;
    (waiting[n] || []).forEach(function (f) { f(rows); });
    delete waiting[n];
  };

  function withChunk(n, f) {
    if (chunks[n]) return f(chunks[n]);
    if (!waiting[n]) {
      waiting[n] = [];
      load("samples/c" + ("0000" + n).slice(-5) + ".js");
    }
    waiting[n].push(f);
  }

  // #samples?language=fr&teacher=gemma3 (names, not numbers: the heatmap tables link here)
  function fromHash() {
    var h = location.hash, q = h.indexOf("?");
    var params = new URLSearchParams(q >= 0 ? h.slice(q + 1) : "");
    var set = function (id, list, key) {
      var v = params.get(key), i = v === null ? -1 : list.indexOf(v);
      $(id).value = v === null ? "" : (i >= 0 ? String(i) : v);
    };
    if (params.has("language") || params.has("task") || params.has("teacher") ||
        params.has("winner") || params.has("q")) {
      set("sb-language", idx.languages, "language");
      set("sb-task", idx.tasks, "task");
      set("sb-teacher", idx.teachers, "teacher");
      set("sb-winner", idx.teachers, "winner");
      $("sb-search").value = params.get("q") || "";
    }
    page = 0;
    filter();
  }
  window.addEventListener("hashchange", function () { if (idx) fromHash(); });

  function num(id) { var v = $(id).value; return v === "" ? null : Number(v); }

  function filter() {
    var lang = num("sb-language"), task = num("sb-task"), teacher = num("sb-teacher");
    var winner = num("sb-winner"), reasonV = $("sb-reason").value;
    var reason = reasonV === "" || reasonV === "d" ? null : Number(reasonV);
    var q = $("sb-search").value.trim().toLowerCase();
    shown = [];
    var p = idx.prompts;
    for (var i = 0; i < p.length; i++) {
      var r = p[i];
      if (lang !== null && r[0] !== lang) continue;
      if (task !== null && r[1] !== task) continue;
      if (winner !== null && r[2] !== winner) continue;
      if (reasonV === "d" && r[3] < 0) continue;
      if (reason !== null && r[3] !== reason) continue;
      if (teacher !== null && !(r[4] & (1 << teacher))) continue;
      if (q && r[5].toLowerCase().indexOf(q) < 0) continue;
      shown.push(i);
    }
    list();
  }

  function rowLabel(r) { return r < 0 ? "kept" : "dropped: " + idx.reasons[r]; }

  function list() {
    var body = $("sb-list").tBodies[0];
    body.textContent = "";
    $("sb-count").textContent = shown.length + " of " + idx.prompts.length + " prompts";
    var pages = Math.max(1, Math.ceil(shown.length / PAGE));
    $("sb-page").textContent = "page " + (page + 1) + " of " + pages;
    var slice = shown.slice(page * PAGE, (page + 1) * PAGE);
    slice.forEach(function (i) {
      var r = idx.prompts[i], tr = document.createElement("tr");
      tr.dataset.prompt = String(i);
      tr.appendChild(el("td", i + 1));
      tr.appendChild(el("td", idx.languages[r[0]]));
      tr.appendChild(el("td", idx.tasks[r[1]]));
      tr.appendChild(el("td", r[2] < 0 ? "none" : idx.teachers[r[2]]));
      tr.appendChild(el("td", rowLabel(r[3]), r[3] < 0 ? "kept" : "dropped"));
      tr.appendChild(el("td", r[5], "text"));
      tr.addEventListener("click", function () { show(i); });
      if (i === selected) tr.className = "sel";
      body.appendChild(tr);
    });
    if (slice.length && slice.indexOf(selected) < 0) show(slice[0]);
    if (!slice.length) { selected = -1; $("sb-detail").textContent = "no prompt matches"; }
  }

  function fmt(v) { return typeof v === "number" ? (Math.round(v * 1000) / 1000) : String(v); }

  function show(i) {
    selected = i;
    var rows = $("sb-list").tBodies[0].rows;
    for (var k = 0; k < rows.length; k++) {
      rows[k].className = rows[k].dataset.prompt === String(i) ? "sel" : "";
    }
    withChunk(Math.floor(i / idx.chunk), function (data) {
      if (selected !== i) return;
      var o = data[i % idx.chunk], d = $("sb-detail");
      d.textContent = "";
      var head = el("div", null, "sb-prompt");
      head.appendChild(el("div", "prompt " + (i + 1) + " · " + o.language + " · " + o.task +
        " · routed by " + (o.routed_by || "?") + " · id " + o.id, "meta"));
      head.appendChild(el("div", o.text, "text"));
      head.appendChild(el("div", o.reason ? "row dropped: " + o.reason :
        (o.winner ? "row kept (winner: " + o.winner + ")" : "no winner"),
        o.reason ? "dropped" : "kept"));
      d.appendChild(head);
      var grid = el("div", null, "sb-cands");
      grid.style.gridTemplateColumns = "repeat(" + Math.max(1, o.candidates.length) + ", 1fr)";
      o.candidates.forEach(function (c) {
        var card = el("div", null, "sb-cand" + (c.teacher === o.winner ? " win" : ""));
        card.dataset.teacher = c.teacher;
        card.appendChild(el("div", (c.teacher === o.winner ? "★ " : "") + c.teacher, "name"));
        card.appendChild(el("div", c.model + " · " + c.status +
          (c.finish_reason ? " (" + c.finish_reason + ")" : "") + " · " + c.tokens[1] +
          " tokens", "meta"));
        var t = el("table", null, "sb-parts");
        var add = function (k, v) {
          var tr = document.createElement("tr");
          tr.appendChild(el("td", k));
          tr.appendChild(el("td", v));
          t.appendChild(tr);
        };
        add("reward", c.reward === null ? "none" : fmt(c.reward));
        Object.keys(c.parts || {}).sort().forEach(function (k) { add(k, fmt(c.parts[k])); });
        card.appendChild(t);
        if (c.error) card.appendChild(el("div", "error: " + c.error, "dropped"));
        card.appendChild(el("div", c.text, "text answer"));
        grid.appendChild(card);
      });
      d.appendChild(grid);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { load("samples/index.js"); });
})();
