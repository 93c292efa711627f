// The service worker: the app shell offline (cache first, one cache per build), and the
// alerts the server pushes. It holds no session: each push carries its own token, good for
// acknowledging that alert and reporting it shown from this device; without one (or
// offline), an open page of the app does it, or the app is opened to.
/* global BUILD_VERSION, SHELL */
const CACHE = `zhiban-${BUILD_VERSION}`;

self.addEventListener("install", event => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then(cache => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", event => {
  event.waitUntil(
    caches
      .keys()
      .then(names => Promise.all(names.filter(name => name.startsWith("zhiban-") && name !== CACHE).map(name => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", event => {
  const url = new URL(event.request.url);
  // The API and /sync are the server's, always: never answered from the cache.
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/api/") || url.pathname === "/sync" || url.pathname === "/healthz") return;
  const key = event.request.mode === "navigate" ? "/" : url.pathname;
  event.respondWith(caches.match(key).then(hit => hit ?? fetch(event.request)));
});

async function pages() {
  return self.clients.matchAll({ type: "window", includeUncontrolled: true });
}

/** Hands `message` to an open page; false when none is open. */
async function tellPage(message) {
  const open = await pages();
  for (const page of open) page.postMessage(message);
  return open.length > 0;
}

self.addEventListener("push", event => {
  let alert = {};
  try {
    alert = event.data?.json() ?? {};
  } catch {
    alert = {};
  }
  const red = alert.grade === "red";
  // A classified alert says only that something needs the reader (D18).
  const title = alert.classified ? "涉密事项 / Classified matter" : alert.title || "值班警报 / Duty alert";
  const grades = { red: "红色警报 / Red alert", yellow: "黄色警报 / Yellow alert", blue: "蓝色警报 / Blue alert" };
  const body = alert.classified ? "请在应用内查看 / Open the app" : (grades[alert.grade] ?? "");
  const options = {
    body,
    tag: `alert-${alert.alert_id ?? "unknown"}`,
    renotify: true,
    requireInteraction: red,
    vibrate: red ? [500, 200, 500, 200, 500] : [200],
    icon: "/icon.svg",
    data: { alert_id: alert.alert_id, document_id: alert.classified ? undefined : alert.document_id, push_token: alert.push_token },
    actions: [{ action: "ack", title: "确认 / Acknowledge" }],
  };
  event.waitUntil(
    self.registration
      .showNotification(title, options)
      .then(async () => {
        // An open page shows the alert in its inbox at once; the receipt follows.
        await tellPage({ type: "push", alert_id: alert.alert_id });
        if (!(await withToken("push-receipt", options.data))) await tellPage({ type: "receipt", alert_id: alert.alert_id });
      }),
  );
});

/** POSTs the push's token to the alert's `push-ack`/`push-receipt`; whether it went through. */
async function withToken(path, data) {
  if (!data.push_token || !data.alert_id) return false;
  try {
    const response = await fetch(`/api/alerts/${encodeURIComponent(data.alert_id)}/${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: data.push_token }),
    });
    return response.ok;
  } catch {
    return false;
  }
}

/** What a tap does: the action button acknowledges, the notification opens the incident. */
async function handle(action, data) {
  if (action === "ack") {
    if (await withToken("push-ack", data)) {
      await tellPage({ type: "ack-done", alert_id: data.alert_id });
    } else if (!(await tellPage({ type: "ack", alert_id: data.alert_id }))) {
      await self.clients.openWindow(`/?ack=${encodeURIComponent(data.alert_id)}`);
    }
    return;
  }
  const open = await pages();
  if (open.length > 0) {
    await open[0].focus?.();
    open[0].postMessage({ type: "open", document_id: data.document_id });
  } else {
    await self.clients.openWindow(data.document_id ? `/#/incident/${data.document_id}` : "/#/alerts");
  }
}

self.addEventListener("notificationclick", event => {
  event.notification.close();
  event.waitUntil(handle(event.action, event.notification.data ?? {}));
});

// A test hook (no browser automation can click a notification): the page asks the worker to
// act as if the notification with `tag` had been tapped.
self.addEventListener("message", event => {
  if (event.data?.type !== "tap") return;
  event.waitUntil(
    self.registration.getNotifications({ tag: event.data.tag }).then(async found => {
      for (const notification of found) {
        notification.close();
        await handle(event.data.action, notification.data ?? {});
      }
    }),
  );
});
