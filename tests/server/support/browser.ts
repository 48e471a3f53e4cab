// What the playground's browser tests share: Debian's headless Chromium through puppeteer-core (failing, with
// the fix, when it is missing), typing into the page as a user does, and waiting for Generate to end.
import puppeteer, { type Browser, type Page } from "puppeteer-core";

const CHROMIUM = "/usr/bin/chromium";
const RESULT_TIMEOUT_MS = 240_000;

export async function requireChromium(): Promise<string> {
  try {
    await Deno.stat(CHROMIUM);
    return CHROMIUM;
  } catch {
    throw new Error(
      `${CHROMIUM} is missing: the playground browser test needs Debian's Chromium. ` +
        "Install it with `apt-get install -y chromium` (.ci/run does this).",
    );
  }
}

export async function launch(executablePath: string): Promise<Browser> {
  return await puppeteer.launch({
    executablePath,
    headless: true,
    // As root Chromium needs --no-sandbox; the rest keeps it from reaching for Google's hosts, which this
    // closed network refuses (and which would log errors unrelated to the page).
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Types into inputs and picks select options the way a user does. */
export async function fill(page: Page, fields: Record<string, string>): Promise<void> {
  for (const [id, value] of Object.entries(fields)) await page.locator(`#${id}`).fill(value);
}

// Evaluated in the page, where the DOM lives (this file is type-checked without the DOM library).
const RESULT_OR_ERROR_SHOWN =
  `document.getElementById("psnr").textContent !== "-" || document.getElementById("error").textContent !== ""`;

export async function clickGenerateAndWait(page: Page): Promise<void> {
  await page.click("#generate");
  await page.waitForFunction(RESULT_OR_ERROR_SHOWN, { timeout: RESULT_TIMEOUT_MS, polling: 250 });
}

export const text = (page: Page, selector: string) => page.$eval(selector, (el) => el.textContent ?? "");

export const hidden = (page: Page, id: string) =>
  page.$eval(`#${id}`, (el) => (el as unknown as { hidden: boolean }).hidden);

/** An <img>'s decoded size. */
export const naturalSize = (page: Page, id: string) =>
  page.$eval(`#${id}`, (img) => {
    const { naturalWidth, naturalHeight } = img as unknown as { naturalWidth: number; naturalHeight: number };
    return [naturalWidth, naturalHeight];
  });

/** Console errors and uncaught page errors, collected from now on. */
export function consoleErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(String(error)));
  return errors;
}
