// charts.js: a small hand-drawn line chart on <canvas> for the sageLLM Gateway dashboard.
// No library: several series on a time axis (the last `windowMs`), an auto-scaled y axis
// starting at 0, axis labels and a legend. It is devicePixelRatio aware, redraws when its
// canvas is resized or the colour scheme changes, and leaves gaps where a value is null or
// where samples are missing (a time jump bigger than `gapMs`).

/** Series colours, readable on both the light and the dark background. */
export const PALETTE = [
  '#3b82f6', '#f59e0b', '#10b981', '#ef4444', '#8b5cf6',
  '#06b6d4', '#ec4899', '#84cc16', '#f97316', '#64748b',
];

const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const PAD = { top: 6, right: 10, bottom: 20, left: 6 };
const LEGEND_ROW = 16;

/** A number as a short label: 0, 0.25, 3.5, 120, 1.2k, 3.4M. */
export function formatCompact(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return `${trim((v / 1e6).toFixed(1))}M`;
  if (a >= 1e3) return `${trim((v / 1e3).toFixed(1))}k`;
  if (a >= 100 || a === 0) return String(Math.round(v));
  if (a >= 10) return trim(v.toFixed(1));
  if (a >= 1) return trim(v.toFixed(2));
  return trim(v.toFixed(3));
}

function trim(s) {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** A "nice" tick step (1, 2, 2.5 or 5 times a power of ten) for `range` over ~`count` ticks. */
function niceStep(range, count) {
  const raw = range / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const n = raw / mag;
  const f = n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10;
  return f * mag;
}

/** Y ticks from 0 to at least `max`. */
function yTicks(max) {
  const top = max > 0 && Number.isFinite(max) ? max : 1;
  const step = niceStep(top, 4);
  const ticks = [];
  for (let v = 0; v < top + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function isNum(v) {
  return typeof v === 'number' && Number.isFinite(v);
}

function cssVar(el, name, fallback) {
  const v = getComputedStyle(el).getPropertyValue(name).trim();
  return v || fallback;
}

export class LineChart {
  /**
   * @param {HTMLCanvasElement} canvas sized by CSS (width 100%, a fixed height)
   * @param {{windowMs?: number, gapMs?: number, format?: (v: number) => string}} options
   */
  constructor(canvas, options = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.windowMs = options.windowMs ?? 300_000;
    this.gapMs = options.gapMs ?? 2_500;
    this.format = options.format ?? formatCompact;
    this.data = { t: [], series: [] };
    this.frame = 0;
    this.resizer = new ResizeObserver(() => this.schedule());
    this.resizer.observe(canvas);
    this.scheme = matchMedia('(prefers-color-scheme: dark)');
    this.onScheme = () => this.schedule();
    this.scheme.addEventListener('change', this.onScheme);
  }

  /**
   * New data; drawn at the next animation frame.
   * @param {{t: number[], series: {label: string, color: string, values: (number|null)[]}[]}} data
   */
  setData(data) {
    this.data = data;
    this.schedule();
  }

  /** Sets the gap threshold (e.g. from the feed's interval). */
  setGap(ms) {
    this.gapMs = ms;
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.resizer.disconnect();
    this.scheme.removeEventListener('change', this.onScheme);
  }

  /** Matches the backing store to the CSS size times devicePixelRatio; false if hidden. */
  fit() {
    const rect = this.canvas.getBoundingClientRect();
    if (rect.width < 2 || rect.height < 2) return false;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(rect.width * dpr);
    const h = Math.round(rect.height * dpr);
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.width = rect.width;
    this.height = rect.height;
    return true;
  }

  colors() {
    const c = this.canvas;
    return {
      text: cssVar(c, '--chart-text', '#5d6b7e'),
      grid: cssVar(c, '--chart-grid', '#e6eaf0'),
      axis: cssVar(c, '--chart-axis', '#9aa5b4'),
    };
  }

  draw() {
    if (!this.fit()) return;
    const { ctx } = this;
    const colors = this.colors();
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.font = FONT;
    const legendH = this.drawLegend(colors);
    const { t, series } = this.data;
    const end = t.length ? t[t.length - 1] : Date.now();
    const start = end - this.windowMs;
    const max = this.maxValue(start);
    const ticks = yTicks(max);
    const labels = ticks.map((v) => this.format(v));
    const labelW = Math.max(...labels.map((s) => ctx.measureText(s).width));
    const plot = {
      x: PAD.left + labelW + 6,
      y: PAD.top + legendH,
      w: 0,
      h: 0,
    };
    plot.w = this.width - plot.x - PAD.right;
    plot.h = this.height - plot.y - PAD.bottom;
    if (plot.w < 20 || plot.h < 20) return;
    const top = ticks[ticks.length - 1];
    const sx = (ts) => plot.x + ((ts - start) / this.windowMs) * plot.w;
    const sy = (v) => plot.y + plot.h - (v / top) * plot.h;
    this.drawYAxis(plot, ticks, labels, sy, colors);
    this.drawXAxis(plot, end, sx, colors);
    if (!t.length) {
      this.drawEmpty(plot, colors);
      return;
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.x, plot.y - 1, plot.w + 1, plot.h + 2);
    ctx.clip();
    for (const s of series) this.drawSeries(s, start, sx, sy);
    ctx.restore();
  }

  /** The largest value inside the window, over every series. */
  maxValue(start) {
    let max = 0;
    const { t, series } = this.data;
    for (const s of series) {
      for (let i = 0; i < t.length; i++) {
        const v = s.values[i];
        if (t[i] >= start && isNum(v) && v > max) max = v;
      }
    }
    return max;
  }

  /** Legend entries (swatch, label, latest value) in wrapped rows; returns its height. */
  drawLegend(colors) {
    const { ctx } = this;
    const { series } = this.data;
    if (!series.length) return 0;
    let x = PAD.left;
    let y = PAD.top + 6;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'left';
    for (const s of series) {
      const last = lastValue(s.values);
      const text = last === null ? `${s.label} —` : `${s.label} ${this.format(last)}`;
      const w = 14 + ctx.measureText(text).width + 14;
      if (x > PAD.left && x + w > this.width - PAD.right) {
        x = PAD.left;
        y += LEGEND_ROW;
      }
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2.5;
      ctx.beginPath();
      ctx.moveTo(x, y);
      ctx.lineTo(x + 10, y);
      ctx.stroke();
      ctx.fillStyle = colors.text;
      ctx.fillText(text, x + 14, y);
      x += w;
    }
    return y - PAD.top + LEGEND_ROW - 4;
  }

  drawYAxis(plot, ticks, labels, sy, colors) {
    const { ctx } = this;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ctx.lineWidth = 1;
    ticks.forEach((v, i) => {
      const y = Math.round(sy(v)) + 0.5;
      ctx.strokeStyle = i === 0 ? colors.axis : colors.grid;
      ctx.beginPath();
      ctx.moveTo(plot.x, y);
      ctx.lineTo(plot.x + plot.w, y);
      ctx.stroke();
      ctx.fillStyle = colors.text;
      ctx.fillText(labels[i], plot.x - 6, y);
    });
  }

  /** Minute marks back from the newest sample: "-5m" … "now". */
  drawXAxis(plot, end, sx, colors) {
    const { ctx } = this;
    const minutes = Math.round(this.windowMs / 60_000);
    const every = plot.w < 260 ? 2 : 1;
    ctx.textBaseline = 'top';
    ctx.fillStyle = colors.text;
    ctx.strokeStyle = colors.axis;
    ctx.lineWidth = 1;
    for (let m = 0; m <= minutes; m += every) {
      const x = Math.round(sx(end - m * 60_000)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, plot.y + plot.h);
      ctx.lineTo(x, plot.y + plot.h + 4);
      ctx.stroke();
      ctx.textAlign = m === 0 ? 'right' : m === minutes ? 'left' : 'center';
      ctx.fillText(m === 0 ? 'now' : `-${m}m`, x, plot.y + plot.h + 6);
    }
  }

  drawEmpty(plot, colors) {
    const { ctx } = this;
    ctx.fillStyle = colors.text;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText('waiting for data…', plot.x + plot.w / 2, plot.y + plot.h / 2);
  }

  /** One polyline, broken at nulls and time gaps; lone points drawn as dots. */
  drawSeries(s, start, sx, sy) {
    const { ctx } = this;
    const { t } = this.data;
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = 1.75;
    ctx.lineJoin = 'round';
    ctx.lineCap = 'round';
    let run = [];
    const flush = () => {
      if (run.length === 1) {
        ctx.beginPath();
        ctx.arc(run[0][0], run[0][1], 2, 0, Math.PI * 2);
        ctx.fill();
      } else if (run.length > 1) {
        ctx.beginPath();
        run.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        ctx.stroke();
      }
      run = [];
    };
    for (let i = 0; i < t.length; i++) {
      const v = s.values[i];
      const gap = i > 0 && t[i] - t[i - 1] > this.gapMs;
      if (!isNum(v) || gap) flush();
      if (isNum(v) && t[i] >= start - this.gapMs) run.push([sx(t[i]), sy(v)]);
    }
    flush();
  }
}

function lastValue(values) {
  for (let i = values.length - 1; i >= 0; i--) if (isNum(values[i])) return values[i];
  return null;
}
