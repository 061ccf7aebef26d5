// Live view of one job: a websocket to /ws/jobs/<id>/ that resumes from the last seq it saw,
// a Plotly chart of every numeric metric against its step, and a log of the events.
"use strict";
const KsgJobStream = (() => {
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const MAX_LOG_ITEMS = 300;

  function start(opts) {
    const el = (id) => document.getElementById(id);
    const chart = el(opts.chart), log = el(opts.log), status = el(opts.status);
    const error = el(opts.error), state = el(opts.state);
    const traces = new Map();  // metric name -> trace index
    let lastSeq = 0, retryDelay = 500, finished = false;

    Plotly.newPlot(chart, [], {
      margin: {t: 10, r: 10, b: 40, l: 50}, xaxis: {title: {text: "step"}},
      legend: {orientation: "h"}, height: 320,
    }, {responsive: true, displaylogo: false});

    function plotMetric(payload) {
      const x = payload.step ?? lastSeq;
      for (const [name, value] of Object.entries(payload)) {
        if (name === "step" || typeof value !== "number") continue;
        if (!traces.has(name)) {
          traces.set(name, traces.size);
          Plotly.addTraces(chart, {x: [x], y: [value], name, mode: "lines+markers"});
        } else {
          Plotly.extendTraces(chart, {x: [[x]], y: [[value]]}, [traces.get(name)]);
        }
      }
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
