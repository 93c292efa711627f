// 管理: what an admin does through the server's API (D24) — users of their units (create,
// role, disable, reset the password), units, a roster's shifts with leaders, officers and
// A/B backups (a roster document, as the duty rules keep it: D2, D5), and the escalation
// steps per grade (D10). The server decides what an admin may touch; this page only asks.
import { api, current } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";
import * as sync from "./sync.js";

const ROLES = ["admin", "leader", "officer", "field"];

export async function adminView(render) {
  const [users, units] = await Promise.all([api("GET", "/api/users"), api("GET", "/api/units")]);
  const status = h("p", { class: "muted", role: "status" });
  const act = action => async () => {
    try {
      status.textContent = (await action()) ?? t("saved");
      await render();
    } catch (error) {
      status.textContent = `${t("error")}${t("colon")}${error.message}`;
    }
  };
  return h(
    "section",
    { class: "admin" },
    h("h1", {}, t("tab_admin")),
    status,
    h("h2", {}, t("users")),
    users.map(user => userCard(user, act)),
    newUserForm(units, act),
    h("h2", {}, t("units")),
    h("ul", { class: "timeline" }, units.map(unit => h("li", { class: "unit" }, unit.name))),
    newUnitForm(units, act),
    h("h2", {}, t("roster")),
    rosterForm(users, act),
    h("h2", {}, t("escalation")),
    await policiesPart(act),
  );
}

/** The unit's escalation steps per grade (D10), as the API takes them. */
async function policiesPart(act) {
  const unit = current().unit_id;
  const forms = await Promise.all(
    ["red", "yellow", "blue"].map(async grade => {
      const policy = await api("GET", `/api/escalation-policies/${unit}/${grade}`).catch(() => ({ steps: [] }));
      const steps = h("textarea", { name: `policy_${grade}`, rows: 6 });
      steps.value = JSON.stringify(policy.steps, null, 1);
      return h(
        "form",
        {
          class: "card policy",
          dataset: { grade },
          onsubmit: event => {
            event.preventDefault();
            act(() => api("PUT", `/api/escalation-policies/${unit}/${grade}`, { steps: JSON.parse(steps.value) }).then(() => null))();
          },
        },
        h("label", {}, t(grade)),
        steps,
        h("p", {}, h("button", { class: "primary", type: "submit" }, t("save"))),
      );
    }),
  );
  return h("div", {}, forms);
}

function userCard(user, act) {
  const role = h("select", { name: "role" }, ROLES.map(name => h("option", { value: name, selected: name === user.role }, t(`role_${name}`))));
  const self = user.id === current().user_id;
  return h(
    "div",
    { class: "card user", dataset: { user: user.username } },
    h("div", { class: "title" }, `${user.display_name} (${user.username})`, user.disabled_at ? ` · ${t("disabled_user")}` : ""),
    h(
      "p",
      { class: "row" },
      role,
      h("button", { type: "button", class: "set-role", disabled: self, onclick: act(() => api("PATCH", `/api/users/${user.id}`, { role: role.value }).then(() => null)) }, t("save")),
      user.disabled_at
        ? h("button", { type: "button", class: "enable", onclick: act(() => api("POST", `/api/users/${user.id}/enable`).then(() => null)) }, t("enable"))
        : h("button", { type: "button", class: "disable", disabled: self, onclick: act(() => api("POST", `/api/users/${user.id}/disable`).then(() => null)) }, t("disable")),
      h(
        "button",
        {
          type: "button",
          class: "reset",
          onclick: act(async () => {
            const { temporary_password: password } = await api("POST", `/api/users/${user.id}/reset-password`, {});
            return `${t("temporary_password")}${t("colon")}${password}`;
          }),
        },
        t("reset_password"),
      ),
    ),
  );
}

function newUserForm(units, act) {
  const username = h("input", { name: "new_username", required: true });
  const name = h("input", { name: "new_display_name" });
  const password = h("input", { name: "new_user_password", type: "password", required: true, autocomplete: "new-password" });
  const role = h("select", { name: "new_role" }, ROLES.map(r => h("option", { value: r, selected: r === "officer" }, t(`role_${r}`))));
  const unit = h("select", { name: "new_unit" }, units.map(u => h("option", { value: u.id }, u.name)));
  const cleared = h("input", { name: "new_cleared", type: "checkbox" });
  const form = h(
    "form",
    {
      class: "card",
      onsubmit: event => {
        event.preventDefault();
        act(() =>
          api("POST", "/api/users", {
            username: username.value.trim(),
            display_name: name.value.trim() || null,
            password: password.value,
            unit_id: unit.value,
            role: role.value,
            cleared: cleared.checked,
          }).then(() => null),
        )();
      },
    },
    h("h2", {}, t("new_user")),
    h("label", {}, t("username")),
    username,
    h("label", {}, t("display_name")),
    name,
    h("label", {}, t("temporary_password")),
    password,
    h("label", {}, t("role")),
    role,
    h("label", {}, t("unit")),
    unit,
    h("label", { class: "row" }, cleared, t("cleared")),
    h("p", {}, h("button", { class: "primary", type: "submit" }, t("create"))),
  );
  return form;
}

function newUnitForm(units, act) {
  const name = h("input", { name: "unit_name", required: true });
  const parent = h("select", { name: "unit_parent" }, units.map(u => h("option", { value: u.id }, u.name)));
  return h(
    "form",
    {
      class: "card",
      onsubmit: event => {
        event.preventDefault();
        act(() => api("POST", "/api/units", { name: name.value.trim(), parent_id: parent.value }).then(() => null))();
      },
    },
    h("label", {}, t("unit_name")),
    name,
    h("label", {}, t("unit_parent")),
    parent,
    h("p", {}, h("button", { class: "primary", type: "submit" }, t("create"))),
  );
}

/** A roster with one shift to begin with: its leader, officers and the A/B backups. */
function rosterForm(users, act) {
  const active = users.filter(user => !user.disabled_at && user.unit_id === current().unit_id);
  const person = user => ({ user_id: user.id, name: user.display_name, phone: null });
  const choose = (name, roles, multiple) =>
    h(
      "select",
      { name, multiple },
      multiple ? null : h("option", { value: "" }, "—"),
      active.filter(user => roles.includes(user.role)).map(user => h("option", { value: user.id }, user.display_name)),
    );
  const title = h("input", { name: "roster_title", required: true });
  const start = h("input", { name: "shift_start", type: "datetime-local", required: true });
  const end = h("input", { name: "shift_end", type: "datetime-local", required: true });
  const leader = choose("shift_leader", ["leader"]);
  const officers = choose("shift_officers", ["officer", "leader"], true);
  const backupLeader = choose("backup_leader", ["leader"]);
  const backupOfficers = choose("backup_officers", ["officer", "leader"], true);
  const picked = select => [...select.selectedOptions].map(option => active.find(user => user.id === option.value)).filter(Boolean).map(person);
  return h(
    "form",
    {
      class: "card",
      onsubmit: event => {
        event.preventDefault();
        act(async () => {
          const [leaderPicked] = picked(leader);
          const [backupPicked] = picked(backupLeader);
          await sync.create({
            type: "roster",
            schema: 1,
            title: title.value.trim(),
            shifts: [
              {
                start: new Date(start.value).getTime(),
                end: new Date(end.value).getTime(),
                kind: "workday",
                leader: leaderPicked ?? null,
                officers: picked(officers),
                backup_leader: backupPicked ?? null,
                backup_officers: picked(backupOfficers),
              },
            ],
            requests: [],
          });
          return null;
        })();
      },
    },
    h("label", {}, t("roster_title")),
    title,
    h("label", {}, t("shift_start")),
    start,
    h("label", {}, t("shift_end")),
    end,
    h("label", {}, t("leader_on_duty")),
    leader,
    h("label", {}, t("officer_on_duty")),
    officers,
    h("label", {}, t("backup_leader")),
    backupLeader,
    h("label", {}, t("backup_officers")),
    backupOfficers,
    h("p", {}, h("button", { class: "primary", type: "submit" }, t("create"))),
  );
}
