// The phone app's numbers, for tests/benches/web.rs (which runs the server and the stand-in
// push service): a cold start offline under 4× CPU throttling, a tap on 紧急报告 until the
// report is in IndexedDB, and (driven by the bench line by line) pushes delivered to the
// leader's service worker until their notification is shown.
import { createInterface } from "node:readline";

import { check, phone, run, server } from "./browser.mjs";

const rounds = Number(process.env.ROUNDS ?? 10);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = value => process.stdout.write(`${JSON.stringify(value)}\n`);

await run(async browser => {
  // Cold start: the app installed by an earlier visit, opened with no network on a slow phone.
  const field = await phone(browser, process.env.FIELD_USER);
  await field.context.setOffline(true);
  const coldStartMs = [];
  for (let i = 0; i < rounds; i++) {
    const page = await field.context.newPage();
    const cdp = await field.context.newCDPSession(page);
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: 4 });
    const started = Date.now();
    await page.goto(server);
    await page.waitForSelector("#sos");
    coldStartMs.push(Date.now() - started);
    await page.close();
  }

  // Tap → in IndexedDB (the app's own measure ends when the write is flushed).
  const tapToSavedMs = [];
  for (let i = 0; i < rounds; i++) {
    await field.page.goto(`${server}/#/report`);
    await field.page.waitForSelector("#sos");
    await field.page.click("#sos");
    await field.page.waitForSelector("form.card");
    const measure = await field.page.evaluate(() => {
      const [saved] = performance.getEntriesByName("zhiban:sos-saved");
      performance.clearMeasures("zhiban:sos-saved");
      return saved?.duration;
    });
    check(measure !== undefined, "the app measured the save");
    tapToSavedMs.push(measure);
  }
  await field.context.close();

  // Pushes: the bench registers the leader page's subscription, then hands over each push.
  const leader = await phone(browser, process.env.LEADER_USER, { permissions: ["notifications"] });
  const cdp = await leader.context.newCDPSession(leader.page);
  const registrations = new Map();
  cdp.on("ServiceWorker.workerRegistrationUpdated", ({ registrations: updated }) => {
    for (const registration of updated) registrations.set(registration.scopeURL, registration.registrationId);
  });
  await cdp.send("ServiceWorker.enable");
  await leader.page.evaluate(() => {
    window.__shown = new Set();
    navigator.serviceWorker.addEventListener("message", event => {
      if (event.data?.type === "push") window.__shown.add(event.data.alert_id);
    });
  });
  const session = await leader.page.evaluate(() => JSON.parse(localStorage.getItem("zhiban.session")));
  say({ access_token: session.access_token, cold_start_ms: coldStartMs, tap_to_saved_ms: tapToSavedMs });
  for (;;) {
    const { value, done } = await lines.next();
    if (done) break;
    const command = JSON.parse(value);
    if (command.done) break;
    const tag = `alert-${command.deliver.alert_id}`;
    check(registrations.has(`${server}/`), `no service worker registration: ${[...registrations.keys()]}`);
    await cdp.send("ServiceWorker.deliverPushMessage", {
      origin: server,
      registrationId: registrations.get(`${server}/`),
      data: JSON.stringify(command.deliver),
    });
    // Shown: the worker tells the page once `showNotification` has resolved.
    await leader.page.waitForFunction(id => window.__shown.has(id), command.deliver.alert_id, {
      polling: 5,
      timeout: 10000,
    });
    say({ shown: tag });
  }
  return { done: true };
});
