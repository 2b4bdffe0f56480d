// A small live line chart on a <canvas>, drawn by hand: one line per series (a channel's
// messages per second), the last `capacity` samples, with a legend. No library.

const COLORS = ["#3b5bdb", "#2b8a3e", "#e8590c", "#ae3ec9", "#0c8599", "#c92a2a", "#5c940d"];

export class RateChart {
  constructor(canvas, { capacity = 60, series = 5 } = {}) {
    this.canvas = canvas;
    this.capacity = capacity;
    this.maxSeries = series;
    this.samples = []; // [{t, values: Map(name -> rate)}]
    this.colors = new Map();
  }

  push(t, values) {
    this.samples.push({ t, values: new Map(values) });
    if (this.samples.length > this.capacity) this.samples.shift();
    this.draw();
  }

  _series() {
    // The busiest channels over the window, each keeping its colour while it is shown.
    const totals = new Map();
    for (const { values } of this.samples) {
      for (const [name, rate] of values) totals.set(name, (totals.get(name) || 0) + rate);
    }
    const names = [...totals].filter(([, total]) => total > 0).sort((a, b) => b[1] - a[1])
      .slice(0, this.maxSeries).map(([name]) => name);
    for (const name of names) {
      if (!this.colors.has(name)) {
        const used = new Set(this.colors.values());
        this.colors.set(name, COLORS.find((c) => !used.has(c)) || COLORS[this.colors.size % COLORS.length]);
      }
    }
    for (const name of [...this.colors.keys()]) if (!names.includes(name)) this.colors.delete(name);
    return names;
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const names = this._series();
    const left = 44, right = 10, top = 10, bottom = 22 + 16 * Math.ceil(names.length / 3);
    const plotW = Math.max(10, width - left - right);
    const plotH = Math.max(10, height - top - bottom);
    let peak = 0;
    for (const { values } of this.samples) for (const name of names) peak = Math.max(peak, values.get(name) || 0);
    const ceiling = niceCeiling(peak);

    g.font = "11px system-ui, sans-serif";
    g.strokeStyle = "#e3e6eb";
    g.fillStyle = "#667085";
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let i = 0; i <= 4; i += 1) {
      const y = top + plotH - (plotH * i) / 4;
      g.beginPath();
      g.moveTo(left, Math.round(y) + 0.5);
      g.lineTo(left + plotW, Math.round(y) + 0.5);
      g.stroke();
      g.fillText(formatRate((ceiling * i) / 4), left - 6, y);
    }
    g.textAlign = "left";
    g.textBaseline = "top";
    g.fillText(`msg/s · last ${this.capacity} samples`, left, top + plotH + 4);

    if (!names.length) {
      g.textAlign = "center";
      g.textBaseline = "middle";
      g.fillText("no publications yet", left + plotW / 2, top + plotH / 2);
      return;
    }
    const step = plotW / Math.max(1, this.capacity - 1);
    const offset = this.capacity - this.samples.length;
    g.lineWidth = 2;
    g.lineJoin = "round";
    for (const name of names) {
      g.strokeStyle = this.colors.get(name);
      g.fillStyle = this.colors.get(name);
      if (this.samples.length === 1) {
        // One sample is a point, not yet a line.
        const y = top + plotH - (plotH * (this.samples[0].values.get(name) || 0)) / ceiling;
        g.beginPath();
        g.arc(left + offset * step, y, 3, 0, 2 * Math.PI);
        g.fill();
        continue;
      }
      g.beginPath();
      this.samples.forEach(({ values }, i) => {
        const x = left + (offset + i) * step;
        const y = top + plotH - (plotH * (values.get(name) || 0)) / ceiling;
        if (i === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      });
      g.stroke();
    }
    // Legend, three per line under the plot.
    g.textBaseline = "middle";
    names.forEach((name, i) => {
      const x = left + (i % 3) * (plotW / 3);
      const y = top + plotH + 24 + Math.floor(i / 3) * 16;
      g.fillStyle = this.colors.get(name);
      g.fillRect(x, y - 4, 10, 8);
      g.fillStyle = "#1d2330";
      const label = name.length > 28 ? `${name.slice(0, 27)}…` : name;
      g.fillText(label, x + 14, y);
    });
  }
}

function niceCeiling(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const factor of [1, 2, 2.5, 5, 10]) if (factor * power >= value) return factor * power;
  return 10 * power;
}

function formatRate(value) {
  return value >= 10 ? value.toFixed(0) : value >= 1 ? value.toFixed(1) : value.toFixed(2);
}
