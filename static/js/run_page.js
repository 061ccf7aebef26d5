// The live run page: one stream for the run itself (its status and "stage queued" events) and
// one per stage job (KsgJobStream.connect: resume from the last seq, reconnect with backoff).
// A stage's status change, or any run event, re-fetches the server-rendered timeline fragment;
// a stage that appears in it gets its own stream. Charts: epsilon vs step of stage 1 with the
// run's target and the dataset's limit as horizontal lines; loss vs step of each training
// stage. The feed shows the stages' `sample` events: generated instructions, filter verdicts,
// distilled pairs. Settings come from #job-page-config's data- attributes (no inline script).
"use strict";
(() => {
  const config = document.getElementById("job-page-config").dataset;
  const runId = Number(config.jobId);
  const el = (id) => document.getElementById(id);
  const plotConfig = {responsive: true, displaylogo: false, displayModeBar: false};  // drag to zoom, double-click to reset
  const MAX_FEED_ITEMS = 100, MAX_LOG_ITEMS = 300, TIMELINE_TICK_MS = 15000;
  const LOSS_STAGES = {dp_finetune: "DP fine-tuning", finetune_private: "non-private fine-tuning",
                       finetune_target: "target fine-tuning"};
  const VERDICTS = {empty_or_malformed: "empty or malformed", pii: "personal data", duplicate: "near-duplicate",
                    not_relevant: "off-domain"};
  const streams = new Map();  // job id -> {handle, state}
  const lossTraces = new Map();  // stage kind -> trace index
  let lines = {target: null, limit: null}, epsilonMax = 0, runFinished = false, refreshTimer = null;

  // --- charts -------------------------------------------------------------------------------
  const layout = (ytitle) => ({
    margin: {t: 10, r: 10, b: 40, l: 55}, height: 300, xaxis: {title: {text: "step"}},
    yaxis: {title: {text: ytitle}, rangemode: "tozero"}, legend: {orientation: "h", x: 0, y: 1.02, yanchor: "bottom"},
  });
  const epsilonChart = el("run-epsilon-chart"), lossChart = el("run-loss-chart");
  Plotly.newPlot(epsilonChart, [{x: [], y: [], name: "epsilon spent", mode: "lines+markers"}], layout("epsilon"), plotConfig);
  Plotly.newPlot(lossChart, [], layout("loss (nats per token)"), plotConfig);

  // the target and the dataset's limit as dashed lines across the chart, labelled at the right
  function drawEpsilonLines() {
    const shapes = [], annotations = [];
    const line = (value, text, color) => {
      if (typeof value !== "number" || !Number.isFinite(value)) return;
      shapes.push({type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: value, y1: value,
                   line: {dash: "dash", width: 2, color}});
      annotations.push({xref: "paper", x: 1, xanchor: "right", yref: "y", y: value, yanchor: "bottom",
                        text: `${text} ${value}`, showarrow: false, font: {color}});
    };
    line(lines.target, "target ε", "#475467");
    line(lines.limit, "dataset limit ε", "#b42318");
    const top = Math.max(epsilonMax, lines.target || 0, lines.limit || 0);
    Plotly.relayout(epsilonChart, {shapes, annotations, "yaxis.range": [0, top > 0 ? top * 1.1 : 1]});
  }

  function plotEpsilon(payload) {
    if (typeof payload.epsilon !== "number") return;
    Plotly.extendTraces(epsilonChart, {x: [[payload.step]], y: [[payload.epsilon]]}, [0]);
    if (payload.epsilon > epsilonMax) { epsilonMax = payload.epsilon; drawEpsilonLines(); }
  }

  function plotLoss(kind, payload) {
    if (!(kind in LOSS_STAGES) || typeof payload.loss !== "number") return;
    if (!lossTraces.has(kind)) {
      lossTraces.set(kind, lossChart.data.length);
      Plotly.addTraces(lossChart, {x: [payload.step], y: [payload.loss], name: LOSS_STAGES[kind], mode: "lines"});
    } else {
      Plotly.extendTraces(lossChart, {x: [[payload.step]], y: [[payload.loss]]}, [lossTraces.get(kind)]);
    }
  }

  // --- live feed of samples -------------------------------------------------------------------
  function feedItem(listId, build) {
    const list = el(listId);
    if (!list) return;
    const item = document.createElement("li");
    build(item);
    list.prepend(item);
    const empty = list.parentElement.querySelector(".feed-empty");
    if (empty) empty.remove();
    while (list.children.length > MAX_FEED_ITEMS) list.lastChild.remove();
  }

  function textBlock(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    node.textContent = text;
    return node;
  }

  function showSample(payload) {
    if (payload.stage === "generate") {
      feedItem("feed-generate", (item) => item.append(textBlock("p", "", payload.instruction || "")));
    } else if (payload.stage === "filter") {
      feedItem("feed-filter", (item) => {
        const verdict = payload.kept ? "kept" : (VERDICTS[payload.reason] || payload.reason || "dropped");
        item.append(textBlock("span", payload.kept ? "badge ok" : "badge warn", verdict),
                    textBlock("p", "", payload.instruction || ""));
      });
    } else if (payload.stage === "distill") {
      feedItem("feed-distill", (item) => item.append(textBlock("p", "pair-instruction", payload.instruction || ""),
                                                    textBlock("p", "pair-response", payload.response || "")));
    }
  }

  // --- the run's own events -----------------------------------------------------------------
  function appendLog(label, event) {
    const log = el("event-log");
    const item = document.createElement("li");
    item.textContent = `${event.time.slice(11, 19)} ${label} #${event.seq} ${event.kind} ${JSON.stringify(event.payload)}`;
    log.prepend(item);
    while (log.children.length > MAX_LOG_ITEMS) log.lastChild.remove();
  }

  function showRunStatus(payload) {
    const status = el("job-status");
    status.textContent = payload.status;
    status.className = "status status-" + payload.status;
    if (payload.error) { el("job-error").textContent = payload.error; el("job-error").hidden = false; }
    if (KsgJobStream.TERMINAL.has(payload.status)) {
      runFinished = true;
      const cancel = el("cancel-form");
      if (cancel) cancel.remove();
    }
  }

  // --- connections and the indicator ----------------------------------------------------------
  function showConnection() {
    const states = [...streams.values()].map((stream) => stream.state);
    const any = (state) => states.includes(state);
    const overall = any("not allowed") ? "not allowed" : any("reconnecting") ? "reconnecting"
      : any("connecting") ? "connecting" : any("live") ? "live" : "finished";
    KsgJobStream.showState(el("stream-state"), overall);
  }

  function follow(jobId, kind) {
    if (streams.has(jobId)) return;
    const stream = {state: "connecting", handle: null};
    streams.set(jobId, stream);
    stream.handle = KsgJobStream.connect({
      jobId,
      onState: (state) => { stream.state = state; showConnection(); },
      onEvent: (event) => {
        if (jobId === runId) {
          appendLog("run", event);
          if (event.kind === "status") showRunStatus(event.payload);
          scheduleTimelineRefresh();
          if (runFinished) setTimeout(() => stream.handle.close(), 0);
          return;
        }
        if (event.kind === "epsilon") plotEpsilon(event.payload);
        else if (event.kind === "metric") plotLoss(kind, event.payload);
        else if (event.kind === "sample") showSample(event.payload);
        else if (event.kind === "status") {
          appendLog(kind, event);
          scheduleTimelineRefresh();
          // the terminal status is a job's last event: its stream has nothing more to say
          if (KsgJobStream.TERMINAL.has(event.payload.status)) setTimeout(() => stream.handle.close(), 0);
        }
      },
    });
  }

  // --- the timeline fragment ------------------------------------------------------------------
  function readTimeline(timeline) {
    const number = (text) => (text === undefined || text === "" ? null : Number(text));
    lines = {target: number(timeline.dataset.targetEpsilon), limit: number(timeline.dataset.epsilonLimit)};
    drawEpsilonLines();
    for (const row of timeline.querySelectorAll("[data-job-id]")) follow(Number(row.dataset.jobId), row.dataset.kind);
  }

  function refreshTimeline() {
    refreshTimer = null;
    fetch(config.timelineUrl, {credentials: "same-origin"}).then((response) => {
      if (!response.ok) throw new Error(`timeline: HTTP ${response.status}`);
      return response.text();
    }).then((html) => {
      const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("run-timeline");
      if (!fresh) return;
      el("run-timeline").replaceWith(fresh);
      readTimeline(fresh);
    }).catch(() => scheduleTimelineRefresh(5000));
  }

  function scheduleTimelineRefresh(delay = 300) {
    if (refreshTimer === null) refreshTimer = setTimeout(refreshTimeline, delay);
  }

  follow(runId, "run");
  readTimeline(el("run-timeline"));
  // durations of a running stage grow; a stage the run stream did not announce still shows up
  setInterval(() => { if (!runFinished) scheduleTimelineRefresh(0); }, TIMELINE_TICK_MS);
})();
