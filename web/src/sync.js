// Local-first, as client-core: the stock automerge-repo with the phone's own IndexedDB (one
// database per user, so that a shared phone shows nobody what another left on it) and the
// websocket to the server, opened with a fresh ticket each time. A record is "received by
// the server" once the server's sync state holds every local head; that is remembered, so
// the phone still says so offline after a restart.
import { Repo, initializeWasm, Automerge } from "@automerge/automerge-repo/slim";
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";

import { syncTicket } from "./api.js";

let repo = null;
let serverPeer = null;
const listeners = new Set();
const serverStates = new Map(); // documentId -> the server's latest sync state
const RECEIVED_KEY = "zhiban.received";
const received = JSON.parse(localStorage.getItem(RECEIVED_KEY) || "{}"); // documentId -> heads

/** The stock adapter reconnects to a fixed URL; this one asks for a ticket first, each time. */
class TicketAdapter extends WebSocketClientAdapter {
  #base;
  #stopped = false;
  #fetching = false;

  constructor(base) {
    super(base, 5000);
    this.#base = base;
  }

  connect(peerId, peerMetadata) {
    if (this.#fetching || this.#stopped) return;
    this.#fetching = true;
    syncTicket()
      .then(ticket => {
        this.#fetching = false;
        if (this.#stopped) return;
        this.url = `${this.#base}?ticket=${encodeURIComponent(ticket)}`;
        super.connect(peerId, peerMetadata);
      })
      .catch(() => {
        // Offline, or the server unreachable: try again like the adapter itself does.
        this.#fetching = false;
        if (!this.#stopped) setTimeout(() => this.connect(peerId, peerMetadata), this.retryInterval);
      });
  }

  disconnect() {
    this.#stopped = true;
    if (this.socket) super.disconnect();
  }
}

function emit(event) {
  for (const listener of [...listeners]) listener(event);
}

export function onSync(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function connected() {
  return serverPeer !== null;
}

export async function start(session) {
  await initializeWasm(new URL("/automerge.wasm", location.href));
  const base = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/sync`;
  repo = new Repo({
    storage: new IndexedDBStorageAdapter(`zhiban-${session.user_id}`),
    network: [new TicketAdapter(base)],
    peerId: session.peer_id,
    sharePolicy: async () => true,
  });
  repo.networkSubsystem.on("peer", ({ peerId }) => {
    serverPeer = peerId;
    emit({ type: "connection" });
  });
  repo.networkSubsystem.on("peer-disconnected", ({ peerId }) => {
    if (serverPeer === peerId) serverPeer = null;
    serverStates.clear();
    emit({ type: "connection" });
  });
  repo.synchronizer.on("sync-state", ({ documentId, peerId, syncState }) => {
    if (peerId !== serverPeer) return;
    serverStates.set(documentId, syncState);
    const handle = repo.handles[documentId];
    if (handle?.isReady() && heldByServer(documentId, Automerge.getHeads(handle.doc()))) {
      received[documentId] = Automerge.getHeads(handle.doc());
      localStorage.setItem(RECEIVED_KEY, JSON.stringify(received));
    }
    emit({ type: "sync", documentId });
  });
  return repo;
}

export async function stop() {
  if (repo) await repo.shutdown();
  repo = null;
  serverPeer = null;
}

function heldByServer(documentId, heads) {
  const state = serverStates.get(documentId);
  // theirHeads is null until the server has spoken on this connection.
  const known = new Set([...(state?.theirHeads ?? []), ...(state?.sharedHeads ?? [])]);
  const confirmed = new Set(received[documentId] ?? []);
  return heads.every(head => known.has(head) || confirmed.has(head));
}

/** "received" once the server holds every change of the record made here, else "local". */
export function delivery(handle) {
  if (!handle.isReady()) return "local";
  return heldByServer(handle.documentId, Automerge.getHeads(handle.doc())) ? "received" : "local";
}

/** A new record, on the phone's disk when this returns. */
export async function create(initial) {
  const handle = repo.create(initial);
  await repo.flush([handle.documentId]);
  emit({ type: "created", documentId: handle.documentId });
  return handle;
}

export async function change(handle, edit) {
  handle.change(edit);
  await repo.flush([handle.documentId]);
}

export function find(url) {
  return repo.find(url);
}

/** Every document the catalogs of the user's units list, as they arrive (live). A catalog
 * not on the phone yet cannot be found before the server is connected (automerge-repo
 * answers "unavailable" then): it is tried again each time the server connects. */
export function follow(catalogIds, onEntries) {
  const pending = new Set(catalogIds);
  const attempt = () => {
    for (const id of [...pending]) {
      repo
        .find(`automerge:${id}`)
        .then(catalog => {
          if (!pending.delete(id)) return;
          const report = () => onEntries(Object.keys(catalog.doc()?.documents ?? {}));
          catalog.on("change", report);
          report();
        })
        .catch(() => {});
    }
  };
  repo.networkSubsystem.on("peer", attempt);
  attempt();
}
