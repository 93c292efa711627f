// Shared by the browser scenarios (tests/it/web.rs runs them): Debian's chromium driven by
// playwright-core (browsers cannot be downloaded here), a logged-in page of the app, and
// the way a scenario reports: JSON on stdout for the Rust side to check against the server,
// a non-zero exit with the reason on failure.
import { chromium } from "playwright-core";

export const server = process.env.ZHIBAN_SERVER;
export const password = process.env.ZHIBAN_PASSWORD;

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    // Root in CI containers: chromium's sandbox needs user namespaces it may not get.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

/** A phone-sized page of the app, logged in as `username`, its service worker in control. */
export async function phone(browser, username, { lang, permissions = [] } = {}) {
  const context = await browser.newContext({
    permissions,
    viewport: { width: 360, height: 640 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    locale: "zh-CN",
  });
  const page = await context.newPage();
  page.on("pageerror", error => console.error(`[${username}] page error:`, error.message));
  page.on("console", message => {
    if (message.type() === "error" || process.env.TEST_LOG) console.error(`[${username}] ${message.text()}`);
  });
  if (lang === "en") await page.addInitScript(() => localStorage.setItem("zhiban.lang", "en"));
  await page.goto(server);
  await page.fill("input[name=username]", username);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await page.waitForSelector("nav#tabs button");
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 20000 });
  await connected(page);
  return { context, page };
}

export async function connected(page) {
  await page.waitForSelector('#net[data-state="online"]', { timeout: 20000 });
}

/** Runs `scenario`, printing its result as JSON; exits non-zero with the reason if it fails. */
export async function run(scenario) {
  const browser = await launch();
  try {
    const result = await scenario(browser);
    process.stdout.write(`${JSON.stringify(result ?? {})}\n`);
  } catch (error) {
    console.error(error?.stack ?? String(error));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
  // A scenario reading stdin would keep Node alive.
  process.stdout.write("", () => process.exit());
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}
