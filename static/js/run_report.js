// Charts of the run report page. The data comes from the page's <script id="report-data"
// type="application/json"> block (Django's json_script): no inline code, so a strict
// Content-Security-Policy without 'unsafe-inline' holds.
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const config = {responsive: true, displaylogo: false, displayModeBar: false};  // drag to zoom, double-click to reset
  const drawn = [];
  const MEMBER = "#2851a3", NONMEMBER = "#d97706";

  function layout(xtitle, ytitle, extra) {
    return {margin: {t: 30, r: 10, b: 45, l: 55}, height: 300, legend: {orientation: "h", x: 0, y: 1.02, yanchor: "bottom"},
            xaxis: {title: {text: xtitle}}, yaxis: {title: {text: ytitle}}, ...extra};
  }

  function plot(id, traces, chartLayout) {
    const element = document.getElementById(id);
    if (!element) return;
    if (!traces.length) {
      element.textContent = "No data recorded.";
      element.classList.add("empty");
      return;
    }
    Plotly.newPlot(element, traces, chartLayout, config);
    drawn.push(element);
  }

  function epsilonChart() {
    const series = data.epsilon;
    const traces = [];
    if (series.step.length) {
      traces.push({x: series.step, y: series.epsilon, name: "epsilon spent", mode: "lines"});
      if (typeof series.target_epsilon === "number") {
        const ends = [series.step[0], series.step[series.step.length - 1]];
        traces.push({x: ends, y: [series.target_epsilon, series.target_epsilon], name: "target",
                     mode: "lines", line: {dash: "dash", color: "#667085"}});
      }
    }
    plot("chart-epsilon", traces, layout("step", "epsilon", {yaxis: {title: {text: "epsilon"}, rangemode: "tozero"}}));
  }

  function lossChart() {
    const traces = Object.entries(data.loss).map(([stage, series]) => (
      {x: series.step, y: series.loss, name: data.stage_labels[stage] || stage, mode: "lines"}));
    plot("chart-loss", traces, layout("step", "loss (nats per token)"));
  }

  // precomputed counts over shared bin edges, drawn as bars at the bin centres
  function membershipChart(attack, summary) {
    const histogram = summary.histogram;
    if (!histogram || !histogram.edges || histogram.edges.length < 2) return plot(`chart-membership-${attack}`, [], {});
    const centres = histogram.edges.slice(0, -1).map((edge, i) => (edge + histogram.edges[i + 1]) / 2);
    const widths = histogram.edges.slice(0, -1).map((edge, i) => histogram.edges[i + 1] - edge);
    const bars = (counts, name, color) => ({type: "bar", x: centres, y: counts, width: widths, name,
                                            opacity: 0.6, marker: {color}});
    plot(`chart-membership-${attack}`,
         [bars(histogram.members, "training (members)", MEMBER), bars(histogram.nonmembers, "held-out (non-members)", NONMEMBER)],
         layout("score (log-prob, nats; higher = member)", "records", {barmode: "overlay", bargap: 0}));
  }

  function rocChart(membership) {
    const names = {loss: "loss", min_k: "min-k"};
    const traces = Object.entries(membership).filter(([, s]) => Array.isArray(s.roc) && s.roc.length).map(([attack, s]) => ({
      x: s.roc.map((point) => point[0]), y: s.roc.map((point) => point[1]), mode: "lines",
      name: `${names[attack] || attack} (AUC ${typeof s.auc === "number" ? s.auc.toFixed(3) : "—"})`,
    }));
    if (traces.length) traces.push({x: [0, 1], y: [0, 1], mode: "lines", name: "chance",
                                    line: {dash: "dot", color: "#98a2b3"}});
    plot("chart-roc", traces, layout("false positive rate", "true positive rate",
                                     {xaxis: {title: {text: "false positive rate"}, range: [0, 1]},
                                      yaxis: {title: {text: "true positive rate"}, range: [0, 1]}}));
  }

  epsilonChart();
  lossChart();
  for (const [attack, summary] of Object.entries(data.membership)) membershipChart(attack, summary);
  if (document.getElementById("chart-roc")) rocChart(data.membership);

  // fit the charts to the printed page's width, and back to the window's after printing
  const resize = () => drawn.forEach((element) => Plotly.Plots.resize(element));
  window.addEventListener("beforeprint", resize);
  window.addEventListener("afterprint", resize);
  const printButton = document.getElementById("print-report");
  if (printButton) printButton.addEventListener("click", () => window.print());
})();
