// Line and bar charts with Chart.js (bundled; only the parts used are registered).
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
  type ChartDataset,
} from "chart.js";

import { h } from "./dom";

Chart.register(BarController, BarElement, CategoryScale, Filler, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip);

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

export interface Series {
  label: string;
  data: (number | null)[];
  kind?: "line" | "bar";
  dashed?: boolean;
}

const live = new Set<Chart>();

/** Destroy the charts of the page being left (each holds a canvas and listeners). */
export function destroyCharts(): void {
  for (const c of live) c.destroy();
  live.clear();
}

export function chart(title: string, labels: string[], series: Series[], testid: string, yTitle = ""): HTMLElement {
  const canvas = h("canvas", { "aria-label": title, role: "img" });
  const box = h("div", { class: "chart", "data-testid": testid }, h("h4", {}, title), h("div", { class: "chart-canvas" }, canvas));
  const datasets = series.map((s, i) => {
    const color = COLORS[i % COLORS.length];
    const base = { label: s.label, data: s.data, borderColor: color, backgroundColor: color + "55" };
    if (s.kind === "bar") return { ...base, type: "bar" as const } as ChartDataset<"bar", (number | null)[]>;
    return {
      ...base,
      type: "line" as const,
      borderDash: s.dashed ? [6, 4] : [],
      spanGaps: true,
      pointRadius: 2,
      tension: 0.2,
    } as ChartDataset<"line", (number | null)[]>;
  });
  const c = new Chart(canvas, {
    type: "line",
    data: { labels, datasets: datasets as ChartDataset<"line", (number | null)[]>[] },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      scales: { y: { beginAtZero: true, title: { display: !!yTitle, text: yTitle } }, x: { ticks: { maxTicksLimit: 12 } } },
    },
  });
  live.add(c);
  return box;
}
