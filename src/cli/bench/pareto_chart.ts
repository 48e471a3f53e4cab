// bench:pareto's chart: PSNR against speedup, one dashed line per strategy family through its swept points on
// the tuning seeds, the points kept for the held-out seeds as filled marks with their timing spread as a
// horizontal bar, drawn by Vega-Lite into a standalone SVG (no browser, no canvas).
import * as vega from "vega";
import * as vl from "vega-lite";

export interface ChartPoint {
  family: string;
  name: string;
  /** Which pass measured it: every swept point on the tuning seeds, the kept ones on the held-out seeds. */
  set: "tuning" | "held-out";
  speedup: number;
  min: number;
  max: number;
  psnr: number;
}

/** PSNR is capped for drawing: the baseline's infinite PSNR has no place on a finite axis. */
const PSNR_CAP = 60;

export async function paretoSvg(points: readonly ChartPoint[], title: string): Promise<string> {
  const values = points.map((p) => ({ ...p, psnr: Math.min(p.psnr, PSNR_CAP) }));
  const x = {
    field: "speedup",
    type: "quantitative",
    title: "speedup (median of repeats)",
    scale: { zero: false },
  };
  const y = {
    field: "psnr",
    type: "quantitative",
    title: "PSNR dB vs uncached (held-out)",
    scale: { zero: false },
  };
  const color = { field: "family", type: "nominal", title: "strategy" };
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title,
    width: 640,
    height: 400,
    data: { values },
    layer: [
      {
        transform: [{ filter: "datum.set === 'tuning'" }],
        mark: { type: "line", point: true, strokeDash: [4, 3], opacity: 0.6 },
        encoding: { x, y, color, order: { field: "speedup" } },
      },
      {
        transform: [{ filter: "datum.set === 'held-out'" }],
        mark: { type: "point", filled: true, size: 90, shape: "diamond" },
        encoding: { x, y, color },
      },
      {
        transform: [{ filter: "datum.set === 'held-out'" }],
        mark: { type: "rule" },
        encoding: { x: { ...x, field: "min" }, x2: { field: "max" }, y, color },
      },
    ],
  } as vl.TopLevelSpec;
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
