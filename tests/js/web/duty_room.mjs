// The duty room on two phones: the officer logs a call and attaches it to the incident it
// concerns (D6); writes a handover with its pending items and signs it as the outgoing
// officer; the incoming colleague sees it on their own page and signs too (D7); the leader
// approves a leave request (D4).
import { check, phone, run, server } from "./browser.mjs";

await run(async browser => {
  const outgoing = await phone(browser, process.env.OUTGOING_USER);
  const incoming = await phone(browser, process.env.INCOMING_USER);
  const page = outgoing.page;
  // The incident a field device made is in the unit's list (its fields written by client-core).
  await page.goto(`${server}/#/incidents`);
  await page.waitForSelector(`.record[data-document="${process.env.INCIDENT}"]`, { timeout: 30000 }).catch(async error => {
    throw new Error(`${error.message}\n${await page.innerHTML("main")}`);
  });
  // And found by search (the server's, over everything the user may see).
  await page.fill("input[name=q]", "河堤");
  await page.press("input[name=q]", "Enter");
  await page.waitForSelector(`.card.hit[data-document="${process.env.INCIDENT}"]`, { timeout: 20000 });
  await page.goto(`${server}/#/duty`);

  // A call, attached to the case (the incident the catalogs brought to this phone).
  const form = page.locator("form:has(textarea[name=content])");
  await form
    .locator(`select[name=incident] option[value="${process.env.INCIDENT}"]`)
    .waitFor({ state: "attached", timeout: 30000 })
    .catch(async error => {
      throw new Error(`${error.message}\n${await page.innerHTML("main")}`);
    });
  await form.locator("input[name=caller_name]").fill("县应急局 王科长");
  await form.locator("input[name=phone]").fill("0571-88001234");
  await form.locator("textarea[name=content]").fill("河水上涨，请求增派人员");
  await form.locator("select[name=incident]").selectOption(process.env.INCIDENT);
  await form.locator("button[type=submit]").click();
  await page.waitForSelector('li.call:has-text("河水上涨")');

  // The handover, signed by the outgoing officer.
  await page.fill("textarea[name=done]", "巡查辖区\n处理来电三起");
  await page.fill("textarea[name=pending]", "回电县应急局\n补报伤亡人数");
  await page.click('button:has-text("新建交接记录")');
  const card = page.locator(".card.handover").first();
  await card.waitFor();
  check((await card.locator("li.pending").count()) === 2, "two pending items");
  const handover = await card.getAttribute("data-document");
  await card.locator('button.sign[data-side="outgoing"]').click();
  await page.waitForSelector(`.card.handover[data-document="${handover}"] .signed[data-side="outgoing"]`);

  // The incoming officer's page: the handover arrives, signed on one side; they sign the other.
  await incoming.page.goto(`${server}/#/duty`);
  const theirs = `.card.handover[data-document="${handover}"]`;
  await incoming.page.waitForSelector(`${theirs} .signed[data-side="outgoing"]`, { timeout: 30000 });
  await incoming.page.click(`${theirs} button.sign[data-side="incoming"]`);
  await incoming.page.waitForSelector(`${theirs} .signed[data-side="incoming"]`);
  // Both signatures on the outgoing officer's page too, live.
  await page.waitForSelector(`${theirs} .signed[data-side="incoming"]`, { timeout: 30000 });
  await page.waitForSelector(`${theirs} .delivery[data-state="received"]`, { timeout: 30000 });
  await incoming.page.waitForSelector(`${theirs} .delivery[data-state="received"]`, { timeout: 30000 });

  // The leader (the incoming officer here) decides the officer's leave request.
  const request = incoming.page.locator(".card.request").first();
  await request.waitFor({ timeout: 30000 });
  check((await request.textContent()).includes("王五"), "the request names the substitute");
  await request.locator("button.approve").click();
  await incoming.page.waitForSelector("text=暂无待审批的申请", { timeout: 30000 });
  return { handover };
});
