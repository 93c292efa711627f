// 管理 on an admin's phone: a new user (who must set a password of their own), a user
// disabled, a unit created below the admin's own, and a roster whose shift puts a leader and
// an officer on duty now, with an A/B backup.
import { check, phone, run, server } from "./browser.mjs";

const local = ms => {
  const date = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return date.toISOString().slice(0, 16);
};

await run(async browser => {
  const { page } = await phone(browser, process.env.ADMIN_USER);
  await page.goto(`${server}/#/admin`);
  await page.waitForSelector(".card.user");
  const status = async () => page.textContent("[role=status]");

  await page.fill("input[name=new_username]", "zhou");
  await page.fill("input[name=new_display_name]", "周敏");
  await page.fill("input[name=new_user_password]", process.env.TEMPORARY_PASSWORD);
  await page.selectOption("select[name=new_role]", "officer");
  await page.click('form:has(input[name=new_username]) button[type=submit]');
  await page.waitForSelector('.card.user[data-user="zhou"]');

  await page.click('.card.user[data-user="anna"] button.disable');
  await page.waitForSelector('.card.user[data-user="anna"] button.enable');

  await page.fill("input[name=unit_name]", "三号村值班点");
  await page.click('form:has(input[name=unit_name]) button[type=submit]');
  await page.waitForSelector('li.unit:has-text("三号村值班点")');

  await page.fill("input[name=roster_title]", "十二月值班表");
  await page.fill("input[name=shift_start]", local(Date.now() - 3600_000));
  await page.fill("input[name=shift_end]", local(Date.now() + 8 * 3600_000));
  await page.selectOption("select[name=shift_leader]", process.env.LEADER_ID);
  await page.selectOption("select[name=shift_officers]", [process.env.OFFICER_ID]);
  await page.selectOption("select[name=backup_leader]", process.env.BACKUP_ID);
  await page.click('form:has(input[name=roster_title]) button[type=submit]');
  await page.waitForFunction(() => document.querySelector("[role=status]")?.textContent === "已保存");
  check(!(await status()).includes("出错"), await status());

  // The red escalation: repeat every 2 minutes instead.
  const red = page.locator('form.policy[data-grade="red"]');
  const steps = JSON.parse(await red.locator("textarea").inputValue());
  check(steps.length > 0, "the red policy has steps");
  steps[0].repeat_every_secs = 120;
  await red.locator("textarea").fill(JSON.stringify(steps));
  const [saved] = await Promise.all([
    page.waitForResponse(r => r.url().includes("/api/escalation-policies/") && r.request().method() === "PUT"),
    red.locator("button[type=submit]").click(),
  ]);
  check(saved.status() === 200, `PUT red policy: ${saved.status()} ${await saved.text()}`);
  check(JSON.parse(saved.request().postData()).steps[0].repeat_every_secs === 120, `sent: ${saved.request().postData()}`);
  // The screen, read again from the server, shows it.
  await page.waitForFunction(() =>
    /"repeat_every_secs":\s*120/.test(document.querySelector('form.policy[data-grade="red"] textarea')?.value ?? ""),
  );

  // The roster reaches the server: the duty screen names who is on duty now.
  await page.goto(`${server}/#/duty`);
  await page.waitForSelector(".card.shift", { timeout: 30000 });
  // And the roster itself, shift by shift.
  await page.waitForSelector('.card.roster:has-text("十二月值班表") li.roster-shift', { timeout: 30000 });
  return { duty: await page.textContent(".card.shift") };
});
