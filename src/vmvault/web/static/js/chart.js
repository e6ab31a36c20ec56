// The dashboard's chart of the last days, drawn as inline SVG: a bar per day (completed
// backups, failed ones stacked on top) and, beside it, the bytes each day added to the vault.
import { svg, bytes } from "./ui.js";

const W = 520, H = 220, PAD = { l: 58, r: 10, t: 14, b: 30 };

function frame(label, max, fmt) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label });
  const ih = H - PAD.t - PAD.b;
  for (const f of [0, 0.5, 1]) {
    const y = PAD.t + ih * (1 - f);
    root.append(svg("line", { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: "grid" }),
      svg("text", { x: PAD.l - 6, y: y + 4, class: "axis", "text-anchor": "end" }, fmt(max * f)));
  }
  return root;
}

function bars(root, days, series, max) {
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  const step = iw / Math.max(days.length, 1), bw = Math.max(step * 0.6, 2);
  days.forEach((d, i) => {
    let y = PAD.t + ih;
    const x = PAD.l + i * step + (step - bw) / 2;
    for (const k of series) {
      const v = d[k.key] || 0;
      const bh = (v / max) * ih;
      y -= bh;
      if (v > 0) {
        root.append(svg("rect", { x, y, width: bw, height: bh, class: k.cls },
          svg("title", {}, `${d.day}: ${k.fmt ? k.fmt(v) : v} ${k.label}`)));
      }
    }
    if (days.length <= 16 && ((days.length - 1 - i) % 2 === 0 || days.length <= 8)) {
      root.append(svg("text", { x: x + bw / 2, y: H - PAD.b + 16, class: "axis", "text-anchor": "middle" },
        d.day.slice(5)));
    }
  });
}

export function backupsChart(daily) {
  const days = daily || [];
  const top = Math.max(0, ...days.map((d) => (d.backups || 0) + (d.failed || 0)));
  const max = Math.max(2, top + (top % 2)); // even: the middle grid line is a whole number
  const root = frame("Backup jobs per day: completed and failed", max,
    (v) => Math.round(v));
  bars(root, days, [
    { key: "backups", cls: "bar-ok", label: "backups completed" },
    { key: "failed", cls: "bar-bad", label: "backups failed" },
  ], max);
  return root;
}

export function bytesChart(daily) {
  const days = daily || [];
  const max = Math.max(1, ...days.map((d) => d.bytes_new || 0));
  const root = frame("New bytes stored per day", max, (v) => bytes(v));
  bars(root, days, [{ key: "bytes_new", cls: "bar-info", label: "new bytes stored", fmt: bytes }], max);
  return root;
}
