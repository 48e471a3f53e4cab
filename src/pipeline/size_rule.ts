// The sizes a model that draws more than its own may be asked for (FLUX): both sides positive multiples of
// `multiple` (the pixels of one packed token's side) and no more than `maxPixels` in all (the image tokens the
// scheduler's shift is calibrated for).
export interface SizeRule {
  multiple: number;
  maxPixels: number;
}

export function fitsSizeRule(size: { width: number; height: number }, rule: SizeRule): boolean {
  return [size.width, size.height].every((n) => n > 0 && n % rule.multiple === 0) &&
    size.width * size.height <= rule.maxPixels;
}
