// The compliance pages. No inline code: data comes from json_script blocks, behaviour from here.
//  - the dashboard (#compliance-snapshot): budget bars, the epsilon burn-down and the runs in
//    flight, redrawn from each snapshot the websocket /ws/compliance/ sends (on every ledger
//    change, and when its periodic re-read of the database finds one); it reconnects with
//    backoff and shows the connection's state;
//  - a dataset's audit report (#burndown-data): its burn-down chart and the print button.
"use strict";
(() => {
  const config = {responsive: true, displaylogo: false, displayModeBar: false};
  const COLORS = {spent: "#b42318", reserved: "#d97706", left: "#12b76a"};
  const PALETTE = ["#2851a3", "#d97706", "#067647", "#7a5af8", "#b42318", "#0e9384", "#c11574", "#475467"];
  const TOP_LEGEND = {orientation: "h", x: 0, y: 1.02, yanchor: "bottom"};
  const el = (id) => document.getElementById(id);
  const num = (text) => Number(text);

  function cell(row, text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (text instanceof Node) td.append(text); else td.textContent = text;
    row.append(td);
    return td;
  }

  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function badge(text, className) {
    const span = document.createElement("span");
    span.className = className;
    span.textContent = text;
    return span;
  }

  // Per dataset: the cumulative committed epsilon (the sum: a solid step line, extended to now),
  // the commits composed by the accountant (a dotted step line beside it), and the limit.
  function burndownTraces(series) {
    const now = new Date().toISOString();
    const traces = [];
    series.forEach((dataset, index) => {
      const color = PALETTE[index % PALETTE.length];
      const times = dataset.points.map((point) => point.time);
      const spent = dataset.points.map((point) => num(point.spent));
      times.push(now);
      spent.push(spent[spent.length - 1]);
      traces.push({x: times, y: spent, name: dataset.name, legendgroup: dataset.name, mode: "lines",
                   line: {shape: "hv", color, width: 2},
                   hovertemplate: "%{y} sequential (sum)<extra>" + dataset.name + "</extra>"});
      const composed = dataset.points.map((point) => (point.composed === null ? null : num(point.composed)));
      composed.push(composed[composed.length - 1]);
      traces.push({x: times, y: composed, name: `${dataset.name} composed (${dataset.accountant.toUpperCase()}, δ ${dataset.delta})`,
                   legendgroup: dataset.name, mode: "lines", line: {shape: "hv", color, width: 2, dash: "dot"},
                   hovertemplate: "%{y} composed<extra>" + dataset.name + "</extra>"});
      traces.push({x: [times[0], now], y: [num(dataset.limit), num(dataset.limit)], name: dataset.name + " limit",
                   legendgroup: dataset.name, showlegend: false, mode: "lines", line: {dash: "dash", color, width: 1},
                   hovertemplate: "limit %{y}<extra>" + dataset.name + "</extra>"});
    });
    return traces;
  }

  function drawBurndown(target, series) {
    const layout = {margin: {t: 30, r: 10, b: 60, l: 55}, height: 340, legend: TOP_LEGEND,
                    xaxis: {type: "date"},
                    yaxis: {title: {text: "epsilon committed: sum (solid), composed (dotted)"}, rangemode: "tozero"}};
    if (!series.length) { target.textContent = "No budgets yet."; return; }
    Plotly.react(target, burndownTraces(series), layout, config);
  }

  // ---- the dashboard ----------------------------------------------------------------------
  function dashboard(initial) {
    const state = el("live-state"), lastUpdate = el("last-update");
    const budgetTable = el("budget-table"), runsTable = el("runs-table");
    const auditUrl = (id) => budgetTable.dataset.auditUrl.replace("/0/", `/${id}/`);
    const jobUrl = (id) => runsTable.dataset.jobUrl.replace("/0/", `/${id}/`);
    let retryDelay = 500, refused = false;

    function setState(name, text) {
      state.dataset.state = name;
      state.textContent = text;
    }

    function drawBudgets(budgets) {
      const target = el("budget-chart");
      if (!budgets.length) { target.textContent = ""; return; }
      const names = budgets.map((b) => b.name);
      const bar = (key, label) => ({
        type: "bar", orientation: "h", name: label, y: names, x: budgets.map((b) => Math.max(num(b[key]), 0)),
        marker: {color: COLORS[key]}, hovertemplate: "%{x} " + key + "<extra>%{y}</extra>",
      });
      const annotations = budgets.filter((b) => b.nonprivate_releases > 0).map((b) => ({
        x: num(b.limit), y: b.name, xanchor: "left", showarrow: false, font: {color: "#912018"},
        text: ` ⚠ ${b.nonprivate_releases} non-private`,
      }));
      const layout = {barmode: "stack", height: 100 + 34 * budgets.length, margin: {t: 30, r: 110, b: 40, l: 140},
                      legend: {...TOP_LEGEND, traceorder: "normal"}, xaxis: {title: {text: "epsilon"}, rangemode: "tozero"},
                      yaxis: {autorange: "reversed"}, annotations};
      Plotly.react(target, [bar("spent", "spent"), bar("reserved", "reserved"), bar("left", "left")], layout, config);
    }

    function budgetRows(budgets, changed) {
      const body = budgetTable.tBodies[0];
      body.replaceChildren();
      if (!budgets.length) {
        const row = body.insertRow();
        row.className = "empty-row";
        cell(row, "No datasets are registered yet.").colSpan = 11;
        return;
      }
      for (const b of budgets) {
        const row = body.insertRow();
        row.id = `budget-row-${b.id}`;
        if (changed.has(b.id)) row.className = "changed";
        const name = cell(row, b.name);
        const unit = document.createElement("small");
        unit.className = "epsilon-unit";
        unit.textContent = ` ε ${b.epsilon_unit}`;
        name.append(unit);
        cell(row, b.owner);
        [b.limit, b.spent, b.reserved, b.left].forEach((text) => cell(row, text, "num"));
        cell(row, b.figures, "text figures");
        const meter = document.createElement("meter");
        Object.assign(meter, {min: 0, max: num(b.limit), optimum: 0, high: num(b.warn_at), value: num(b.used)});
        meter.textContent = `${b.used} of ${b.limit}`;
        cell(row, meter);
        cell(row, b.nonprivate_releases ? badge(String(b.nonprivate_releases), "badge warn") : "0");
        cell(row, b.approval_threshold ?? "—");
        cell(row, link(auditUrl(b.id), "report"));
      }
    }

    function runRows(runs) {
      const body = runsTable.tBodies[0];
      body.replaceChildren();
      if (!runs.length) {
        const row = body.insertRow();
        row.className = "empty-row";
        cell(row, "No runs in flight.").colSpan = 7;
        return;
      }
      for (const run of runs) {
        const row = body.insertRow();
        cell(row, link(jobUrl(run.id), String(run.id)));
        cell(row, run.kind);
        cell(row, badge(run.status, `status status-${run.status}`));
        cell(row, (run.stage ?? "—") + (run.stage_status ? ` (${run.stage_status})` : ""));
        cell(row, run.dataset);
        cell(row, run.owner);
        cell(row, run.created_at.slice(0, 19).replace("T", " "), "time");
      }
    }

    function render(snapshot) {
      const changed = new Set(snapshot.changed || []);
      drawBudgets(snapshot.budgets);
      budgetRows(snapshot.budgets, changed);
      drawBurndown(el("burndown-chart"), snapshot.burndown);
      runRows(snapshot.runs);
      el("awaiting-count").textContent = snapshot.awaiting_approval;
      if (snapshot.time) lastUpdate.textContent = `Last update ${snapshot.time.slice(11, 19)} UTC.`;
    }

    function connect() {
      const scheme = window.location.protocol === "https:" ? "wss" : "ws";
      const socket = new WebSocket(`${scheme}://${window.location.host}/ws/compliance/`);
      socket.addEventListener("open", () => { setState("live", "live"); retryDelay = 500; });
      socket.addEventListener("message", (message) => {
        const data = JSON.parse(message.data);
        if (data.type === "snapshot") render(data);
      });
      socket.addEventListener("close", (close) => {
        if (close.code === 4401 || close.code === 4403) {
          refused = true;
          setState("refused", close.code === 4401 ? "logged out: reload the page" : "not allowed");
          return;
        }
        setState("reconnecting", `offline, reconnecting in ${Math.round(retryDelay / 1000) || 1} s…`);
        setTimeout(() => { if (!refused) { setState("connecting", "connecting…"); connect(); } }, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 10000);
      });
    }

    render(initial);
    connect();
  }

  // ---- a dataset's audit report -------------------------------------------------------------
  function auditReport(series) {
    const target = el("burndown-chart");
    drawBurndown(target, series);
    const resize = () => { if (target.data) Plotly.Plots.resize(target); };
    window.addEventListener("beforeprint", resize);
    window.addEventListener("afterprint", resize);
  }

  const snapshot = el("compliance-snapshot");
  if (snapshot) dashboard(JSON.parse(snapshot.textContent));
  const burndown = el("burndown-data");
  if (burndown) auditReport(JSON.parse(burndown.textContent));
  const printButton = el("print-audit");
  if (printButton) printButton.addEventListener("click", () => window.print());
})();
