// The fixed 2-D sin-cos position table of diffusers' PatchEmbed (pos_embed_type "sincos"): not stored in
// checkpoints, so computed here in float64 and rounded once, as diffusers does in torch.float64.
// Token n = row * gridW + col. The first half of the width encodes the column, the second half the row
// (diffusers builds its grid with meshgrid(w, h) and calls the first plane "h"); each half is
// [sin(pos * omega_k) ..., cos(pos * omega_k) ...] with omega_k = 10000^(-k / (D / 4)).
export function sincosPositions(
  width: number,
  gridH: number,
  gridW: number,
  baseSize = gridH,
  interpolationScale = 1,
): Float32Array {
  const quarter = width / 4;
  const out = new Float32Array(gridH * gridW * width);
  const omega = Array.from({ length: quarter }, (_, k) => 1 / 10000 ** (k / quarter));
  // Positions are float32 in diffusers (arange / (grid / base) / scale) before the float64 product.
  const position = (i: number, grid: number) =>
    Math.fround(Math.fround(i / (grid / baseSize)) / interpolationScale);
  for (let r = 0; r < gridH; r++) {
    for (let c = 0; c < gridW; c++) {
      const row = out.subarray((r * gridW + c) * width, (r * gridW + c + 1) * width);
      const [pc, pr] = [position(c, gridW), position(r, gridH)];
      for (let k = 0; k < quarter; k++) {
        row[k] = Math.sin(pc * omega[k]);
        row[quarter + k] = Math.cos(pc * omega[k]);
        row[2 * quarter + k] = Math.sin(pr * omega[k]);
        row[3 * quarter + k] = Math.cos(pr * omega[k]);
      }
    }
  }
  return out;
}
