// Starts the live stream of a single job's page. Its settings come from the data- attributes of
// #job-page-config (no inline script: the Content-Security-Policy forbids 'unsafe-inline').
"use strict";
(() => {
  const config = document.getElementById("job-page-config").dataset;
  KsgJobStream.start({jobId: Number(config.jobId), chart: "metric-chart", log: "event-log",
                      status: "job-status", error: "job-error", state: "stream-state",
                      epsilonChart: config.epsilonChart || null});
})();
