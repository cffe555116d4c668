// Per-round analytics with chart.js: text agreement (mean cosine of the answers'
// embeddings), answer agreement (the leading extracted answer's share; not drawn for
// open-ended answers), a consensus vote's accepted share and the centroid shift (lines);
// cluster count, flips and filtered answers (bars).
import { isVoteRound } from "./state.js";
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from "chart.js";

Chart.register(LineController, LineElement, PointElement, BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip, Filler);
Chart.defaults.color = "#9aa4b2";
Chart.defaults.borderColor = "rgba(148,163,184,0.14)";
Chart.defaults.font.family = "Inter, system-ui, -apple-system, Segoe UI, Roboto, sans-serif";
Chart.defaults.font.size = 11;

const legend = { position: "bottom", labels: { boxWidth: 10, boxHeight: 10, usePointStyle: true, padding: 12 } };

export class RoundCharts {
  constructor(agreementCanvas, activityCanvas) {
    this.agreement = new Chart(agreementCanvas, {
      type: "line",
      data: {
        labels: [],
        datasets: [
          { key: "agreement", label: "Text agreement", data: [], borderColor: "#4cc9f0", backgroundColor: "rgba(76,201,240,0.15)", fill: true, tension: 0.3, spanGaps: true, yAxisID: "y" },
          { key: "answer_agreement", label: "Answer agreement", data: [], borderColor: "#f72585", backgroundColor: "#f72585", pointStyle: "rectRot", pointRadius: 4, tension: 0.3, spanGaps: false, yAxisID: "y" },
          { key: "accepted", label: "Accepted (vote)", data: [], borderColor: "#34d399", backgroundColor: "#34d399", pointStyle: "triangle", pointRadius: 5, showLine: false, yAxisID: "y" },
          { key: "shift", label: "Centroid shift", data: [], borderColor: "#ff9f43", backgroundColor: "#ff9f43", borderDash: [5, 4], tension: 0.3, spanGaps: true, yAxisID: "y1" },
        ],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: { duration: 250 },
        interaction: { mode: "index", intersect: false },
        clip: 8, // a point at 0 or 1 is drawn whole, not cut by the axis
        plugins: {
          legend: { ...legend, labels: { ...legend.labels, filter: (item, data) => this.shown(data.datasets[item.datasetIndex]) } },
          tooltip: { filter: (c) => c.parsed.y != null, callbacks: { label: (c) => `${c.dataset.label}: ${c.parsed.y.toFixed(3)}` } },
        },
        scales: {
          y: { min: 0, max: 1, title: { display: true, text: "agreement / share" }, ticks: { stepSize: 0.25, callback: (v) => `${Math.round(v * 100)}%` } },
          y1: { position: "right", beginAtZero: true, suggestedMax: 0.5, grid: { drawOnChartArea: false }, title: { display: true, text: "shift" } },
        },
      },
    });
    this.activity = new Chart(activityCanvas, {
      type: "bar",
      data: {
        labels: [],
        datasets: [
          { key: "clusters", label: "Clusters", data: [], backgroundColor: "#b794f6", borderRadius: 3 },
          { key: "flips", label: "Flips", data: [], backgroundColor: "#80ed99", borderRadius: 3 },
          { key: "filtered", label: "Filtered (echo)", data: [], backgroundColor: "#6b7280", borderRadius: 3 },
        ],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: { duration: 250 },
        interaction: { mode: "index", intersect: false },
        plugins: { legend },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
  }

  update(run) {
    const rounds = [...run.rounds].sort((a, b) => a - b);
    const rows = rounds.map((r) => run.roundDone.get(r) ?? {});
    const labels = rounds.map((r) => `R${r}`);
    const vote = rounds.map((r) => isVoteRound(run, r));
    const noMap = rounds.map((r, i) => vote[i] || run.roundStarts.get(r)?.stage === "critique");
    const num = (x) => (x == null || Number.isNaN(+x) ? null : +x);
    const series = {
      // a vote round's `agreement` is its accepted share, not a text measure: charted as such
      agreement: rows.map((d, i) => (vote[i] ? null : num(d.agreement))),
      answer_agreement: rows.map((d, i) => (vote[i] ? null : num(d.answer_agreement))),
      accepted: rows.map((d, i) => (vote[i] ? num(d.vote?.share ?? d.agreement) : null)),
      shift: rows.map((d) => num(d.shift)),
      clusters: rows.map((d, i) => (noMap[i] ? null : Array.isArray(d.clusters) ? d.clusters.length : 0)),
      flips: rows.map((d) => (Array.isArray(d.flips) ? d.flips.length : 0)),
      filtered: rows.map((d) => Object.keys(d.filtered ?? {}).length),
    };
    for (const chart of [this.agreement, this.activity]) {
      chart.data.labels = labels;
      for (const ds of chart.data.datasets) ds.data = series[ds.key];
      chart.update();
    }
  }

  /** A line with nothing to draw (no vote rounds, no extractable answers) stays out of the legend. */
  shown(ds) {
    return ds.key === "agreement" || ds.key === "answer_agreement" || ds.data.some((v) => v != null);
  }

  /** chart name -> number of data points, read from the charts themselves. */
  points() {
    const out = {};
    for (const chart of [this.agreement, this.activity]) for (const ds of chart.data.datasets) out[ds.key] = ds.data.length;
    return out;
  }
}
