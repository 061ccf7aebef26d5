// Live view of one job: a websocket to /ws/jobs/<id>/ that resumes from the last seq it saw,
// a Plotly chart of every numeric metric against its step, and a log of the events.
"use strict";
const KsgJobStream = (() => {
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const MAX_LOG_ITEMS = 300;
  const SECONDARY_METRICS = new Set(["batch_size", "seconds"]);  // in the legend, hidden until clicked

  function start(opts) {
    const el = (id) => document.getElementById(id);
    const chart = el(opts.chart), log = el(opts.log), status = el(opts.status);
    const error = el(opts.error), state = el(opts.state);
    const epsilonChart = opts.epsilonChart ? el(opts.epsilonChart) : null;
    let lastSeq = 0, retryDelay = 500, finished = false;
    const layout = (ytitle) => ({
      margin: {t: 10, r: 10, b: 40, l: 55}, xaxis: {title: {text: "step"}}, yaxis: {title: {text: ytitle}},
      legend: {orientation: "h"}, height: 300,
    });
    const config = {responsive: true, displaylogo: false};
    const series = new Map();  // chart id + name -> trace index

    Plotly.newPlot(chart, [], layout("value"), config);
    if (epsilonChart) Plotly.newPlot(epsilonChart, [], layout("epsilon"), config);

    function extend(target, name, x, y, style) {
      const key = target.id + ":" + name;
      if (!series.has(key)) {
        series.set(key, target.data.length);
        Plotly.addTraces(target, {x: [x], y: [y], name, mode: "lines+markers", ...style});
      } else {
        Plotly.extendTraces(target, {x: [[x]], y: [[y]]}, [series.get(key)]);
      }
    }

    function plotMetric(payload) {
      const x = payload.step ?? lastSeq;
      for (const [name, value] of Object.entries(payload)) {
        if (name === "step" || typeof value !== "number") continue;
        extend(chart, name, x, value, SECONDARY_METRICS.has(name) ? {visible: "legendonly"} : {});
      }
    }

    // epsilon spent once each step's noise is drawn, against the job's target
    function plotEpsilon(payload) {
      if (!epsilonChart || typeof payload.epsilon !== "number") return;
      extend(epsilonChart, "epsilon spent", payload.step, payload.epsilon, {});
      extend(epsilonChart, "target", payload.step, payload.target_epsilon, {mode: "lines", line: {dash: "dash"}});
    }

    function showStatus(payload) {
      status.textContent = payload.status;
      status.className = "status status-" + payload.status;
      if (payload.error) { error.textContent = payload.error; error.hidden = false; }
      if (TERMINAL.has(payload.status)) {
        finished = true;
        const cancel = document.getElementById("cancel-form");
        if (cancel) cancel.remove();
        refreshArtifacts();
      }
    }

    function refreshArtifacts() {
      fetch(window.location.href, {credentials: "same-origin"}).then((r) => r.text()).then((html) => {
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("artifacts");
        if (fresh) document.getElementById("artifacts").innerHTML = fresh.innerHTML;
      });
    }

    function appendLog(event) {
      const item = document.createElement("li");
      item.dataset.seq = event.seq;
      item.textContent = `#${event.seq} ${event.time.slice(11, 19)} ${event.kind} ${JSON.stringify(event.payload)}`;
      log.prepend(item);
      while (log.children.length > MAX_LOG_ITEMS) log.lastChild.remove();
    }

    function handle(event) {
      if (event.seq <= lastSeq) return;
      lastSeq = event.seq;
      appendLog(event);
      if (event.kind === "metric") plotMetric(event.payload);
      else if (event.kind === "epsilon") plotEpsilon(event.payload);
      else if (event.kind === "status") showStatus(event.payload);
    }

    function connect() {
      const scheme = window.location.protocol === "https:" ? "wss" : "ws";
      const socket = new WebSocket(`${scheme}://${window.location.host}/ws/jobs/${opts.jobId}/?last_seq=${lastSeq}`);
      socket.onopen = () => { state.textContent = "live"; retryDelay = 500; };
      socket.onmessage = (message) => handle(JSON.parse(message.data));
      socket.onclose = (close) => {
        if (close.code === 4401 || close.code === 4403) { state.textContent = "not allowed"; return; }
        state.textContent = finished ? "finished" : "reconnecting…";
        if (!finished) setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 10000);
      };
    }
    connect();
  }
  return {start};
})();
