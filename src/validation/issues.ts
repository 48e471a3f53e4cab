// zod issues as the one-line messages every front end prints: "steps: steps must be in 1..1000".
import type { z } from "zod";

export function formatIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".") || "request"}: ${i.message}`).join("; ");
}
