// The app: login, then tabs by what the user does on duty. Records are automerge documents
// on the phone (sync.js); alerts, timeliness and who is on duty come from the server's API
// when there is a network. Text from records only ever enters the page as text nodes.
import * as session from "./api.js";
import { api, ApiError } from "./api.js";
import * as sync from "./sync.js";
import { t, ago, switchLanguage } from "./i18n.js";
import { h } from "./dom.js";
import { adminView } from "./admin.js";

const main = document.getElementById("main");
const tabs = document.getElementById("tabs");
const net = document.getElementById("net");
const MINE_KEY = "zhiban.mine";

function mine() {
  return JSON.parse(localStorage.getItem(MINE_KEY) || "[]");
}

function gradeName(grade) {
  return grade ? t(grade) : "";
}

// ---- shell ----------------------------------------------------------------------------------

const TABS = [
  ["report", "tab_report"],
  ["alerts", "tab_alerts"],
  ["incidents", "tab_incidents"],
  ["duty", "tab_duty"],
  ["admin", "tab_admin", "admin"],
  ["me", "tab_me"],
];

function route() {
  const [name, arg] = location.hash.replace(/^#\/?/, "").split("/");
  return { name: name || defaultTab(), arg: arg ? decodeURIComponent(arg) : undefined };
}

function defaultTab() {
  return session.current()?.role === "leader" ? "alerts" : "report";
}

function renderTabs() {
  const { name } = route();
  tabs.replaceChildren(
    ...TABS.filter(([, , role]) => !role || role === session.current()?.role).map(([id, label]) =>
      h("button", { type: "button", "aria-current": id === name ? "page" : undefined, onclick: () => go(id) }, t(label)),
    ),
  );
}

function go(name, arg) {
  location.hash = arg ? `#/${name}/${encodeURIComponent(arg)}` : `#/${name}`;
}

function renderNet() {
  const online = sync.connected();
  net.dataset.state = online ? "online" : "offline";
  net.textContent = online ? t("online") : t("offline");
}

let rendering = 0;
let stale = false;
let onScreen = null;
main.addEventListener("focusout", () =>
  setTimeout(() => {
    if (stale && !typing()) {
      stale = false;
      render();
    }
  }, 0),
);
async function render() {
  document.getElementById("lang").textContent = t("language");
  if (!session.current()) {
    tabs.replaceChildren();
    return renderLogin();
  }
  renderTabs();
  renderNet();
  const ticket = ++rendering;
  const { name, arg } = route();
  const view = { report: reportView, alerts: alertsView, incidents: incidentsView, incident: incidentView, duty: dutyView, admin: () => adminView(render), me: meView }[name] ?? reportView;
  try {
    const content = await view(arg);
    if (ticket !== rendering) return;
    // Someone began typing on this screen while it was being read again: their text stays,
    // and the screen is replaced once they leave the field (another screen replaces it).
    if (typing() && onScreen === location.hash) {
      stale = true;
      return;
    }
    onScreen = location.hash;
    main.replaceChildren(content);
  } catch (error) {
    if (ticket === rendering) main.replaceChildren(h("p", { class: "error" }, `${t("error")}: ${error.message}`));
  }
}

// ---- login ----------------------------------------------------------------------------------

function renderLogin(message, needsNewPassword) {
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const newPassword = needsNewPassword
    ? h("input", { name: "new_password", type: "password", autocomplete: "new-password", required: true })
    : null;
  const form = h(
    "form",
    {
      onsubmit: async event => {
        event.preventDefault();
        try {
          await session.login(username.value.trim(), password.value, newPassword?.value);
          await startSession();
          go(defaultTab());
          await render();
        } catch (error) {
          if (error instanceof ApiError && error.status === 428) return renderLogin(t("password_change"), true);
          const text = error.status === 401 ? t("wrong_password") : error.status === 403 ? (/revoked/.test(error.message) ? t("revoked") : t("disabled")) : error.message;
          renderLogin(text, needsNewPassword);
        }
      },
    },
    h("h1", {}, t("login")),
    message ? h("p", { class: "error", role: "alert" }, message) : null,
    h("label", {}, t("username")),
    username,
    h("label", {}, t("password")),
    password,
    newPassword ? [h("label", {}, t("new_password")), newPassword] : null,
    h("p", {}, h("button", { class: "primary", type: "submit" }, t("login"))),
  );
  main.replaceChildren(form);
}

// ---- field: the red button --------------------------------------------------------------------

async function urgentReport() {
  performance.mark("zhiban:sos");
  const me = session.current();
  const now = Date.now();
  const handle = await sync.create({
    type: "incident",
    schema: 1,
    grade: "red",
    urgent: true,
    title: `${t("sos")} ${new Date(now).toLocaleString()}`,
    category: "",
    location: "",
    known_at: now,
    reported_at: now,
    reported_by: me.user_id,
    device: me.device_id,
    unit: me.unit_id,
    classification: "plain",
    notes: [],
    reports: [{ kind: "first", at: now, by: me.user_id, text: t("sos") }],
  });
  // On the phone's disk now (the benchmark reads this).
  performance.measure("zhiban:sos-saved", "zhiban:sos");
  localStorage.setItem(MINE_KEY, JSON.stringify([{ url: handle.url, at: now }, ...mine()]));
  // The report is saved already; the location follows if the phone gives one.
  if ("geolocation" in navigator) {
    navigator.geolocation.getCurrentPosition(
      position => {
        const { latitude, longitude } = position.coords;
        sync.change(handle, doc => {
          doc.location = `${latitude.toFixed(5)},${longitude.toFixed(5)}`;
        });
      },
      () => {},
      { timeout: 10000, maximumAge: 60000 },
    );
  }
  go("report", handle.url);
}

async function reportView(url) {
  const list = h("div", { id: "my-reports" });
  const sos = h("button", { class: "sos", type: "button", id: "sos", onclick: urgentReport }, t("sos"));
  const parts = [sos, h("p", { class: "muted" }, t("sos_hint"))];
  if (url) parts.push(await reportForm(url));
  parts.push(h("h2", {}, t("my_reports")), list);
  const entries = mine();
  if (entries.length === 0) list.append(h("p", { class: "muted" }, t("no_reports")));
  for (const { url: entry } of entries.slice(0, 20)) list.append(await recordCard(entry));
  return h("section", {}, parts);
}

async function reportForm(url) {
  const handle = await sync.find(url);
  const doc = handle.doc();
  const field = (name, label, multiline) => {
    const input = multiline ? h("textarea", { name }) : h("input", { name });
    input.value = doc[name] ?? "";
    return [h("label", {}, label), input];
  };
  const [categoryLabel, category] = field("category", t("category"));
  const [locationLabel, place] = field("location", t("location"));
  const [casualtiesLabel, casualties] = field("casualties", t("casualties"));
  const note = h("textarea", { name: "note" });
  const saved = h("span", { class: "muted", role: "status" });
  const appendReport = kind => async () => {
    await sync.change(handle, d => {
      d.reports ??= [];
      d.reports.push({ kind, at: Date.now(), by: session.current().user_id, text: note.value || t(kind === "final" ? "final" : "follow_up") });
      if (kind === "final") d.status = "closed";
    });
    note.value = "";
    saved.textContent = t("saved");
  };
  return h(
    "form",
    {
      class: "card",
      dataset: { grade: doc.grade },
      onsubmit: async event => {
        event.preventDefault();
        await sync.change(handle, d => {
          d.category = category.value.trim();
          d.location = place.value.trim();
          d.casualties = casualties.value.trim();
          if (category.value.trim()) d.title = `${t("urgent")}：${category.value.trim()} ${place.value.trim()}`.trim();
          if (note.value.trim()) {
            d.notes ??= [];
            d.notes.push({ at: Date.now(), by: session.current().user_id, text: note.value.trim() });
          }
        });
        note.value = "";
        saved.textContent = t("saved");
      },
    },
    categoryLabel,
    category,
    locationLabel,
    place,
    casualtiesLabel,
    casualties,
    h("label", {}, t("note")),
    note,
    h(
      "p",
      { class: "row" },
      h("button", { class: "primary", type: "submit" }, t("save")),
      h("button", { type: "button", onclick: appendReport("follow_up") }, t("follow_up")),
      h("button", { type: "button", onclick: appendReport("final") }, t("final")),
      saved,
    ),
  );
}

function deliveryBadge(handle) {
  const state = sync.delivery(handle);
  return h("span", { class: "badge delivery", dataset: { state, document: handle.documentId } }, t(state === "received" ? "received" : "saved_local"));
}

async function recordCard(url) {
  const handle = await sync.find(url);
  const doc = handle.doc() ?? {};
  return h(
    "div",
    { class: "card record", dataset: { grade: doc.grade, document: handle.documentId }, onclick: () => go("incident", handle.documentId) },
    h("div", { class: "row" }, h("span", { class: "grade", dataset: { grade: doc.grade } }, gradeName(doc.grade)), h("span", { class: "title" }, doc.title ?? "")),
    h("div", { class: "row muted" }, doc.location || "", doc.reported_at ? ago(doc.reported_at) : "", deliveryBadge(handle)),
  );
}

// ---- leader: alerts -------------------------------------------------------------------------

async function alertsView() {
  const section = h("section", {}, h("h1", {}, t("alerts")));
  let alerts;
  try {
    ({ alerts } = await api("GET", "/api/alerts?open=true&mine=true"));
  } catch (error) {
    if (error instanceof ApiError) throw error;
    // No network: alerts are the server's to tell; notifications still arrive when it returns.
    section.append(h("p", { class: "muted" }, t("alerts_offline")));
    return section;
  }
  if (alerts.length === 0) section.append(h("p", { class: "muted" }, t("no_alerts")));
  const [details, names] = await Promise.all([
    Promise.all(alerts.map(alert => api("GET", `/api/alerts/${alert.id}`).catch(() => null))),
    peopleNames(),
  ]);
  for (const [index, alert] of alerts.entries()) {
    section.append(
      h(
        "div",
        { class: "card alert", dataset: { grade: alert.grade, alert: alert.id } },
        h("div", { class: "row" }, h("span", { class: "grade", dataset: { grade: alert.grade } }, gradeName(alert.grade)), h("span", { class: "title" }, alert.classified ? t("classified") : alert.title)),
        h("div", { class: "muted" }, ago(alert.created_at)),
        paged(details[index], names),
        h(
          "p",
          { class: "row" },
          h("button", { class: "primary ack", type: "button", onclick: () => acknowledge(alert.id) }, t("acknowledge")),
          alert.document_id ? h("button", { type: "button", onclick: () => go("incident", alert.document_id) }, t("timeline")) : null,
        ),
      ),
    );
  }
  return section;
}

/** Names of the people on the unit's roster today, by user id (for "who else was paged"). */
async function peopleNames() {
  const names = new Map();
  try {
    const oncall = await api("GET", `/api/oncall?unit=${encodeURIComponent(session.current().unit_id)}`);
    for (const shift of oncall.shifts) {
      for (const person of [shift.leader, shift.backup_leader, ...shift.officers, ...shift.backup_officers]) {
        if (person?.user_id) names.set(person.user_id, person.name);
      }
    }
  } catch {
    // No roster today: people are counted instead of named.
  }
  return names;
}

/** 已通知: everyone the alert's steps reached so far. */
function paged(detail, names) {
  const reached = new Set();
  for (const event of detail?.timeline ?? []) {
    if (event.event === "alert.step" || event.event === "alert.repeat") {
      for (const user of event.detail?.targets ?? []) reached.add(user);
    }
  }
  if (reached.size === 0) return null;
  const named = [...reached].map(user => (user === session.current().user_id ? t("me") : names.get(user))).filter(Boolean);
  const others = reached.size - named.length;
  const list = named.join("、") + (others > 0 ? ` +${others}` : "");
  return h("div", { class: "muted paged" }, `${t("paged")}${t("colon")}${list}`);
}

async function acknowledge(alertId) {
  await api("POST", `/api/alerts/${alertId}/ack`, {});
  await render();
}

// ---- incidents ------------------------------------------------------------------------------

let catalogEntries = new Set();

/** A string field as written by any device: other clients (client-core, the CLI) write
 * automerge scalar strings, which JavaScript reads as `ImmutableString` objects. */
function text(value) {
  return value === null || value === undefined ? value : String(value);
}

/** The unit's records of `type` the phone holds (from the catalogs), newest first. */
async function recordsOf(type) {
  const handles = await Promise.all([...catalogEntries].map(id => sync.find(`automerge:${id}`).catch(() => null)));
  return handles
    .filter(handle => text(handle?.doc()?.type) === type)
    .sort((a, b) => (b.doc().reported_at ?? b.doc().shift_start ?? 0) - (a.doc().reported_at ?? a.doc().shift_start ?? 0));
}

async function incidentsView(query) {
  const section = h("section", {}, h("h1", {}, t("incidents")), searchForm(query));
  if (query) {
    // The server searches the whole duty record the user may see (D20).
    try {
      const { hits } = await api("GET", `/api/search?q=${encodeURIComponent(query)}`);
      if (hits.length === 0) section.append(h("p", { class: "muted" }, t("no_hits")));
      for (const hit of hits) {
        section.append(h("div", { class: "card hit", dataset: { document: hit.document_id }, onclick: () => go("incident", hit.document_id) }, h("div", { class: "title" }, hit.title ?? hit.document_id)));
      }
    } catch (error) {
      section.append(h("p", { class: "muted" }, error instanceof ApiError ? error.message : t("search_offline")));
    }
    return section;
  }
  const incidents = await recordsOf("incident");
  if (incidents.length === 0) section.append(h("p", { class: "muted" }, t("no_incidents")));
  for (const handle of incidents) section.append(await recordCard(handle.url));
  return section;
}

function searchForm(query) {
  const input = h("input", { name: "q", type: "search", placeholder: t("search") });
  input.value = query ?? "";
  return h(
    "form",
    {
      class: "row",
      onsubmit: event => {
        event.preventDefault();
        go("incidents", input.value.trim() || undefined);
      },
    },
    input,
  );
}

/** Someone is typing on this screen: re-rendering now would lose their text. */
function typing() {
  const field = document.activeElement;
  return (main.contains(field) && field.matches("input, textarea, select")) ?? false;
}

const live = new WeakSet();
let renderTimer = null;

/** Re-renders the screen whenever `handle`'s document changes (a colleague's edit arrives). */
function watch(handle) {
  if (live.has(handle)) return;
  live.add(handle);
  handle.on("change", () => {
    if (typing()) return;
    clearTimeout(renderTimer);
    renderTimer = setTimeout(render, 50);
  });
}

async function incidentView(documentId) {
  const handle = await sync.find(`automerge:${documentId}`);
  watch(handle);
  const doc = handle.doc() ?? {};
  const me = session.current();
  const section = h(
    "section",
    { class: "incident", dataset: { document: documentId } },
    h("p", {}, h("button", { class: "link", type: "button", onclick: () => history.back() }, t("back"))),
    h("h1", {}, doc.title ?? ""),
    h("div", { class: "row" }, h("span", { class: "grade", dataset: { grade: doc.grade } }, gradeName(doc.grade)), deliveryBadge(handle)),
    h("p", {}, `${t("location")}${t("colon")}${doc.location || "—"}`),
    doc.casualties ? h("p", {}, `${t("casualties")}${t("colon")}${doc.casualties}`) : null,
    h("div", { class: "timeliness" }),
    h("h2", {}, t("reports")),
    h("ul", { class: "timeline" }, (doc.reports ?? []).map(report => h("li", {}, `${t(text(report.kind) === "first" ? "first_report" : text(report.kind))} · ${text(report.text) ?? ""}`))),
    h("h2", {}, t("instructions")),
    h(
      "ul",
      { class: "timeline instructions" },
      (doc.instructions ?? []).map(item => h("li", { class: "instruction" }, item.text, item.done ? ` ✓` : "")),
    ),
  );
  let people = [];
  try {
    const view = await api("GET", `/api/incidents/${documentId}`);
    const timeliness = view.timeliness ?? {};
    const due = section.querySelector(".timeliness");
    if (timeliness.first_report_due_at) {
      const late = timeliness.first_report_minutes_late ? ` (${t("late")})` : "";
      due.append(h("p", { class: "muted" }, `${t("first_due")}${t("colon")}${new Date(timeliness.first_report_due_at).toLocaleTimeString()}${late}`));
    }
    if (timeliness.next_follow_up_due_at) {
      due.append(h("p", { class: "muted" }, `${t("followup_due")}${t("colon")}${new Date(timeliness.next_follow_up_due_at).toLocaleTimeString()}`));
    }
    section.append(h("h2", {}, t("timeline")), h("ul", { class: "timeline" }, (view.timeline ?? []).map(event => h("li", {}, `${new Date(event.at).toLocaleTimeString()} ${t(`event_${event.event}`)}`))));
    if (me.role === "leader") {
      const oncall = await api("GET", `/api/oncall?unit=${encodeURIComponent(view.unit_id)}`);
      people = oncall.shifts.flatMap(shift => [...shift.officers, ...shift.backup_officers]).filter(person => person.user_id);
    }
  } catch {
    // Offline: what the phone holds is shown above.
  }
  if (me.role === "leader") section.append(instructionForm(handle, people));
  return section;
}

/** 批示: a leader's instruction to a named officer, who is alerted (D14). */
function instructionForm(handle, people) {
  const to = h("select", { name: "to", required: true }, people.map(person => h("option", { value: person.user_id }, person.name)));
  const text = h("textarea", { name: "instruction", required: true });
  return h(
    "form",
    {
      class: "card",
      onsubmit: async event => {
        event.preventDefault();
        if (!to.value || !text.value.trim()) return;
        await sync.change(handle, doc => {
          doc.instructions ??= [];
          doc.instructions.push({ by: session.current().user_id, to: to.value, at: Date.now(), text: text.value.trim(), steps: [], done: false });
        });
        text.value = "";
      },
    },
    h("h2", {}, t("write_instruction")),
    h("label", {}, t("to_officer")),
    to,
    h("label", {}, t("instruction_text")),
    text,
    h("p", {}, h("button", { class: "primary", type: "submit" }, t("send"))),
  );
}

// ---- duty -----------------------------------------------------------------------------------

async function dutyView() {
  const me = session.current();
  const section = h("section", {}, h("h1", {}, t("on_duty")));
  try {
    const oncall = await api("GET", `/api/oncall?unit=${encodeURIComponent(me.unit_id)}`);
    const names = people => (people.length ? people.map(person => person.name).join("、") : t("nobody"));
    if (oncall.shifts.length === 0) section.append(h("p", { class: "muted" }, t("nobody")));
    for (const shift of oncall.shifts) {
      section.append(
        h(
          "div",
          { class: "card shift" },
          h("div", { class: "muted" }, `${new Date(shift.start).toLocaleString()} – ${new Date(shift.end).toLocaleString()}`),
          h("p", {}, `${t("leader_on_duty")}${t("colon")}${names(shift.leader ? [shift.leader] : [])}`),
          h("p", {}, `${t("officer_on_duty")}${t("colon")}${names(shift.officers)}`),
        ),
      );
    }
  } catch (error) {
    section.append(h("p", { class: "muted" }, error.message));
  }
  if (me.role === "leader") section.append(await requestsPart());
  section.append(await rostersPart(), await callForm(), await handoversPart());
  return section;
}

/** 排班: the unit's rosters, shift by shift (D2, D5). */
async function rostersPart() {
  const part = h("div", {}, h("h2", {}, t("roster")));
  const person = p => (p ? text(p.name) : t("nobody"));
  for (const roster of await recordsOf("roster")) {
    watch(roster);
    const doc = roster.doc();
    part.append(
      h(
        "div",
        { class: "card roster", dataset: { document: roster.documentId } },
        h("div", { class: "title" }, text(doc.title)),
        h(
          "ul",
          { class: "timeline" },
          (doc.shifts ?? []).map(shift =>
            h(
              "li",
              { class: "roster-shift" },
              `${new Date(shift.start).toLocaleString()} – ${new Date(shift.end).toLocaleString()}${t("colon")}`,
              `${t("leader_on_duty")} ${person(shift.leader)}；${t("officer_on_duty")} ${(shift.officers ?? []).map(person).join("、") || t("nobody")}`,
              shift.backup_leader ? `；${t("backup_leader")} ${person(shift.backup_leader)}` : "",
            ),
          ),
        ),
      ),
    );
  }
  return part;
}

/** Swap and leave requests waiting for a leader of the unit: approve or reject (D4). */
async function requestsPart() {
  const part = h("div", {}, h("h2", {}, t("requests")));
  let waiting = 0;
  for (const roster of await recordsOf("roster")) {
    watch(roster);
    const doc = roster.doc();
    for (const [index, request] of (doc.requests ?? []).entries()) {
      if (text(request.status) !== "pending") continue;
      waiting += 1;
      const shift = doc.shifts?.[request.shift];
      const decide = status => () =>
        sync.change(roster, d => {
          const target = d.requests[index];
          // Ours even if the same word was there: the server trusts who wrote `status`.
          delete target.status;
          target.status = status;
          target.decided_by = session.current().user_id;
          target.decided_at = Date.now();
        });
      part.append(
        h(
          "div",
          { class: "card request", dataset: { roster: roster.documentId, index } },
          h("div", { class: "title" }, `${t(text(request.kind) === "leave" ? "leave" : "swap")} · ${shift ? new Date(shift.start).toLocaleString() : ""}`),
          h("p", {}, `${t("substitute")}${t("colon")}${text(request.substitute?.name) ?? ""}`),
          request.reason ? h("p", { class: "muted" }, text(request.reason)) : null,
          h(
            "p",
            { class: "row" },
            h("button", { class: "primary approve", type: "button", onclick: decide("approved") }, t("approve")),
            h("button", { class: "reject", type: "button", onclick: decide("rejected") }, t("reject")),
          ),
        ),
      );
    }
  }
  if (waiting === 0) part.append(h("p", { class: "muted" }, t("no_requests")));
  return part;
}

/** Today's duty log on this phone (one document a day, D6), made on first use. */
async function todaysLog() {
  const me = session.current();
  const day = new Date().toLocaleDateString("sv"); // YYYY-MM-DD
  const key = `zhiban.duty_log.${me.user_id}.${day}`;
  const known = localStorage.getItem(key);
  if (known) return sync.find(known);
  const handle = await sync.create({ type: "duty_log", schema: 1, title: `值班日志 ${day}`, shift_start: Date.now(), entries: [] });
  localStorage.setItem(key, handle.url);
  return handle;
}

/** 记录来电: a call into today's duty log, attached to a case if it concerns one (D6). */
async function callForm() {
  const caller = h("input", { name: "caller_name" });
  const phone = h("input", { name: "phone", type: "tel" });
  const content = h("textarea", { name: "content", required: true });
  const incidents = await recordsOf("incident");
  const incident = h("select", { name: "incident" }, h("option", { value: "" }, "—"), incidents.map(handle => h("option", { value: handle.documentId }, handle.doc().title)));
  const saved = h("span", { class: "muted", role: "status" });
  const entries = h("ul", { class: "timeline calls" });
  const known = localStorage.getItem(`zhiban.duty_log.${session.current().user_id}.${new Date().toLocaleDateString("sv")}`);
  if (known) {
    const log = await sync.find(known);
    for (const entry of log.doc().entries ?? []) entries.append(h("li", { class: "call" }, `${new Date(entry.received_at).toLocaleTimeString()} ${entry.caller_name ?? ""} ${entry.content}`));
  }
  return h(
    "form",
    {
      class: "card",
      onsubmit: async event => {
        event.preventDefault();
        if (!content.value.trim()) return;
        const log = await todaysLog();
        await sync.change(log, doc => {
          doc.entries.push({
            received_at: Date.now(),
            caller_name: caller.value.trim() || null,
            phone: phone.value.trim() || null,
            content: content.value.trim(),
            handler: session.current().user_id,
            incident: incident.value || null,
          });
        });
        saved.textContent = t("saved");
        render();
      },
    },
    h("h2", {}, t("log_call")),
    h("label", {}, t("caller")),
    caller,
    h("label", {}, t("phone")),
    phone,
    h("label", {}, t("summary")),
    content,
    h("label", {}, t("attach_case")),
    incident,
    h("p", { class: "row" }, h("button", { class: "primary", type: "submit" }, t("save")), saved),
    h("h2", {}, t("duty_log")),
    entries,
  );
}

/** 交接班: a handover with its pending items, signed by the outgoing and the incoming officer (D7). */
async function handoversPart() {
  const me = session.current();
  const done = h("textarea", { name: "done" });
  const pending = h("textarea", { name: "pending" });
  const lines = text => text.split("\n").map(line => line.trim()).filter(Boolean);
  const part = h(
    "div",
    {},
    h("h2", {}, t("handover")),
    h(
      "form",
      {
        class: "card",
        onsubmit: async event => {
          event.preventDefault();
          const now = Date.now();
          await sync.create({
            type: "handover",
            schema: 1,
            title: `交接班 ${new Date(now).toLocaleString()}`,
            done: lines(done.value),
            pending: lines(pending.value).map(text => ({ text, opened_at: now, opened_by: me.user_id, closed_at: null, closed_by: null })),
            equipment: "",
            previous: null,
            signatures: { outgoing: null, incoming: null },
          });
          render();
        },
      },
      h("label", {}, t("handover_done")),
      done,
      h("label", {}, t("handover_pending")),
      pending,
      h("p", {}, h("button", { class: "primary", type: "submit" }, t("handover_new"))),
    ),
  );
  for (const handle of await recordsOf("handover")) {
    watch(handle);
    const doc = handle.doc();
    const sign = side => async () => {
      await sync.change(handle, d => {
        d.signatures[side] = { by: me.user_id, at: Date.now() };
      });
      render();
    };
    const signature = side =>
      doc.signatures?.[side]
        ? h("span", { class: "badge signed", dataset: { side } }, `${t(`sign_${side}`)} ✓`)
        : h("button", { type: "button", class: "sign", dataset: { side }, onclick: sign(side) }, t(`sign_${side}`));
    part.append(
      h(
        "div",
        { class: "card handover", dataset: { document: handle.documentId } },
        h("div", { class: "title" }, doc.title),
        h("ul", { class: "timeline" }, (doc.pending ?? []).map(item => h("li", { class: "pending" }, item.text, item.closed_at ? " ✓" : ""))),
        h("p", { class: "row" }, signature("outgoing"), signature("incoming"), deliveryBadge(handle)),
      ),
    );
  }
  return part;
}

// ---- me -------------------------------------------------------------------------------------

let pushState = "push_off";

async function meView() {
  const me = session.current();
  return h(
    "section",
    {},
    h("h1", {}, me.username),
    h("p", {}, t(`role_${me.role}`)),
    h("p", {}, `${t("push")}${t("colon")}`, h("span", { id: "push-state" }, t(pushState))),
    h("p", {}, h("button", { type: "button", onclick: async () => { await sync.stop(); await session.logout(); await render(); } }, t("logout"))),
  );
}

// ---- push -----------------------------------------------------------------------------------

async function subscribePush(registration) {
  if (!("PushManager" in window)) {
    pushState = "push_unavailable";
    return;
  }
  try {
    const { key } = await api("GET", "/api/push/vapid-public-key");
    const existing = await registration.pushManager.getSubscription();
    const subscription =
      existing ??
      (await Promise.race([
        registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }),
        new Promise((_, reject) => setTimeout(() => reject(new Error("push service unreachable")), 10000)),
      ]));
    await api("POST", "/api/push/subscriptions", subscription.toJSON());
    pushState = "push_on";
  } catch {
    pushState = "push_unavailable";
  }
}

// The service worker has no session: what needs one (acknowledge, receipts) it asks of the page.
async function onWorkerMessage(event) {
  const { type, alert_id: alertId, document_id: documentId } = event.data ?? {};
  try {
    if (type === "ack") await api("POST", `/api/alerts/${alertId}/ack`, {});
    if (type === "receipt") await api("POST", `/api/alerts/${alertId}/receipt`, {});
    if (type === "open" && documentId) go("incident", documentId);
  } catch (error) {
    console.warn("zhiban: cannot", type, error);
  }
  if (type === "push" || type === "ack" || type === "ack-done") render();
}

// ---- start ----------------------------------------------------------------------------------

async function startSession() {
  const me = session.current();
  await sync.start(me);
  sync.onSync(event => {
    renderNet();
    if (event.type === "sync" || event.type === "created") refreshBadges(event.documentId);
  });
  let units = JSON.parse(localStorage.getItem("zhiban.units") || "[]");
  try {
    units = await api("GET", "/api/units");
    localStorage.setItem("zhiban.units", JSON.stringify(units));
  } catch {
    // Offline: the units known from the last visit.
  }
  const catalogs = units.flatMap(unit => [unit.catalog, unit.classified_catalog].filter(Boolean));
  sync.follow(catalogs, ids => {
    const before = catalogEntries.size;
    for (const id of ids) catalogEntries.add(id);
    if (catalogEntries.size !== before && ["incidents", "duty"].includes(route().name) && !typing()) render();
  });
  // Not awaited: a phone without a service worker or a push service still works.
  if ("serviceWorker" in navigator) navigator.serviceWorker.ready.then(subscribePush);
}

function refreshBadges(documentId) {
  for (const badge of document.querySelectorAll(`.delivery[data-document="${documentId}"]`)) {
    sync.find(`automerge:${documentId}`).then(handle => badge.replaceWith(deliveryBadge(handle)));
  }
}

async function boot() {
  document.getElementById("lang").addEventListener("click", () => {
    switchLanguage();
    render();
  });
  window.addEventListener("hashchange", render);
  window.addEventListener("zhiban:logged-out", () => sync.stop().then(render));
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(error => console.warn("zhiban: no service worker", error));
    navigator.serviceWorker.addEventListener("message", onWorkerMessage);
  }
  if (session.current()) await startSession();
  const pending = new URLSearchParams(location.search).get("ack");
  if (pending && session.current()) {
    history.replaceState(null, "", "/#/alerts");
    await api("POST", `/api/alerts/${pending}/ack`, {}).catch(() => {});
  }
  await render();
  // Alerts change on the server: look again now and then while the page is open.
  setInterval(() => {
    if (session.current() && route().name === "alerts" && document.visibilityState === "visible") render();
  }, 15000);
}

boot();
