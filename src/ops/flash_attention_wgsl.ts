// The head-dim-dependent half of the flash attention kernel, generated: naga turns loop-indexed local arrays
// into memory, so the query rows and output accumulators of a lane are named vec4 variables (q{r}_{i},
// o{r}_{i} for row slot r, vec4 i of the head) and the dot products and weighted sums of one key are
// unrolled. shaders/flash_attention.wgsl (bindings, uniform, address helpers, the algorithm) is compiled in
// front of it.
import { shaderSource } from "../gpu/kernel.ts";

export interface FlashAttentionTiling {
  /** Query rows owned by one lane: every key and value load serves all of them. */
  rowsPerLane: number;
  /** Lanes of a workgroup. */
  workgroupSize: number;
}

type Stream = "text" | "image";

/** What the kernel is generated for: a joint text stream, cross-attention, or masks on a single stream. */
export interface FlashAttentionVariant {
  /** Walk the text keys before the image keys (FLUX dual stream). */
  joint: boolean;
  /** Image queries attend the text keys only (Wan's cross-attention); not with joint or the masks. */
  cross: boolean;
  /** Row n attends keys j <= n only. */
  causal: boolean;
  /** Add score_bias[h, n, j] to every score. */
  scoreBias: boolean;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/**
 * Loads the query row of slot r (row n{r} of the sequence, text rows first; cross-attention: image rows only)
 * times the softmax scale.
 */
function queryRow(r: number, vec4s: number, cross: boolean): string[] {
  const load = (stream: Stream, n: string) => [
    `    let at = view_at(p.q_${stream}_offset, p.q_${stream}_stride, p.${stream}_tokens, b, ${n}, h);`,
    ...range(vec4s).map((i) => `    q${r}_${i} = q_${stream}[at + ${i}u] * p.scale;`),
  ];
  const both = [
    `  if (n${r} < p.text_tokens) {`,
    ...load("text", `n${r}`),
    "  } else {",
    ...load("image", `n${r} - p.text_tokens`),
    "  }",
  ];
  return [
    ...range(vec4s).map((i) => `  var q${r}_${i}: vec4<f32>;`),
    ...(cross ? ["  {", ...load("image", `n${r}`), "  }"] : both),
    ...range(vec4s).map((i) => `  var o${r}_${i} = vec4<f32>();`),
    `  var m${r} = NO_SCORE;`,
    `  var l${r} = 0.0;`,
  ];
}

/** Score of row slot r against key j: the dot product, biased and masked as the variant asks. */
function score(r: number, variant: FlashAttentionVariant): string {
  const dot = `a${r}.x + a${r}.y + a${r}.z + a${r}.w`;
  const biased = variant.scoreBias ? `${dot} + score_bias[bias_row${r} + j]` : dot;
  return variant.causal ? `select(${biased}, NO_SCORE, j > n${r})` : biased;
}

/**
 * The online-softmax walk over every key of one stream for the (b, h) of the workgroup: per key, load its
 * k and v rows once, then for each row slot: score, new running max, rescale factor, weight.
 */
function keyLoop(stream: Stream, vec4s: number, rows: number, variant: FlashAttentionVariant): string[] {
  const tokens = `p.${stream}_tokens`;
  const dims = range(vec4s);
  const slots = range(rows);
  const rowOf = (tensor: "k" | "v") =>
    `    let ${tensor}j = view_at(p.${tensor}_${stream}_offset, p.${tensor}_${stream}_stride, ${tokens}, b, j, h);`;
  return [
    `  for (var j = 0u; j < ${variant.causal ? "key_end" : tokens}; j++) {`,
    rowOf("k"),
    ...dims.map((i) => `    let k${i} = k_${stream}[kj + ${i}u];`),
    ...slots.flatMap((r) => [
      `    var a${r} = q${r}_0 * k0;`,
      ...dims.slice(1).map((i) => `    a${r} = fma(q${r}_${i}, k${i}, a${r});`),
      `    let s${r} = ${score(r, variant)};`,
      `    let m${r}_next = max(m${r}, s${r});`,
      `    let rescale${r} = exp(m${r} - m${r}_next);`,
      `    let w${r} = exp(s${r} - m${r}_next);`,
      `    l${r} = l${r} * rescale${r} + w${r};`,
      `    m${r} = m${r}_next;`,
    ]),
    rowOf("v"),
    ...dims.map((i) => `    let v${i} = v_${stream}[vj + ${i}u];`),
    ...dims.flatMap((i) =>
      slots.map((r) => `    o${r}_${i} = fma(vec4<f32>(w${r}), v${i}, o${r}_${i} * rescale${r});`)
    ),
    "  }",
  ];
}

/** Per-workgroup bounds of the masks: the causal key loop's end and each slot's first bias element. */
function maskBounds(slots: number[], variant: FlashAttentionVariant): string[] {
  return [
    ...(variant.causal
      ? [
        "  // No row of this workgroup attends a key past its last row.",
        "  let key_end = min(total, (wid.x + 1u) * RL * WG);",
      ]
      : []),
    ...(variant.scoreBias ? slots.map((r) => `  let bias_row${r} = (h * total + n${r}) * total;`) : []),
  ];
}

/**
 * Full WGSL of the flash attention kernel for `headDim` (a multiple of 4). `joint` adds the walk over the
 * text keys (without it the text bindings are never read); `cross` walks the text keys instead of the image
 * keys for image queries only; `causal` and `scoreBias` (single stream only) mask the image keys.
 */
export function flashAttentionShader(
  headDim: number,
  tiling: FlashAttentionTiling,
  variant: FlashAttentionVariant,
): string {
  const vec4s = headDim / 4;
  const slots = range(tiling.rowsPerLane);
  const lines = [
    `const D4: u32 = ${vec4s}u;`,
    `const RL: u32 = ${tiling.rowsPerLane}u;`,
    `const WG: u32 = ${tiling.workgroupSize}u;`,
    "",
    "@compute @workgroup_size(WG)",
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {",
    "  let h = wid.y;",
    "  let b = wid.z;",
    `  let total = ${variant.cross ? "p.image_tokens" : "p.text_tokens + p.image_tokens"}; // query rows`,
    "  // Slot r of a lane holds row wid.x*WG*RL + r*WG + lid: neighbouring lanes, neighbouring rows. Slots past",
    "  // the last row compute a copy of it (no divergence inside the key loop) and store nothing.",
    ...slots.map((r) => `  let row${r} = (wid.x * RL + ${r}u) * WG + lid;`),
    ...slots.map((r) => `  let n${r} = min(row${r}, total - 1u);`),
    ...slots.flatMap((r) => queryRow(r, vec4s, variant.cross)),
    ...maskBounds(slots, variant),
    ...(variant.joint || variant.cross ? keyLoop("text", vec4s, tiling.rowsPerLane, variant) : []),
    ...(variant.cross ? [] : keyLoop("image", vec4s, tiling.rowsPerLane, variant)),
    ...slots.flatMap((r) => [
      `  if (row${r} < total) {`,
      `    let at = out_at(total, b, row${r}, h);`,
      `    let norm = 1.0 / l${r};`,
      ...range(vec4s).map((i) => `    out[at + ${i}u] = o${r}_${i} * norm;`),
      "  }",
    ]),
    "}",
  ];
  return `${shaderSource("flash_attention")}\n// generated by src/ops/flash_attention_wgsl.ts\n${
    lines.join("\n")
  }\n`;
}
