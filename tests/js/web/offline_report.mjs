// A field officer with no signal taps 紧急报告: the red report is on the phone at once (in
// IndexedDB, "已保存在本机"), survives the app being reopened offline, and when the network
// returns reaches the server ("服务器已收到") and a colleague's open page, with no reload.
import { check, connected, phone, run } from "./browser.mjs";

await run(async browser => {
  const field = await phone(browser, process.env.FIELD_USER);
  const colleague = await phone(browser, process.env.COLLEAGUE_USER);
  await colleague.page.click("nav#tabs button:nth-child(3)"); // 事件 (incidents)

  // No network, and the app opened again from the home screen.
  await field.context.setOffline(true);
  await field.page.reload();
  await field.page.waitForSelector("#sos");
  check((await field.page.textContent("#net")) === "离线", "the app says it is offline");

  const tapped = Date.now();
  await field.page.click("#sos");
  await field.page.waitForSelector('form.card[data-grade="red"]');
  const badge = '#my-reports .delivery[data-state="local"]';
  await field.page.waitForSelector(badge);
  const savedMs = Date.now() - tapped;
  check((await field.page.textContent(badge)) === "已保存在本机", "shown as saved on this phone");
  const documentId = await field.page.getAttribute(badge, "data-document");

  // In IndexedDB: reopened offline, the report is still there.
  const databases = await field.page.evaluate(async () => (await indexedDB.databases()).map(db => db.name));
  check(databases.some(name => name.startsWith("zhiban-")), `an IndexedDB store: ${databases}`);
  await field.page.reload();
  await field.page.waitForSelector(`#my-reports .delivery[data-document="${documentId}"][data-state="local"]`);

  // Add what is known, still offline (the form stays open across the restart).
  await field.page.fill("input[name=category]", "山体滑坡");
  await field.page.fill("input[name=location]", "G4 京港澳高速 1032 公里");
  await field.page.fill("input[name=casualties]", "2 人受伤");
  await field.page.click("form.card button[type=submit]");
  await field.page.waitForSelector('[role=status]:has-text("已保存")');

  // The network returns: delivered, and shown so.
  await field.context.setOffline(false);
  await connected(field.page);
  await field.page.waitForSelector(`#my-reports .delivery[data-document="${documentId}"][data-state="received"]`, {
    timeout: 30000,
  });
  check(
    (await field.page.textContent(`#my-reports .delivery[data-document="${documentId}"]`)) === "服务器已收到",
    "shown as received by the server",
  );

  // The colleague's open incidents list shows it, without a reload.
  await colleague.page.waitForSelector(`.record[data-document="${documentId}"]`, { timeout: 30000 });
  const title = await colleague.page.textContent(`.record[data-document="${documentId}"] .title`);
  return { document_id: documentId, saved_ms: savedMs, colleague_title: title };
});
