// The note a request gets when its prompt was longer than a text encoder takes (FluxPipeline logs a warning
// then; WanPipeline truncates silently, which a user should still be told).

/** [] when nothing was dropped, else one note naming the encoder, the prompt's tokens and the limit. */
export function truncationNotes(
  model: string,
  ids: { truncated: boolean; tokens: number },
  limit: number,
): string[] {
  if (!ids.truncated) return [];
  return [`prompt truncated for ${model}: ${ids.tokens} tokens, the limit is ${limit}; the rest was dropped`];
}
