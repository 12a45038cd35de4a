// tracekit ui: the trace viewer. Plain JavaScript, no build step, no network beyond
// this page's own JSON API. Everything that comes from a trace goes into the page
// as text (text nodes, textContent), never as markup.
(function () {
  "use strict";

  var dataNode = document.getElementById("tracekit-data");
  var EMBEDDED = dataNode ? JSON.parse(dataNode.textContent) : null;
  var app = document.getElementById("app");
  var notice = document.getElementById("notice");
  var PAGE = 50;

  // ---- small helpers --------------------------------------------------------------

  function el(tag, props) {
    var node = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (key) {
        var value = props[key];
        if (value === undefined || value === null || value === false) return;
        if (key === "class") node.className = value;
        else if (key === "text") node.textContent = String(value);
        else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function append(node, child) {
    if (child === undefined || child === null || child === false) return;
    if (Array.isArray(child)) child.forEach(function (c) { append(node, c); });
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function api(path) {
    return fetch("api/" + path, { headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error(r.status + " " + r.statusText);
      return r.json();
    });
  }

  function link(hash, text, cls) { return el("a", { href: hash, class: cls, text: text }); }
  function traceHash(id, spanId) {
    return "#/trace/" + encodeURIComponent(id) + (spanId ? "/span/" + encodeURIComponent(spanId) : "");
  }
  function sessionHash(id) { return "#/session/" + encodeURIComponent(id); }

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function fmtTime(ns) {
    if (ns === null || ns === undefined) return "-";
    var d = new Date(ns / 1e6);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function fmtDuration(ns) {
    if (ns === null || ns === undefined || isNaN(ns)) return "-";
    var us = Math.round(ns / 1e3), ms = ns / 1e6;
    if (us < 1000) return us + " µs";
    if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(2) + " s";
    return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
  }
  function fmtNumber(n) { return n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US"); }
  // As `tracekit ls` and `show` print it (_render.format_cost): "$1,234.567890".
  function fmtCost(c) {
    if (c === null || c === undefined || typeof c !== "number" || !isFinite(c)) return "-";
    return "$" + c.toLocaleString("en-US", { minimumFractionDigits: 6, maximumFractionDigits: 6 });
  }
  function costOf(record) { return record && record.cost && typeof record.cost.total_cost === "number" ? record.cost.total_cost : null; }
  function statusBadge(status) {
    var s = String(status || "UNSET");
    return el("span", { class: "badge status-" + s.toLowerCase(), text: s });
  }
  function typeBadge(type) {
    var t = String(type || "UNKNOWN");
    return el("span", { class: "badge type type-" + t.toLowerCase().replace(/[^a-z_]/g, ""), text: t });
  }
  function json(value) {
    var text;
    if (typeof value === "string") text = value;
    else { try { text = JSON.stringify(value, null, 2); } catch (e) { text = String(value); } }
    return el("pre", { class: "json", text: text === undefined ? "null" : text });
  }
  // Tool arguments and results often arrive as JSON text: show them as JSON.
  function parsed(value) {
    if (typeof value !== "string" || !/^\s*[\[{]/.test(value)) return value;
    try { return JSON.parse(value); } catch (e) { return value; }
  }
  function chips(tags) {
    return Object.keys(tags || {}).map(function (k) {
      return el("span", { class: "chip", text: k + "=" + tags[k] });
    });
  }
  function setNotice(skipped) {
    notice.textContent = skipped ? skipped + " unreadable line" + (skipped === 1 ? "" : "s") + " in the store skipped" : "";
  }
  function failed(err) {
    clear(app);
    append(app, el("p", { class: "error", text: "Could not load: " + err.message }));
  }

  // ---- the trace list ---------------------------------------------------------------

  var filters = { q: "", status: "", tag: "", session: "", user: "", model: "", since: "", until: "", sort: "start", order: "desc" };
  var offset = 0;
  var generation = null;
  var view = null; // what is on screen: {kind, reload}
  var listBox = null;

  function listQuery() {
    var params = [];
    Object.keys(filters).forEach(function (key) {
      var value = filters[key];
      if (!value) return;
      if (key === "since" || key === "until") value = String(new Date(value).getTime());
      params.push(key + "=" + encodeURIComponent(value));
    });
    params.push("offset=" + offset, "limit=" + PAGE);
    return "traces?" + params.join("&");
  }

  function field(id, label, input) {
    input.id = "f-" + id;
    return el("label", { class: "field", for: input.id }, el("span", { text: label }), input);
  }

  function select(key, options) {
    var node = el("select", { name: key });
    options.forEach(function (o) {
      var option = el("option", { value: o[0], text: o[1] });
      if (filters[key] === o[0]) option.selected = true;
      node.appendChild(option);
    });
    node.addEventListener("change", function () { filters[key] = node.value; offset = 0; loadList(); });
    return node;
  }

  var typing = {};
  function textInput(key, placeholder, type) {
    var node = el("input", { name: key, type: type || "search", placeholder: placeholder, autocomplete: "off" });
    node.value = filters[key];
    node.addEventListener("input", function () {
      filters[key] = node.value.trim();
      clearTimeout(typing.timer);  // one request once typing pauses, with every field's value
      typing.timer = setTimeout(function () { offset = 0; loadList(); }, 200);
    });
    return node;
  }

  function showList() {
    clear(app);
    var statusSelect = select("status", [["", "any status"]]);
    var modelSelect = select("model", [["", "any model"]]);
    var form = el("form", { class: "filters", onsubmit: function (e) { e.preventDefault(); } },
      field("q", "Search", textInput("q", "name or trace id")),
      field("status", "Status", statusSelect),
      field("tag", "Tag", textInput("tag", "key=value")),
      field("session", "Session", textInput("session", "session id")),
      field("user", "User", textInput("user", "user id")),
      field("model", "Model", modelSelect),
      field("since", "From", textInput("since", "", "datetime-local")),
      field("until", "To", textInput("until", "", "datetime-local")),
      field("sort", "Sort by", select("sort", [["start", "start time"], ["duration", "duration"], ["tokens", "tokens"], ["cost", "cost"]])),
      field("order", "Order", select("order", [["desc", "largest / newest first"], ["asc", "smallest / oldest first"]])));
    listBox = el("div", { id: "trace-list" });
    append(app, [el("h1", { text: "Traces" }), form, listBox]);
    view = { kind: "list", reload: loadList };
    api("facets").then(function (facets) {
      [[statusSelect, facets.status, "status"], [modelSelect, facets.model, "model"]].forEach(function (x) {
        x[1].forEach(function (v) {
          var option = el("option", { value: v, text: v });
          if (filters[x[2]] === v) option.selected = true;
          x[0].appendChild(option);
        });
      });
    }).catch(function () {});
    loadList();
  }

  var listRequest = 0;
  function loadList() {
    var mine = ++listRequest;
    return api(listQuery()).then(function (page) {
      if (mine !== listRequest || !view || view.kind !== "list") return;
      watch(page.generation);
      setNotice(page.skipped);
      renderList(page);
    }).catch(failed);
  }

  function renderList(page) {
    clear(listBox);
    if (!page.traces.length) {
      var filtered = Object.keys(filters).some(function (k) { return k !== "sort" && k !== "order" && filters[k]; });
      append(listBox, el("p", { class: "empty", text: filtered ? "No trace matches these filters." :
        "No traces in this store yet. Traced code writes here; try `tracekit demo`." }));
      return;
    }
    var head = ["Name", "Status", "Started", "Duration", "Spans", "Tokens", "Cost", "Session", "Tags"];
    var rows = page.traces.map(function (t) {
      var row = el("tr", { class: "trace-row", "data-trace-id": t.trace_id },
        el("td", null, link(traceHash(t.trace_id), t.name || "(unnamed)", "trace-name"),
          el("div", { class: "muted mono small", text: t.trace_id },
            t.assessments ? el("span", { class: "chip feedback-count", text: t.assessments + " assessment" + (t.assessments === 1 ? "" : "s") }) : null)),
        el("td", null, statusBadge(t.status)),
        el("td", { class: "nowrap", text: fmtTime(t.start_time_ns) }),
        el("td", { class: "num", text: fmtDuration(t.duration_ns) }),
        el("td", { class: "num", text: t.span_count }),
        el("td", { class: "num", text: fmtNumber(t.total_tokens) }),
        el("td", { class: "num cost", text: fmtCost(t.total_cost) }),
        el("td", null, t.session_id ? link(sessionHash(t.session_id), t.session_id) : "-"),
        el("td", null, chips(t.tags)));
      row.addEventListener("click", function (e) {
        if (e.target.closest("a")) return;
        location.hash = traceHash(t.trace_id);
      });
      return row;
    });
    append(listBox, el("table", { class: "traces" },
      el("thead", null, el("tr", null, head.map(function (h) { return el("th", { text: h }); }))),
      el("tbody", null, rows)));
    var last = Math.min(page.total, offset + page.traces.length);
    append(listBox, el("div", { class: "pager" },
      el("button", { type: "button", id: "prev", disabled: offset === 0 ? "" : null, onclick: function () { offset = Math.max(0, offset - PAGE); loadList(); }, text: "‹ Newer" }),
      el("span", { class: "muted", text: (offset + 1) + "–" + last + " of " + fmtNumber(page.total) }),
      el("button", { type: "button", id: "next", disabled: last >= page.total ? "" : null, onclick: function () { offset += PAGE; loadList(); }, text: "Older ›" })));
  }

  // ---- new traces while the page is open (long poll) -----------------------------------

  var watching = false;
  function watch(seen) {
    if (generation === null || seen > generation) generation = seen;
    if (watching || EMBEDDED) return;
    watching = true;
    (function loop() {
      api("wait?generation=" + generation).then(function (r) {
        if (r.generation !== generation) {
          generation = r.generation;
          if (view && view.reload) view.reload();
        }
        loop();
      }).catch(function () { setTimeout(loop, 2000); });
    })();
  }

  // ---- one trace: waterfall, span tree and the selected span ---------------------------------

  var current = null; // {record, byId, children, t0, t1, collapsed, selected}

  function index(record) {
    var byId = {}, children = {}, roots = [];
    record.spans.forEach(function (s) { byId[s.span_id] = s; });
    record.spans.forEach(function (s) {
      if (s.parent_id && byId[s.parent_id]) (children[s.parent_id] = children[s.parent_id] || []).push(s);
      else roots.push(s);
    });
    var byStart = function (a, b) { return (a.start_time_ns || 0) - (b.start_time_ns || 0); };
    roots.sort(byStart);
    Object.keys(children).forEach(function (k) { children[k].sort(byStart); });
    var starts = record.spans.map(function (s) { return s.start_time_ns; }).filter(Number.isFinite);
    var ends = record.spans.map(function (s) { return s.end_time_ns; }).filter(Number.isFinite);
    var t0 = Math.min.apply(null, starts.concat([record.start_time_ns || Infinity]));
    var t1 = Math.max.apply(null, ends.concat([record.end_time_ns || -Infinity]));
    if (!isFinite(t0)) t0 = 0;
    if (!isFinite(t1) || t1 <= t0) t1 = t0 + 1;
    return { record: record, byId: byId, children: children, roots: roots, t0: t0, t1: t1, collapsed: {}, selected: null };
  }

  // What a reload compares: the record without the server's bookkeeping.
  function signature(record) {
    var copy = {};
    Object.keys(record).forEach(function (k) { if (k !== "skipped" && k !== "generation") copy[k] = record[k]; });
    return JSON.stringify(copy);
  }

  function showTrace(id, spanId) {
    if (current && current.record.trace_id === id) { select_(spanId); return; }
    var load = EMBEDDED ? Promise.resolve(EMBEDDED) : api("traces/" + encodeURIComponent(id));
    clear(app);
    append(app, el("p", { class: "muted", text: "Loading trace…" }));
    var mine = view = { kind: "trace", trace: id, reload: function () { reloadTrace(mine); } };
    load.then(function (record) {
      if (view !== mine) return;
      if (!EMBEDDED) { setNotice(record.skipped); watch(record.generation); }
      current = index(record);
      current.signature = signature(record);
      renderTrace();
      select_(spanId);
    }).catch(function (err) {
      clear(app);
      append(app, el("p", { class: "error", text: "No trace " + id + " here (" + err.message + ")." }), link("#/", "Back to the traces"));
    });
  }

  // The store changed while this trace is open: a late fragment (spans that ended after
  // their trace was written) or new feedback. Redraw in place if this trace changed,
  // keeping the selected span, the folded subtrees and the scroll position.
  function reloadTrace(mine) {
    api("traces/" + encodeURIComponent(mine.trace)).then(function (record) {
      if (view !== mine || !current || current.record.trace_id !== mine.trace) return;
      setNotice(record.skipped);
      var sig = signature(record);
      if (sig === current.signature) return;
      var keep = { collapsed: current.collapsed, selected: current.selected, x: window.scrollX, y: window.scrollY };
      current = index(record);
      current.signature = sig;
      current.collapsed = keep.collapsed;
      renderTrace();
      select_(keep.selected);
      window.scrollTo(keep.x, keep.y);
    }).catch(function () {});
  }

  function renderTrace() {
    var r = current.record;
    clear(app);
    var usage = r.token_usage || {};
    var meta = [
      ["Trace", r.trace_id], ["Started", fmtTime(r.start_time_ns)],
      ["Duration", fmtDuration(r.end_time_ns - r.start_time_ns)], ["Spans", String(r.spans.length)],
      ["Tokens", usage.total_tokens !== undefined ? fmtNumber(usage.total_tokens) + " (" + fmtNumber(usage.input_tokens) + " in, " + fmtNumber(usage.output_tokens) + " out)" : "-"]
    ];
    if (costOf(r) !== null) meta.push(["Cost", fmtCost(costOf(r))]);
    var md = r.metadata || {};
    append(app, el("div", { class: "trace-head" },
      EMBEDDED ? null : link("#/", "‹ Traces", "back"),
      el("h1", null, el("span", { id: "trace-title", text: r.name || "(unnamed)" }), " ", statusBadge(r.status)),
      el("dl", { class: "meta" }, meta.map(function (m) { return el("div", null, el("dt", { text: m[0] }), el("dd", { class: m[0] === "Trace" ? "mono" : null, text: m[1] })); }),
        md.session_id !== undefined ? el("div", null, el("dt", { text: "Session" }), el("dd", null, EMBEDDED ? String(md.session_id) : link(sessionHash(String(md.session_id)), String(md.session_id)))) : null,
        md.user_id !== undefined ? el("div", null, el("dt", { text: "User" }), el("dd", { text: String(md.user_id) })) : null),
      el("div", { class: "tags" }, chips(r.tags)),
      assessmentsView(assessmentsOf(r, null), "trace-assessments")));
    var waterfall = el("section", { class: "waterfall", id: "waterfall" });
    var detail = el("section", { class: "detail", id: "span-detail" });
    append(app, el("div", { class: "trace-body" }, waterfall, detail));
    renderWaterfall();
  }

  // ---- feedback and expectations (assessments.jsonl, merged by the server) ----------------

  // null: every assessment of the trace; a span id: only those logged on that span.
  function assessmentsOf(record, spanId) {
    var all = Array.isArray(record.assessments) ? record.assessments : [];
    return spanId === null ? all : all.filter(function (a) { return a && a.span_id === spanId; });
  }

  function assessmentValue(a) {
    var v = a.value;
    if (a.error && (v === null || v === undefined)) {
      return el("span", { class: "error", text: "error " + (a.error.error_code || "") + (a.error.error_message ? ": " + a.error.error_message : "") });
    }
    var text = typeof v === "string" ? v : JSON.stringify(v);
    return el("span", { class: "value mono" + (v === true ? " yes" : v === false ? " no" : ""), text: text === undefined ? "null" : text });
  }

  function assessmentsView(list, id) {
    if (!list.length) return null;
    var rows = list.map(function (a) {
      var source = a.source || {};
      var onSpan = a.span_id && current && current.byId[a.span_id] && id === "trace-assessments";
      return el("tr", { class: "assessment kind-" + String(a.kind || "feedback").replace(/[^a-z]/g, "") },
        el("td", null, el("span", { class: "badge kind", text: String(a.kind || "feedback") })),
        el("td", null, el("strong", { text: String(a.name) }),
          onSpan ? el("div", { class: "small" }, "on ", link(traceHash(current.record.trace_id, a.span_id), current.byId[a.span_id].name)) : null),
        el("td", null, assessmentValue(a)),
        el("td", { class: "nowrap", text: (source.source_type || "HUMAN") + (source.source_id ? " · " + source.source_id : "") }),
        el("td", { class: "rationale", text: a.rationale ? String(a.rationale) : "" },
          a.metadata && typeof a.metadata === "object" ? el("div", null, chips(a.metadata)) : null),
        el("td", { class: "nowrap muted", text: typeof a.create_time_ms === "number" ? fmtTime(a.create_time_ms * 1e6) : "-" }));
    });
    return el("table", { class: "assessments", id: id },
      el("thead", null, el("tr", null, ["", "Assessment", "Value", "Source", "Rationale", "Logged"].map(function (h) { return el("th", { text: h }); }))),
      el("tbody", null, rows));
  }

  function axis() {
    var span = current.t1 - current.t0;
    var ticks = [0, 0.25, 0.5, 0.75, 1].map(function (f) {
      var tick = el("span", { class: "tick", text: f ? fmtDuration(span * f) : "0" });
      tick.style.left = (f * 100) + "%";
      return tick;
    });
    return el("div", { class: "wf-row wf-axis" }, el("div", { class: "wf-label muted", text: "Span" }), el("div", { class: "wf-track" }, ticks));
  }

  function renderWaterfall() {
    var box = document.getElementById("waterfall");
    clear(box);
    append(box, axis());
    var total = current.t1 - current.t0;
    var walk = function (span, depth) {
      var kids = current.children[span.span_id] || [];
      var start = span.start_time_ns || current.t0, end = span.end_time_ns || start;
      var bar = el("div", { class: "wf-bar type-" + String(span.span_type || "unknown").toLowerCase() + ((span.status || {}).code === "ERROR" ? " error" : "") });
      bar.style.left = ((start - current.t0) / total * 100) + "%";
      bar.style.width = Math.max(0.3, (end - start) / total * 100) + "%";
      var ttfc = (span.attributes || {})["tracekit.time_to_first_chunk_s"];
      if (typeof ttfc === "number" && end > start) {
        var first = el("div", { class: "wf-ttfc", title: "time to first chunk: " + fmtDuration(ttfc * 1e9) });
        first.style.width = Math.min(100, ttfc * 1e9 / (end - start) * 100) + "%";
        bar.appendChild(first);
      }
      var label = fmtDuration(end - start) + (typeof ttfc === "number" ? " · first chunk " + fmtDuration(ttfc * 1e9) : "") +
        (span.cost && typeof span.cost.total_cost === "number" ? " · " + fmtCost(span.cost.total_cost) : "");
      var toggle = kids.length ? el("button", { type: "button", class: "toggle", "aria-label": "collapse", text: current.collapsed[span.span_id] ? "▸" : "▾",
        onclick: function (e) { e.stopPropagation(); current.collapsed[span.span_id] = !current.collapsed[span.span_id]; renderWaterfall(); } }) : el("span", { class: "toggle" });
      var name = el("div", { class: "wf-label" }, toggle, typeBadge(span.span_type), " ", el("span", { class: "span-name", text: span.name }));
      name.style.paddingLeft = (depth * 14 + 4) + "px";
      var time = el("span", { class: "wf-time", text: label });
      var track = el("div", { class: "wf-track" }, bar, time);
      var row = el("div", { class: "wf-row" + (current.selected === span.span_id ? " selected" : ""), "data-span-id": span.span_id, tabindex: "0" },
        name, track);
      row.addEventListener("click", function () { location.hash = traceHash(current.record.trace_id, span.span_id); });
      row.addEventListener("keydown", function (e) { if (e.key === "Enter") row.click(); });
      box.appendChild(row);
      placeTime(time, track, (start - current.t0) / total, (end - current.t0) / total);
      if (!current.collapsed[span.span_id]) kids.forEach(function (k) { walk(k, depth + 1); });
    };
    current.roots.forEach(function (r) { walk(r, 0); });
  }

  // The label beside its bar, measured so that it never runs over its own bar: after the
  // bar if it fits there, else before it, else inside it (a wide bar), else after it anyway.
  function placeTime(node, track, from, to) {
    var width = track.clientWidth, need = node.offsetWidth + 2;
    if (!width || !need) {  // not laid out (a hidden page): guess from the fractions
      if (to <= 0.8) node.style.left = (to * 100) + "%";
      else node.style.right = ((1 - from) * 100) + "%";
      return;
    }
    if ((1 - to) * width >= need) node.style.left = (to * 100) + "%";
    else if (from * width >= need) node.style.right = ((1 - from) * 100) + "%";
    else if ((to - from) * width >= need) { node.classList.add("inside"); node.style.right = ((1 - to) * 100) + "%"; }
    else node.style.left = (to * 100) + "%";
  }

  function select_(spanId) {
    if (!spanId || !current.byId[spanId]) spanId = current.roots.length ? current.roots[0].span_id : null;
    current.selected = spanId;
    document.querySelectorAll(".wf-row.selected").forEach(function (n) { n.classList.remove("selected"); });
    var row = spanId && document.querySelector('.wf-row[data-span-id="' + CSS.escape(spanId) + '"]');
    if (row) row.classList.add("selected");
    var box = document.getElementById("span-detail");
    clear(box);
    if (spanId) renderSpan(box, current.byId[spanId]);
  }

  function section(title, body, open) {
    var node = el("details", { class: "section", open: open ? "" : null }, el("summary", { text: title }), body);
    return node;
  }

  function renderSpan(box, span) {
    var status = span.status || {};
    var attrs = span.attributes || {};
    var start = span.start_time_ns, end = span.end_time_ns;
    var ttfc = attrs["tracekit.time_to_first_chunk_s"];
    append(box, el("h2", null, typeBadge(span.span_type), " ", el("span", { id: "span-title", text: span.name })));
    append(box, el("p", { class: "muted" },
      fmtDuration(end - start) + ", from +" + fmtDuration(start - current.t0),
      typeof ttfc === "number" ? " · stream, first chunk after " + fmtDuration(ttfc * 1e9) : "",
      " · ", statusBadge(status.code)));
    if (status.code === "ERROR") append(box, el("p", { class: "error", text: status.message || "error" }));
    var usage = span.token_usage;
    var stats = [];
    if (usage && typeof usage === "object") Object.keys(usage).forEach(function (k) { stats.push([k, fmtNumber(usage[k])]); });
    if (span.cost && typeof span.cost === "object") Object.keys(span.cost).forEach(function (k) { stats.push([k, fmtCost(span.cost[k])]); });
    if (stats.length) {
      append(box, el("div", { class: "usage" }, stats.map(function (x) {
        return el("span", { class: "stat" }, el("span", { class: "muted", text: x[0].replace(/_/g, " ") }), " ", el("strong", { text: x[1] }));
      })));
    }
    var marks = assessmentsOf(current.record, span.span_id);
    if (marks.length) append(box, section("Assessments (" + marks.length + ")", assessmentsView(marks, "span-assessments"), true));
    var chat = span.chat && typeof span.chat === "object" ? span.chat : null;
    if (chat) append(box, section("Chat", chatView(chat), true));
    append(box, section("Inputs", json(span.inputs === undefined ? null : span.inputs), !chat));
    append(box, section("Outputs", json(span.outputs === undefined ? null : span.outputs), !chat));
    var keys = Object.keys(attrs).sort();
    append(box, section("Attributes (" + keys.length + ")", keys.length ? el("table", { class: "kv" }, keys.map(function (k) {
      var v = attrs[k];
      return el("tr", null, el("th", { text: k }), el("td", null, typeof v === "object" ? json(v) : String(v)));
    })) : el("p", { class: "muted", text: "none" }), !chat));
    var events = Array.isArray(span.events) ? span.events : [];
    if (events.length) append(box, section("Events (" + events.length + ")", events.map(function (e) { return eventView(e, start); }), true));
  }

  function eventView(event, spanStart) {
    var a = event.attributes || {};
    var at = typeof event.timestamp_ns === "number" ? event.timestamp_ns : event.time_ns;
    var when = typeof at === "number" && at >= spanStart ? " at +" + fmtDuration(at - spanStart) : "";
    if (event.name === "exception") {
      return el("div", { class: "event exception" },
        el("div", { class: "error", text: (a["exception.type"] || "Exception") + ": " + (a["exception.message"] || "") + when }),
        a["exception.stacktrace"] ? el("pre", { class: "stack", text: a["exception.stacktrace"] }) : null);
    }
    return el("div", { class: "event" }, el("strong", { text: String(event.name) }), when, Object.keys(a).length ? json(a) : null);
  }

  // ---- the chat view (record key "chat": OpenTelemetry GenAI message shapes) ------------

  function chatView(chat) {
    var box = el("div", { class: "chat", id: "chat-view" });
    var system = Array.isArray(chat.system_instructions) ? chat.system_instructions : [];
    if (system.length) box.appendChild(message({ role: "system", parts: system }));
    (Array.isArray(chat.input_messages) ? chat.input_messages : []).forEach(function (m) { box.appendChild(message(m)); });
    var out = Array.isArray(chat.output_messages) ? chat.output_messages : [];
    if (out.length) box.appendChild(el("div", { class: "chat-divider", text: "response" }));
    out.forEach(function (m) { box.appendChild(message(m, true)); });
    var tools = Array.isArray(chat.tool_definitions) ? chat.tool_definitions : [];
    if (tools.length) {
      box.appendChild(el("details", { class: "tools" }, el("summary", { text: "Tools offered (" + tools.length + ")" }),
        tools.map(function (t) { return el("div", { class: "tool-def" }, el("strong", { text: String(t.name) }), t.description ? " — " + t.description : "", t.parameters ? json(t.parameters) : null); })));
    }
    return box;
  }

  function message(m, output) {
    var role = String((m && m.role) || "unknown");
    var parts = Array.isArray(m && m.parts) ? m.parts : [];
    var head = el("div", { class: "msg-role" }, role + (m && m.name ? " · " + m.name : ""),
      output && m.finish_reason ? el("span", { class: "muted", text: " · " + m.finish_reason }) : null);
    return el("div", { class: "msg role-" + role.replace(/[^a-z_]/g, "") + (output ? " output" : "") }, head, parts.map(part));
  }

  function part(p) {
    if (!p || typeof p !== "object") return json(p);
    switch (p.type) {
      case "text": return el("div", { class: "part text", text: String(p.content) });
      case "reasoning": return el("details", { class: "part reasoning" }, el("summary", { text: "Reasoning" }), el("div", { class: "text", text: String(p.content) }));
      case "tool_call": return el("div", { class: "part tool-call" },
        el("div", { class: "part-head" }, "Tool call ", el("strong", { text: String(p.name) }), p.id ? el("span", { class: "muted mono", text: "  " + p.id }) : null),
        json(parsed(p.arguments)));
      case "tool_call_response": return el("div", { class: "part tool-result" },
        el("div", { class: "part-head" }, "Tool result", p.id ? el("span", { class: "muted mono", text: "  " + p.id }) : null),
        json(parsed(p.response)));
      case "blob": case "uri": case "file": return el("div", { class: "part media" },
        "[" + (p.modality || "file") + (p.mime_type ? " " + p.mime_type : "") + "] " + String(p.uri || p.file_id || (typeof p.content === "string" ? p.content.slice(0, 80) + "…" : "")));
      default: return json(p);
    }
  }

  // ---- sessions ---------------------------------------------------------------------

  // Buttons to move through pages of `size` items: where `from`, `shown` on this page.
  function pager(from, shown, total, size, go, words) {
    var last = from + shown;
    return el("div", { class: "pager" },
      el("button", { type: "button", class: "earlier", disabled: from === 0 ? "" : null, onclick: function () { go(Math.max(0, from - size)); window.scrollTo(0, 0); }, text: words[0] }),
      el("span", { class: "muted", text: (from + 1) + "–" + last + " of " + fmtNumber(total) }),
      el("button", { type: "button", class: "later", disabled: last >= total ? "" : null, onclick: function () { go(from + size); window.scrollTo(0, 0); }, text: words[1] }));
  }

  var SESSIONS = 100;  // sessions on one page of the list
  function showSessions(at) {
    var from = typeof at === "number" ? at : 0;
    view = { kind: "sessions", reload: function () { showSessions(from); } };
    api("sessions?offset=" + from + "&limit=" + SESSIONS).then(function (page) {
      if (!view || view.kind !== "sessions") return;
      watch(page.generation);
      setNotice(page.skipped);
      var y = window.scrollY;
      clear(app);
      append(app, el("h1", { text: "Sessions" }));
      if (!page.sessions.length) {
        append(app, el("p", { class: "empty", text: "No sessions yet: traces join one with tracekit.update_current_trace(session_id=...)." }));
        return;
      }
      append(app, el("table", { class: "traces sessions" },
        el("thead", null, el("tr", null, ["Session", "User", "Traces", "First", "Last", "Tokens", "Cost"].map(function (h) { return el("th", { text: h }); }))),
        el("tbody", null, page.sessions.map(function (s) {
          var row = el("tr", { class: "session-row" },
            el("td", null, link(sessionHash(s.session_id), s.session_id)), el("td", { text: s.user_id || "-" }),
            el("td", { class: "num", text: s.trace_count }), el("td", { class: "nowrap", text: fmtTime(s.start_time_ns) }),
            el("td", { class: "nowrap", text: fmtTime(s.end_time_ns) }), el("td", { class: "num", text: fmtNumber(s.tokens) }),
            el("td", { class: "num cost", text: fmtCost(s.cost) }));
          row.addEventListener("click", function (e) { if (!e.target.closest("a")) location.hash = sessionHash(s.session_id); });
          return row;
        }))));
      if (page.total > SESSIONS || from > 0) append(app, pager(from, page.sessions.length, page.total, SESSIONS, showSessions, ["‹ More recent", "Older ›"]));
      window.scrollTo(0, y);
    }).catch(failed);
  }

  function turnText(value) {
    if (typeof value === "string") return value;
    if (value && typeof value === "object" && !Array.isArray(value)) {
      var keys = Object.keys(value);
      if (keys.length === 1 && typeof value[keys[0]] === "string") return value[keys[0]];
    }
    return null;
  }

  function bubble(role, value) {
    var text = turnText(value);
    return el("div", { class: "msg role-" + role }, el("div", { class: "msg-role", text: role }),
      text !== null ? el("div", { class: "part text", text: text }) :
        value === null || value === undefined ? el("div", { class: "muted", text: "(nothing recorded)" }) : json(value));
  }

  var TURNS = 200;  // traces on one page of a session
  function showSession(id, at) {
    var from = at || 0;
    view = { kind: "session", reload: function () { showSession(id, from); } };
    api("sessions/" + encodeURIComponent(id) + "?offset=" + from + "&limit=" + TURNS).then(function (s) {
      if (!view || view.kind !== "session") return;
      watch(s.generation);
      var y = window.scrollY;
      clear(app);
      var total = typeof s.total === "number" ? s.total : s.turns.length;
      var pages = function () { return pager(from, s.turns.length, total, TURNS, function (at) { showSession(id, at); }, ["‹ Earlier", "Later ›"]); };
      var paged = total > TURNS || from > 0;
      append(app, [link("#/sessions", "‹ Sessions", "back"), el("h1", null, "Session ", el("span", { class: "mono", text: s.session_id })),
        el("p", { class: "muted", text: total + " trace" + (total === 1 ? "" : "s") + ", oldest first" }), paged ? pages() : null]);
      var box = el("div", { class: "chat conversation", id: "conversation" });
      s.turns.forEach(function (t) {
        var usage = t.token_usage || {};
        box.appendChild(el("div", { class: "turn" },
          el("div", { class: "turn-head muted" }, fmtTime(t.start_time_ns) + " · ", link(traceHash(t.trace_id), t.name || t.trace_id),
            " · " + fmtDuration(t.end_time_ns - t.start_time_ns) + (usage.total_tokens !== undefined ? " · " + fmtNumber(usage.total_tokens) + " tokens" : ""), " ", statusBadge(t.status)),
          bubble("user", t.inputs), bubble("assistant", t.outputs),
          assessmentsView(Array.isArray(t.assessments) ? t.assessments : [], null)));
      });
      append(app, box);
      if (paged) append(app, pages());
      window.scrollTo(0, y);
    }).catch(failed);
  }

  // ---- routing ----------------------------------------------------------------------

  function route() {
    var hash = location.hash.replace(/^#\/?/, "");
    var parts = hash.split("/").map(function (p) { try { return decodeURIComponent(p); } catch (e) { return p; } });
    if (EMBEDDED) {
      var spanId = parts[0] === "trace" && parts[2] === "span" ? parts[3] : (parts[0] === "span" ? parts[1] : null);
      showTrace(EMBEDDED.trace_id, spanId);
      return;
    }
    document.getElementById("nav-traces").classList.toggle("active", parts[0] === "" || parts[0] === "traces" || parts[0] === "trace");
    document.getElementById("nav-sessions").classList.toggle("active", parts[0] === "sessions" || parts[0] === "session");
    if (parts[0] !== "trace") current = null;
    if (parts[0] === "trace" && parts[1]) showTrace(parts[1], parts[2] === "span" ? parts[3] : null);
    else if (parts[0] === "sessions") showSessions();
    else if (parts[0] === "session" && parts[1]) showSession(parts[1]);
    else showList();
  }

  // Labels are placed by measuring the track: place them again when it changes width.
  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () { if (current && document.getElementById("waterfall")) renderWaterfall(); }, 150);
  });

  if (EMBEDDED) document.getElementById("nav").hidden = true;
  window.addEventListener("hashchange", route);
  route();
})();
