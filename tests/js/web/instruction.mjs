// 批示: the leader opens a red incident on the phone and writes an instruction to the duty
// officer on duty; the officer's open page shows it at once (the document syncs), and the
// server raises the officer's alert, which their inbox lists.
import { check, phone, run, server } from "./browser.mjs";

const incident = process.env.INCIDENT;
const text = "立即组织群众疏散，30 分钟内续报";

await run(async browser => {
  const leader = await phone(browser, process.env.LEADER_USER);
  const officer = await phone(browser, process.env.OFFICER_USER);
  for (const { page } of [leader, officer]) await page.goto(`${server}/#/incident/${incident}`);
  await officer.page.waitForSelector("section.incident h1");

  const form = leader.page.locator("form:has(select[name=to])");
  await form.waitFor();
  const addressee = await form.locator("select[name=to] option").first().textContent();
  await form.locator("textarea[name=instruction]").fill(text);
  await form.locator("button[type=submit]").click();
  await leader.page.waitForSelector(`li.instruction:has-text("${text}")`);

  // Live on the officer's screen, no reload.
  await officer.page.waitForSelector(`li.instruction:has-text("${text}")`, { timeout: 30000 });

  // And in the officer's inbox: the server alerted the addressee.
  const started = Date.now();
  for (;;) {
    await officer.page.goto(`${server}/#/alerts`);
    await officer.page.waitForSelector("main h1, main .error");
    if (await officer.page.$(`.card.alert .title:has-text("${text}")`)) break;
    check(Date.now() - started < 30000, `no instruction alert: ${await officer.page.textContent("main")}`);
    await officer.page.waitForTimeout(500);
  }
  return { addressee };
});
