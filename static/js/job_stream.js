// Live view of jobs over websockets. `connect` follows one job's stream /ws/jobs/<id>/: it
// resumes from the last seq it saw (the server replays what was missed from the database) and
// reconnects with a doubling delay (0.5 s up to 10 s) until the job is finished. `start` is the
// single-job page built on it: a Plotly chart of every numeric metric against its step, the
// epsilon chart, and a log of the events.
"use strict";
const KsgJobStream = (() => {
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const MAX_LOG_ITEMS = 300;
  const SECONDARY_METRICS = new Set(["batch_size", "seconds"]);  // in the legend, hidden until clicked
  const FIRST_RETRY_MS = 500, MAX_RETRY_MS = 10000;

  // opts: jobId, onEvent(event), onState(state) with state one of "connecting", "live",
  // "reconnecting", "finished", "not allowed". Returns {close(), lastSeq()}.
  function connect(opts) {
    let lastSeq = 0, retryDelay = FIRST_RETRY_MS, finished = false, closed = false, socket = null, timer = null;
    const setState = (state) => { if (opts.onState) opts.onState(state); };

    function handle(event) {
      if (event.seq <= lastSeq) return;
      lastSeq = event.seq;
      if (event.kind === "status" && TERMINAL.has(event.payload.status)) finished = true;
      opts.onEvent(event);
    }

    function open() {
      timer = null;
      const scheme = window.location.protocol === "https:" ? "wss" : "ws";
      socket = new WebSocket(`${scheme}://${window.location.host}/ws/jobs/${opts.jobId}/?last_seq=${lastSeq}`);
      socket.onopen = () => { setState("live"); retryDelay = FIRST_RETRY_MS; };
      socket.onmessage = (message) => handle(JSON.parse(message.data));
      socket.onclose = (close) => {
        if (closed) return;
        if (close.code === 4401 || close.code === 4403) { setState("not allowed"); return; }
        if (finished) { setState("finished"); return; }
        setState("reconnecting");
        timer = setTimeout(open, retryDelay);
        retryDelay = Math.min(retryDelay * 2, MAX_RETRY_MS);
      };
    }

    setState("connecting");
    open();
    return {
      close() {
        closed = true;
        if (timer) clearTimeout(timer);
        if (socket) socket.close();
        setState(finished ? "finished" : "closed");
      },
      lastSeq: () => lastSeq,
    };
  }

  const STATE_TEXT = {connecting: "connecting…", live: "live", reconnecting: "reconnecting…", finished: "finished",
                      "not allowed": "not allowed", closed: "closed"};

  // The connection indicator: text for people, a class for the colour, aria-live for screen readers.
  function showState(element, state) {
    if (!element) return;
    element.textContent = STATE_TEXT[state] || state;
    element.className = "conn conn-" + state.replace(" ", "-");
  }

  function start(opts) {
    const el = (id) => document.getElementById(id);
    const chart = el(opts.chart), log = el(opts.log), status = el(opts.status);
    const error = el(opts.error), state = el(opts.state);
    const epsilonChart = opts.epsilonChart ? el(opts.epsilonChart) : null;
    let lastSeq = 0;
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
      const attempts = document.getElementById("job-attempts");  // a new attempt's status names it
      if (attempts && Number.isInteger(payload.attempt)) attempts.textContent = payload.attempt;
      if (payload.error) { error.textContent = payload.error; error.hidden = false; }
      if (TERMINAL.has(payload.status)) {
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

    const stream = connect({
      jobId: opts.jobId,
      onState: (value) => showState(state, value),
      onEvent: (event) => {
        lastSeq = event.seq;
        appendLog(event);
        if (event.kind === "metric") plotMetric(event.payload);
        else if (event.kind === "epsilon") plotEpsilon(event.payload);
        else if (event.kind === "status") {
          showStatus(event.payload);
          // the terminal status is the job's last event: nothing more will come
          if (TERMINAL.has(event.payload.status)) setTimeout(() => stream.close(), 0);
        }
      },
    });
  }
  return {start, connect, showState, TERMINAL};
})();
