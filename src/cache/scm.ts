// Step computation masks (SCM, cache-strategies.md): mask[step] = 1 forces a full compute, 0 lets the cache
// decide (policy dynamic) or caches outright (policy static). The named presets are bins for 28 steps.

export const SCM_PRESETS = {
  slow: { compute: [8, 3, 3, 2, 1, 1], cache: [1, 2, 2, 2, 3] },
  medium: { compute: [6, 2, 2, 2, 2, 1], cache: [1, 3, 3, 3, 3] },
  fast: { compute: [6, 1, 1, 1, 1, 1], cache: [1, 3, 4, 5, 4] },
  ultra: { compute: [4, 1, 1, 1, 1], cache: [2, 5, 6, 7] },
} as const;

export type ScmPreset = keyof typeof SCM_PRESETS;
export const SCM_PRESET_NAMES = Object.keys(SCM_PRESETS) as ScmPreset[];

/** The step count the preset bins are written for. */
export const SCM_PRESET_STEPS = 28;

/**
 * Bins alternate compute, cache, compute, ... For another step count every bin boundary (the running sum)
 * is scaled by steps / 28 and rounded, so the mask always has exactly `steps` entries and the 28-step mask
 * is the bins themselves; at very small step counts a bin may round away to nothing.
 */
export function scmMask(preset: ScmPreset, steps: number): (0 | 1)[] {
  const { compute, cache } = SCM_PRESETS[preset];
  const bins: [number, 0 | 1][] = [];
  compute.forEach((n, i) => {
    bins.push([n, 1]);
    if (i < cache.length) bins.push([cache[i], 0]);
  });
  const mask: (0 | 1)[] = [];
  let boundary = 0;
  for (const [length, value] of bins) {
    boundary += length;
    const end = Math.round((boundary * steps) / SCM_PRESET_STEPS);
    while (mask.length < end) mask.push(value);
  }
  return mask;
}
