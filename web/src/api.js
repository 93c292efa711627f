// The session and the REST API. The session lives in localStorage, so that the app opens
// offline already logged in; tokens are refreshed by one request at a time (a refresh token
// is good for one use, and a second use revokes the device: D24).

const KEY = "zhiban.session";
const DEVICE_KEY = "zhiban.device_id";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let session = JSON.parse(localStorage.getItem(KEY) || "null");
let refreshing = null;

export function current() {
  return session;
}

function save(next) {
  session = next;
  if (next) {
    localStorage.setItem(KEY, JSON.stringify(next));
    localStorage.setItem(DEVICE_KEY, next.device_id);
  } else {
    localStorage.removeItem(KEY);
  }
}

async function errorOf(response) {
  const text = await response.text();
  try {
    return new ApiError(response.status, JSON.parse(text).error ?? text);
  } catch {
    return new ApiError(response.status, text || response.statusText);
  }
}

function tokens(body, rest) {
  return {
    ...rest,
    access_token: body.access_token,
    refresh_token: body.refresh_token,
    expires_at: Date.now() + body.expires_in * 1000,
    user_id: body.user_id,
    device_id: body.device_id,
    peer_id: body.peer_id,
  };
}

/** Logs in; `newPassword` when the server answers 428 (an admin set the password). */
export async function login(username, password, newPassword) {
  const body = {
    username,
    password,
    device_name: `${navigator.platform || "phone"} browser`,
    device_time: Date.now(),
  };
  const known = localStorage.getItem(DEVICE_KEY);
  if (known) body.device_id = known;
  if (newPassword) body.new_password = newPassword;
  let response = await post("/api/auth/login", body);
  if (response.status === 404 && body.device_id) {
    // Another user on this browser: a new device for them.
    delete body.device_id;
    response = await post("/api/auth/login", body);
  }
  if (!response.ok) throw await errorOf(response);
  const answer = await response.json();
  const me = await (await fetch("/api/me", { headers: { authorization: `Bearer ${answer.access_token}` } })).json();
  save(tokens(answer, { username, unit_id: me.unit_id, role: me.role, cleared: me.cleared }));
  return session;
}

export async function logout() {
  if (session) {
    try {
      await post("/api/auth/logout", { refresh_token: session.refresh_token });
    } catch {
      // Offline: the refresh token expires by itself; the phone forgets it now.
    }
  }
  save(null);
}

function post(path, body, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
}

/** A valid access token, refreshed a minute before it expires. */
export async function accessToken() {
  if (!session) throw new ApiError(401, "not logged in");
  if (session.expires_at - Date.now() > 60_000) return session.access_token;
  refreshing ??= refresh().finally(() => {
    refreshing = null;
  });
  await refreshing;
  return session.access_token;
}

async function refresh() {
  const response = await post("/api/auth/refresh", {
    refresh_token: session.refresh_token,
    device_time: Date.now(),
  });
  if (response.status === 401) {
    const error = await errorOf(response);
    save(null);
    window.dispatchEvent(new CustomEvent("zhiban:logged-out", { detail: error.message }));
    throw error;
  }
  if (!response.ok) throw await errorOf(response);
  const { username, unit_id, role, cleared } = session;
  save(tokens(await response.json(), { username, unit_id, role, cleared }));
}

/** `method path` as the logged-in user; the answer's JSON (null when empty). */
export async function api(method, path, body) {
  const send = async token => {
    const headers = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    return fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  };
  let response = await send(await accessToken());
  if (response.status === 401 && session) {
    // A token the server no longer takes (a new key, a clock off): one refresh decides.
    session.expires_at = 0;
    response = await send(await accessToken());
  }
  if (!response.ok) throw await errorOf(response);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** A ticket for one `/sync` connection (the URL of a websocket may be logged by proxies). */
export async function syncTicket() {
  const { ticket } = await api("POST", "/api/sync/ticket");
  return ticket;
}
