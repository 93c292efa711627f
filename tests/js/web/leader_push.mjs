// The leader's phone: logged in, its service worker ready. The test (tests/it/web.rs) stands
// in for the push service: it registers this device's subscription with the server, receives
// and decrypts the server's push, and hands the payload here (a line on stdin), which the
// DevTools protocol delivers to the service worker as a push service would. The notification
// must then be shown as a red one; its "确认" action acknowledges the alert on the server.
import { createInterface } from "node:readline";

import { check, phone, run, server } from "./browser.mjs";

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function nextLine() {
  const { value, done } = await lines.next();
  if (done) throw new Error("stdin closed");
  return JSON.parse(value);
}

await run(async browser => {
  const leader = await phone(browser, process.env.LEADER_USER, { permissions: ["notifications"] });
  const { page, context } = leader;
  const cdp = await context.newCDPSession(page);
  const registrations = new Map();
  cdp.on("ServiceWorker.workerRegistrationUpdated", ({ registrations: updated }) => {
    for (const registration of updated) registrations.set(registration.scopeURL, registration.registrationId);
  });
  await cdp.send("ServiceWorker.enable");
  const session = await page.evaluate(() => JSON.parse(localStorage.getItem("zhiban.session")));
  // The test subscribes this device and raises the alert.
  process.stdout.write(`${JSON.stringify({ access_token: session.access_token, device_id: session.device_id })}\n`);

  const results = [];
  for (;;) {
    const command = await nextLine();
    if (command.done) break;
    const payload = command.deliver;
    const started = Date.now();
    const registrationId = registrations.get(`${server}/`);
    check(registrationId, `a service worker registration for ${server}/: ${[...registrations.keys()]}`);
    await cdp.send("ServiceWorker.deliverPushMessage", {
      origin: server,
      registrationId,
      data: JSON.stringify(payload),
    });
    const tag = `alert-${payload.alert_id}`;
    let shown = null;
    while (!shown) {
      check(Date.now() - started < 30000, `no notification tagged ${tag}`);
      shown = await page.evaluate(async tag => {
        const registration = await navigator.serviceWorker.ready;
        const [found] = await registration.getNotifications({ tag });
        return found
          ? { title: found.title, body: found.body, tag: found.tag, requireInteraction: found.requireInteraction, actions: found.actions.map(a => ({ action: a.action, title: a.title })), data: found.data }
          : null;
      }, tag);
      if (!shown) await new Promise(resolve => setTimeout(resolve, 20));
    }
    const shownMs = Date.now() - started;
    // The inbox lists it too, in its grade's colour (the push told the page to look again).
    const card = await page.waitForSelector(`.card.alert[data-alert="${payload.alert_id}"]`, { timeout: 20000 });
    check((await card.getAttribute("data-grade")) === payload.grade, "the card has the alert's grade");
    const paged = await card.$eval(".paged", element => element.textContent).catch(() => "");
    check(paged.includes("我"), `the card says who was paged: "${paged}"`);
    if (command.tap) {
      // No automation clicks a notification: the worker's test hook taps it.
      await page.evaluate(
        ({ tag, action }) => navigator.serviceWorker.controller.postMessage({ type: "tap", tag, action }),
        { tag, action: command.tap },
      );
    }
    results.push({ notification: shown, shown_ms: shownMs, tapped: command.tap });
    process.stdout.write(`${JSON.stringify({ shown, shown_ms: shownMs })}\n`);
  }
  // The inbox no longer lists the acknowledged alerts.
  await page.click("nav#tabs button:nth-child(2)");
  await page.waitForSelector("main h1, main .error");
  check(!(await page.$("main .error")), `the inbox failed: ${await page.textContent("main")}`);
  const open = await page.$$eval(".card.alert", cards => cards.map(card => card.dataset.alert));
  const acknowledged = results.filter(result => result.tapped === "ack").map(result => result.notification.data.alert_id);
  check(!open.some(id => acknowledged.includes(id)), `still listed: ${open} (${await page.textContent("main")})`);
  return { results, open };
});
