// Each main screen at 360×640, as a phone shows it: the pictures in docs/screenshots come
// from here (ZHIBAN_SCREENSHOTS=docs/screenshots), and every run checks that the screens
// render, in Chinese, with a font that has the characters.
import { mkdirSync } from "node:fs";

import { check, phone, run, server } from "./browser.mjs";

const dir = process.env.SCREENSHOT_DIR;
mkdirSync(dir, { recursive: true });

async function shot(page, name, expected) {
  await page.waitForSelector("main h1, main .sos, main form");
  check(!(await page.$("main .error")), `${name}: ${await page.textContent("main")}`);
  const text = await page.textContent("body");
  check(text.includes(expected), `${name} shows "${expected}": ${text}`);
  // Without a CJK font the characters would be boxes: the page's font must have them.
  const fontHasThem = await page.evaluate(expected => document.fonts.check(`16px "Noto Sans CJK SC"`, expected), expected);
  check(fontHasThem, `${name}: no CJK font for "${expected}"`);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: `${dir}/${name}.png` });
}

await run(async browser => {
  const { context: loginContext } = { context: await browser.newContext({ viewport: { width: 360, height: 640 }, locale: "zh-CN" }) };
  const login = await loginContext.newPage();
  await login.goto(server);
  await login.waitForSelector("input[name=username]");
  await shot(login, "login", "登录");

  const field = (await phone(browser, process.env.FIELD_USER)).page;
  await field.click("#sos");
  await field.waitForSelector("form.card");
  await field.fill("input[name=category]", "山体滑坡");
  await field.fill("input[name=location]", "G4 京港澳高速 1032 公里");
  await field.fill("input[name=casualties]", "2 人受伤");
  await field.click("form.card button[type=submit]");
  await field.waitForSelector('#my-reports .delivery[data-state="received"]', { timeout: 30000 });
  await shot(field, "report", "紧急报告");

  const leader = (await phone(browser, process.env.LEADER_USER)).page;
  await leader.waitForSelector(".card.alert", { timeout: 30000 }).catch(() => leader.reload());
  await leader.waitForSelector(".card.alert", { timeout: 30000 });
  await shot(leader, "alerts", "待确认警报");
  await leader.click(".card.alert button:not(.ack)");
  await leader.waitForSelector("form:has(select[name=to])");
  await shot(leader, "incident", "领导批示");
  await leader.click("nav#tabs button:nth-child(4)");
  await leader.waitForSelector(".card.shift");
  await shot(leader, "duty", "带班领导");

  const english = (await phone(browser, process.env.FIELD_USER, { lang: "en" })).page;
  await shot(english, "report-en", "URGENT REPORT");
  return { screens: ["login", "report", "alerts", "incident", "duty", "report-en"] };
});
