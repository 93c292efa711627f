#!/usr/bin/env node
// Test peer for the Zhiban integration tests: the stock automerge-repo client
// (@automerge/automerge-repo 2.5.6 + WebSocketClientAdapter), driven by JSON lines.
//
//   node tests/js/peer.mjs --server http://127.0.0.1:PORT --username U --password P --device NAME
//
// 1. Logs in with POST {server}/api/auth/login.
// 2. Opens a storage-less Repo connected to ws://HOST/sync?ticket=TICKET (a fresh ticket from
//    POST /api/sync/ticket for every connection) and waits for the
//    server's `peer` handshake.
// 3. Prints {"ok":true,"ready":true,...} and then answers every command line read from stdin
//    with exactly one JSON line on stdout. Commands run one at a time, in the order received.
//    Everything else (logs, library chatter) goes to stderr.
//
// Commands (each may carry "id", echoed in the reply; timeout_ms defaults to 10000):
//   {"cmd":"create","doc":{..},"wait_synced"?:true}  -> {"ok":true,"url","document_id","heads"}
//        waits (by default) until the server acknowledged the document; on timeout the reply is
//        {"ok":false,"error":"timeout","url",..}
//   {"cmd":"find","url","timeout_ms"?}               -> {"ok":true,"document_id","doc","heads"}
//        | {"ok":false,"error":"unavailable"} (the server said doc-unavailable, or no peer is
//          connected) | {"ok":false,"error":"timeout"}
//   {"cmd":"set","url","path":[..],"value","wait_synced"?:false} -> {"ok":true,"heads"}
//   {"cmd":"push","url","path":[..],"value","wait_synced"?:false} -> {"ok":true,"heads","len"}
//   {"cmd":"get","url"}                              -> {"ok":true,"doc","heads"}
//   {"cmd":"wait","url","path","equals","timeout_ms"?}   -> {"ok":true,"value","doc","heads"}
//        | {"ok":false,"error":"timeout","doc","value"}
//   {"cmd":"wait_len","url","path","len","timeout_ms"?}  -> same, once the list has >= len items
//   {"cmd":"synced","url","timeout_ms"?}             -> {"ok":true,"heads"} once the server's
//        sync state shows it has every local head
//   {"cmd":"ping"}                                   -> {"ok":true,"server_peer_id","peers"}
//   {"cmd":"close"}                                  -> {"ok":true,"closed":true}, then exit 0
// set/push/get/wait/wait_len/synced load the document with repo.find first if needed. Heads are
// automerge-repo's base58 encoding (DocHandle.heads()). Any failure is {"ok":false,"error":".."}.
// stdin EOF: finish queued commands, shut down, exit 0. Rust side: tests/support/js_peer.rs.

import { Repo, cbor } from "@automerge/automerge-repo";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";
import * as A from "@automerge/automerge";
import { createInterface } from "node:readline";

// ---------------------------------------------------------------------------------------------
// stdout belongs to the protocol: send every console.* call to stderr (automerge-repo itself uses
// console.log in a few error paths).
const toStderr = (...args) => console.error(...args);
console.log = toStderr;
console.info = toStderr;
console.warn = toStderr;
console.debug = toStderr;

function log(...args) {
  console.error("[peer.mjs]", ...args);
}

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function errorText(err) {
  if (err instanceof Error) return err.message || String(err);
  if (typeof err === "string") return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

function fail(message) {
  reply({ ok: false, error: message });
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// Arguments

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument: ${a}`);
    const eq = a.indexOf("=");
    if (eq >= 0) {
      out[a.slice(2, eq)] = a.slice(eq + 1);
    } else {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
      out[a.slice(2)] = argv[++i];
    }
  }
  return out;
}

let args;
try {
  args = parseArgs(process.argv.slice(2));
  for (const k of ["server", "username", "password", "device"]) {
    if (typeof args[k] !== "string") throw new Error(`missing --${k}`);
  }
} catch (e) {
  fail(`usage: peer.mjs --server URL --username U --password P --device NAME (${errorText(e)})`);
}
const server = args.server.replace(/\/+$/, "");
const READY_TIMEOUT_MS = Number(args["ready-timeout-ms"] ?? 20000);

// ---------------------------------------------------------------------------------------------
// Global error handling: never die silently.

let ready = false;
let login = null; // the login response, once we have it

process.on("uncaughtException", err => {
  log("uncaught exception:", err);
  if (!ready) fail(`${login ? "connect" : "startup"} failed: ${errorText(err)}`);
});
process.on("unhandledRejection", err => {
  log("unhandled rejection:", err);
  if (!ready) fail(`${login ? "connect" : "startup"} failed: ${errorText(err)}`);
});

// ---------------------------------------------------------------------------------------------
// Helpers

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

class TimeoutError extends Error {
  constructor() {
    super("timeout");
  }
}

/** Resolves/rejects with `promise`, or rejects with TimeoutError after `ms`. */
function withTimeout(promise, ms) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError()), ms);
  });
  promise.catch(() => {}); // a late rejection after the timeout is not "unhandled"
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** Plain JSON value of an automerge document (or sub-value). */
function toJson(value) {
  if (value === undefined) return null;
  return JSON.parse(JSON.stringify(A.toJS(value)));
}

function deepEqual(a, b) {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    return a.length === b.length && a.every((v, i) => deepEqual(v, b[i]));
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every(k => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]));
}

/** Value at `path` inside plain JSON `doc`, or undefined. */
function valueAt(doc, path) {
  let cur = doc;
  for (const key of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = cur[key];
  }
  return cur;
}

function checkPath(path, allowEmpty) {
  if (!Array.isArray(path)) throw new Error("path must be an array");
  if (!allowEmpty && path.length === 0) throw new Error("path must not be empty");
  for (const k of path) {
    if (typeof k !== "string" && !(Number.isInteger(k) && k >= 0)) {
      throw new Error(`bad path element ${JSON.stringify(k)}`);
    }
  }
  return path;
}

/** Inside a change callback: the container at `path`, creating maps for missing/non-object steps. */
function ensureMaps(doc, path) {
  let cur = doc;
  for (const key of path) {
    const next = cur[key];
    if (next === null || next === undefined || typeof next !== "object") {
      cur[key] = {};
    }
    cur = cur[key];
  }
  return cur;
}

function heads(handle) {
  return handle.heads();
}

// ---------------------------------------------------------------------------------------------
// 1. Login

try {
  const res = await fetch(`${server}/api/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: args.username, password: args.password, device_name: args.device }),
  });
  const body = await res.text();
  if (res.status !== 200) fail(`login failed: ${res.status} ${body}`);
  login = JSON.parse(body);
  for (const k of ["access_token", "peer_id"]) {
    if (typeof login[k] !== "string" || login[k] === "") throw new Error(`login response lacks ${k}: ${body}`);
  }
} catch (e) {
  fail(`login failed: ${errorText(e)}`);
}

// ---------------------------------------------------------------------------------------------
// 2. Repo

// The server opens /sync with a short-lived ticket, never an access token in the URL. The stock
// adapter takes one fixed URL, so each (re)connection fetches a ticket first and then connects
// the stock way.
class TicketWebSocketAdapter extends WebSocketClientAdapter {
  #syncUrl;
  #ticket;
  #fetching = false;
  #stopped = false;

  constructor(syncUrl, ticket, retryInterval) {
    super(syncUrl, retryInterval);
    this.#syncUrl = syncUrl;
    this.#ticket = ticket;
  }

  connect(peerId, peerMetadata) {
    if (this.#fetching || this.#stopped) return;
    this.#fetching = true;
    this.#ticket()
      .then(ticket => {
        this.#fetching = false;
        if (this.#stopped) return;
        this.url = `${this.#syncUrl}?ticket=${encodeURIComponent(ticket)}`;
        super.connect(peerId, peerMetadata);
      })
      .catch(e => {
        this.#fetching = false;
        log("no sync ticket:", errorText(e));
        if (!this.#stopped) setTimeout(() => this.connect(peerId, peerMetadata), this.retryInterval);
      });
  }

  disconnect() {
    this.#stopped = true;
    if (this.socket) super.disconnect();
  }
}

async function syncTicket() {
  const res = await fetch(`${server}/api/sync/ticket`, {
    method: "POST",
    headers: { authorization: `Bearer ${login.access_token}` },
  });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`ticket refused: ${res.status} ${body}`);
  return JSON.parse(body).ticket;
}

const wsUrl = `${server.replace(/^http/, "ws")}/sync`;
const adapter = new TicketWebSocketAdapter(wsUrl, syncTicket, 5000);
// Observe (without changing) what the stock adapter sees, so that a refused connection fails the
// start quickly with the server's reason instead of retrying until the ready timeout.
let lastServerError = null;
let closedBeforeReady = false;
const origReceive = adapter.receiveMessage.bind(adapter);
adapter.receiveMessage = bytes => {
  try {
    const m = cbor.decode(new Uint8Array(bytes));
    if (m && m.type === "error") {
      lastServerError = m.message ?? JSON.stringify(m);
      log("server error message:", lastServerError);
    }
  } catch {
    // the adapter reports undecodable messages itself
  }
  return origReceive(bytes);
};
const origOnClose = adapter.onClose;
adapter.onClose = (...a) => {
  log("websocket closed");
  if (!ready) closedBeforeReady = true;
  return origOnClose(...a);
};
const repo = new Repo({
  network: [adapter],
  peerId: login.peer_id,
  sharePolicy: async () => true,
});

// Latest sync state per document per remote peer (for the "synced" command).
const syncStates = new Map(); // documentId -> Map(peerId -> syncState)
const syncWaiters = new Set(); // callbacks re-checked on every sync-state event
repo.synchronizer.on("sync-state", ({ documentId, peerId, syncState }) => {
  let perDoc = syncStates.get(documentId);
  if (!perDoc) syncStates.set(documentId, (perDoc = new Map()));
  perDoc.set(peerId, syncState);
  for (const cb of [...syncWaiters]) cb();
});

let serverPeerId = null;
repo.networkSubsystem.on("peer", ({ peerId }) => {
  log("peer connected:", peerId);
  serverPeerId = peerId;
});
repo.networkSubsystem.on("peer-disconnected", ({ peerId }) => {
  log("peer disconnected:", peerId);
  if (serverPeerId === peerId) serverPeerId = null;
  for (const perDoc of syncStates.values()) perDoc.delete(peerId);
});

try {
  // whenReady() alone is not enough: the websocket adapter force-resolves it after 1 s even if the
  // server never answered the join. Wait for the server's `peer` message itself.
  await withTimeout(
    (async () => {
      while (!serverPeerId) {
        if (closedBeforeReady) {
          throw new Error(
            `websocket closed before the peer handshake${lastServerError ? ` (server said: ${lastServerError})` : ""}`,
          );
        }
        await sleep(10);
      }
      await repo.networkSubsystem.whenReady();
    })(),
    READY_TIMEOUT_MS,
  );
} catch (e) {
  fail(
    e instanceof TimeoutError
      ? `no peer handshake from ${wsUrl} within ${READY_TIMEOUT_MS} ms`
      : `connect failed: ${errorText(e)}`,
  );
}

ready = true;
reply({
  ok: true,
  ready: true,
  peer_id: login.peer_id,
  user_id: login.user_id ?? null,
  device_id: login.device_id ?? null,
  server_peer_id: serverPeerId,
});

// ---------------------------------------------------------------------------------------------
// 3. Commands

const DEFAULT_TIMEOUT_MS = 10000;
const handles = new Map(); // url/documentId string -> DocHandle

function timeoutOf(cmd) {
  const t = cmd.timeout_ms;
  return typeof t === "number" && t >= 0 ? t : DEFAULT_TIMEOUT_MS;
}

function isUnavailableError(e) {
  return /unavailable/i.test(errorText(e));
}

/** A ready handle for `url`; throws Error("unavailable") / TimeoutError. */
async function handleFor(url, timeoutMs) {
  if (typeof url !== "string" || url === "") throw new Error("url must be a non-empty string");
  const cached = handles.get(url);
  if (cached && cached.isReady()) return cached;
  let handle;
  try {
    handle = await withTimeout(repo.find(url), timeoutMs);
  } catch (e) {
    if (e instanceof TimeoutError) throw e;
    if (isUnavailableError(e)) throw new Error("unavailable");
    throw e;
  }
  handles.set(url, handle);
  return handle;
}

/** Waits until `check()` returns a truthy value, re-checking on every change of `handle`. */
function waitFor(handle, check, timeoutMs, extraSubscribe) {
  return new Promise((resolve, reject) => {
    let done = false;
    let unsubscribeExtra = () => {};
    const finish = (fn, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      handle.off("change", onChange);
      unsubscribeExtra();
      fn(v);
    };
    const onChange = () => {
      try {
        const r = check();
        if (r) finish(resolve, r);
      } catch (e) {
        finish(reject, e);
      }
    };
    const timer = setTimeout(() => finish(reject, new TimeoutError()), timeoutMs);
    handle.on("change", onChange);
    if (extraSubscribe) unsubscribeExtra = extraSubscribe(onChange);
    onChange();
  });
}

const COMMANDS = {
  // {"cmd":"ping"} -> {"ok":true,"server_peer_id":...,"peers":[...]}
  async ping() {
    return { ok: true, server_peer_id: serverPeerId, peers: repo.peers };
  },

  // {"cmd":"create","doc":{...},"wait_synced"?:true,"timeout_ms"?} -> {"ok":true,"url","document_id","heads"}
  async create(cmd) {
    const initial = cmd.doc ?? {};
    if (initial === null || typeof initial !== "object" || Array.isArray(initial)) {
      throw new Error("doc must be a JSON object");
    }
    const handle = repo.create(initial);
    handles.set(handle.url, handle);
    const out = { ok: true, url: handle.url, document_id: handle.documentId, heads: heads(handle) };
    // Unless told otherwise, answer only once the server has acknowledged the new document:
    // otherwise another peer's immediate `find` races the upload and may get "unavailable".
    if (cmd.wait_synced ?? true) {
      try {
        await syncedWith(handle, timeoutOf(cmd));
      } catch (e) {
        if (e instanceof TimeoutError) return { ...out, ok: false, error: "timeout" };
        throw e;
      }
    }
    return out;
  },

  // {"cmd":"find","url","timeout_ms"} -> {"ok":true,"doc","heads"} | error "unavailable" | "timeout"
  async find(cmd) {
    const handle = await handleFor(cmd.url, timeoutOf(cmd));
    return { ok: true, document_id: handle.documentId, doc: toJson(handle.doc()), heads: heads(handle) };
  },

  // {"cmd":"set","url","path":[...],"value"} -> {"ok":true,"heads"}
  async set(cmd) {
    const path = checkPath(cmd.path, false);
    if (!("value" in cmd)) throw new Error("missing value");
    const handle = await handleFor(cmd.url, timeoutOf(cmd));
    const value = cmd.value;
    handle.change(doc => {
      const parent = ensureMaps(doc, path.slice(0, -1));
      parent[path[path.length - 1]] = value;
    });
    if (cmd.wait_synced) await syncedWith(handle, timeoutOf(cmd));
    return { ok: true, heads: heads(handle) };
  },

  // {"cmd":"push","url","path":[...],"value"} -> {"ok":true,"heads","len"}
  async push(cmd) {
    const path = checkPath(cmd.path, false);
    if (!("value" in cmd)) throw new Error("missing value");
    const handle = await handleFor(cmd.url, timeoutOf(cmd));
    const value = cmd.value;
    let len = 0;
    handle.change(doc => {
      const parent = ensureMaps(doc, path.slice(0, -1));
      const key = path[path.length - 1];
      if (!Array.isArray(parent[key])) parent[key] = [];
      parent[key].push(value);
      len = parent[key].length;
    });
    if (cmd.wait_synced) await syncedWith(handle, timeoutOf(cmd));
    return { ok: true, heads: heads(handle), len };
  },

  // {"cmd":"get","url"} -> {"ok":true,"doc","heads"}
  async get(cmd) {
    const handle = await handleFor(cmd.url, timeoutOf(cmd));
    return { ok: true, doc: toJson(handle.doc()), heads: heads(handle) };
  },

  // {"cmd":"wait","url","path","equals","timeout_ms"} -> {"ok":true,"value","doc","heads"}
  async wait(cmd) {
    const path = checkPath(cmd.path ?? [], true);
    if (!("equals" in cmd)) throw new Error("missing equals");
    return waitUntil(cmd, path, v => v !== undefined && deepEqual(v, cmd.equals));
  },

  // {"cmd":"wait_len","url","path","len","timeout_ms"} -> {"ok":true,"value","doc","heads"}
  async wait_len(cmd) {
    const path = checkPath(cmd.path ?? [], true);
    if (!Number.isInteger(cmd.len)) throw new Error("len must be an integer");
    return waitUntil(cmd, path, v => Array.isArray(v) && v.length >= cmd.len);
  },

  // {"cmd":"synced","url","timeout_ms"} -> {"ok":true,"heads"} once the server has all local changes
  async synced(cmd) {
    const timeoutMs = timeoutOf(cmd);
    const handle = await handleFor(cmd.url, timeoutMs);
    await syncedWith(handle, timeoutMs);
    return { ok: true, heads: heads(handle) };
  },

  // {"cmd":"close"} -> {"ok":true}, then exit 0
  async close() {
    await shutdown();
    return { ok: true, closed: true };
  },
};

/** Shared implementation of wait / wait_len. The deadline covers finding the document too. */
async function waitUntil(cmd, path, pred) {
  const timeoutMs = timeoutOf(cmd);
  const deadline = Date.now() + timeoutMs;
  const handle = await handleFor(cmd.url, timeoutMs);
  let last = null;
  try {
    await waitFor(
      handle,
      () => {
        last = toJson(handle.doc());
        return pred(valueAt(last, path));
      },
      Math.max(0, deadline - Date.now()),
    );
  } catch (e) {
    if (e instanceof TimeoutError) {
      const doc = handle.isReady() ? toJson(handle.doc()) : last;
      return { ok: false, error: "timeout", doc, value: valueAt(doc, path) ?? null };
    }
    throw e;
  }
  return { ok: true, value: valueAt(last, path) ?? null, doc: last, heads: heads(handle) };
}

/** Resolves once a connected server peer's sync state shows it has every local head. */
async function syncedWith(handle, timeoutMs) {
  const documentId = handle.documentId;
  const check = () => {
    if (!serverPeerId || !handle.isReady()) return false;
    const st = syncStates.get(documentId)?.get(serverPeerId);
    // theirHeads is null until this peer has sent us a sync message on the current connection
    // (a reconnect round-trips the sync state through encode/decode, which keeps only
    // sharedHeads), so a state left over from an earlier connection never counts.
    if (!st || !st.theirHeads) return false;
    const known = new Set([...(st.theirHeads ?? []), ...(st.sharedHeads ?? [])]);
    return A.getHeads(handle.doc()).every(h => known.has(h));
  };
  try {
    await waitFor(handle, check, timeoutMs, cb => {
      syncWaiters.add(cb);
      return () => syncWaiters.delete(cb);
    });
  } catch (e) {
    // What each side believes, for whoever reads a failed test's output.
    const st = syncStates.get(documentId)?.get(serverPeerId);
    log(
      "not synced:",
      JSON.stringify({
        server: serverPeerId,
        local: A.getHeads(handle.doc()),
        theirHeads: st?.theirHeads,
        sharedHeads: st?.sharedHeads,
        lastSentHeads: st?.lastSentHeads,
        inFlight: st?.inFlight,
      }),
    );
    throw e;
  }
}

let shuttingDown = null;
function shutdown() {
  if (!shuttingDown) {
    shuttingDown = (async () => {
      try {
        await withTimeout(repo.shutdown(), 5000);
      } catch (e) {
        log("shutdown:", e);
      }
    })();
  }
  return shuttingDown;
}

function exitAfterFlush(code) {
  process.stdout.write("", () => process.exit(code));
}

async function runCommand(line) {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    return { ok: false, error: `bad JSON: ${errorText(e)}` };
  }
  if (cmd === null || typeof cmd !== "object" || Array.isArray(cmd)) {
    return { ok: false, error: "command must be a JSON object" };
  }
  const withId = r => ("id" in cmd ? { ...r, id: cmd.id } : r);
  const fn = Object.prototype.hasOwnProperty.call(COMMANDS, cmd.cmd) ? COMMANDS[cmd.cmd] : undefined;
  if (!fn) return withId({ ok: false, error: `unknown cmd: ${JSON.stringify(cmd.cmd)}` });
  try {
    return withId(await fn(cmd));
  } catch (e) {
    if (e instanceof TimeoutError) return withId({ ok: false, error: "timeout" });
    if (errorText(e) === "unavailable") log(`command ${cmd.cmd}: ${cmd.url} is unavailable`);
    else log(`command ${cmd.cmd} failed:`, e);
    return withId({ ok: false, error: errorText(e) });
  }
}

// Commands are handled strictly one after another.
let queue = Promise.resolve();
let closing = false;
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", line => {
  if (closing || line.trim() === "") return;
  queue = queue.then(async () => {
    const r = await runCommand(line);
    reply(r);
    if (r.closed) {
      closing = true;
      rl.close();
      exitAfterFlush(0);
    }
  });
});
rl.on("close", () => {
  // stdin closed: finish what was already queued, shut down, exit.
  queue = queue.then(async () => {
    await shutdown();
    exitAfterFlush(0);
  });
});
