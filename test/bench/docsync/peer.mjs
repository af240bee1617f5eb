// One automerge-repo peer of the document sync benchmark, driven by the Go
// command (go run ./test/bench/docsync) over stdin/stdout, one JSON object
// per line: a request {id, op, ...} gets one reply {id, ...} or {id, error}.
// Requests run concurrently (a "wait" does not block a "connect").
//
// The peer is a Repo with default settings (share policy: announce every
// document to every peer; the DocSynchronizer's 100 ms sync throttle), no
// storage, networked with @automerge/automerge-repo-network-websocket: "listen"
// adds a NodeWSServerAdapter on a loopback port, "connect" a
// WebSocketClientAdapter to a ws:// URL (the Go command's counting proxy).
//
// Times are CLOCK_MONOTONIC nanoseconds (process.hrtime.bigint, the clock the
// Go side reads too; the wall clock if CONVENE_DOCSYNC_CLOCK=wall), so a send time here and a receive time in another
// process compare directly.
import * as readline from "node:readline"
import * as fs from "node:fs"
import * as A from "@automerge/automerge"
import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter, WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { WebSocketServer } from "ws"

const versions = {}
for (const p of ["@automerge/automerge", "@automerge/automerge-repo", "@automerge/automerge-repo-network-websocket"]) {
  versions[p] = JSON.parse(fs.readFileSync(new URL(`node_modules/${p}/package.json`, import.meta.url))).version
}

const now = process.env.CONVENE_DOCSYNC_CLOCK === "wall"
  ? () => Math.round((performance.timeOrigin + performance.now()) * 1e6)
  : () => Number(process.hrtime.bigint())
const sleep = ms => new Promise(r => setTimeout(r, ms))

const repo = new Repo({ network: [] })
const handles = new Map() // doc id -> DocHandle
const watches = new Map() // doc id -> {seen: {key: [ns]}, remote: n, wake: [fn]}
const clients = []
let server = null, wss = null

function letter(x) {
  return String.fromCharCode(97 + ((x >>> 16) % 26))
}

// A small edit, the same as the Go peer's: n_<key> = i, and one letter
// appended to the shared text t.
function edit(h, key, i, x) {
  h.change(d => {
    d["n_" + key] = i
    A.splice(d, ["t"], d.t.length, 0, letter(x))
  })
}

function observe(id) {
  const w = watches.get(id)
  const h = handles.get(id)
  if (!w || !h) return
  const d = h.doc()
  const t = now()
  for (const key of Object.keys(w.seen)) {
    const v = d["n_" + key]
    if (typeof v !== "number") continue
    const s = w.seen[key]
    while (s.length <= v) s.push(t)
  }
  for (const f of w.wake.splice(0)) f()
}

function watch(id, keys) {
  let w = watches.get(id)
  if (!w) {
    w = { seen: {}, remote: 0, wake: [] }
    watches.set(id, w)
    const h = handles.get(id)
    h.on("change", () => { w.remote++; observe(id) })
  }
  for (const k of keys) if (!w.seen[k]) w.seen[k] = []
  observe(id)
}

function done(w, want) {
  for (const [k, n] of Object.entries(want)) if ((w.seen[k]?.length ?? 0) < n) return false
  return true
}

async function waitFor(id, want, timeoutMs) {
  const w = watches.get(id)
  const deadline = Date.now() + timeoutMs
  while (!done(w, want) && Date.now() < deadline) {
    await Promise.race([new Promise(r => w.wake.push(r)), sleep(Math.max(1, deadline - Date.now()))])
  }
  return { done: done(w, want), seen: w.seen, remote: w.remote, at: now() }
}

function peerEvent() {
  return new Promise(resolve => {
    const f = p => { repo.networkSubsystem.off("peer", f); resolve(p) }
    repo.networkSubsystem.on("peer", f)
  })
}

const ops = {
  hello: async () => ({ node: process.versions.node, versions }),
  listen: async () => {
    wss = new WebSocketServer({ host: "127.0.0.1", port: 0 })
    await new Promise((res, rej) => { wss.once("listening", res); wss.once("error", rej) })
    server = new NodeWSServerAdapter(wss)
    repo.networkSubsystem.addNetworkAdapter(server)
    return { port: wss.address().port, peer: repo.networkSubsystem.peerId }
  },
  connect: async ({ addr }) => {
    const got = peerEvent()
    const c = new WebSocketClientAdapter(addr)
    clients.push(c)
    repo.networkSubsystem.addNetworkAdapter(c)
    const p = await got
    return { peer: p.peerId }
  },
  disconnect: async () => {
    for (const c of clients.splice(0)) repo.networkSubsystem.removeNetworkAdapter(c)
    if (server) for (const s of Object.values(server.sockets)) s.terminate()
    return {}
  },
  open: async ({ doc, create }) => {
    let h
    if (create) {
      h = repo.create({ t: "" })
      await h.whenReady()
    } else {
      h = await repo.find(doc)
    }
    handles.set(h.documentId, h)
    return { doc: h.documentId }
  },
  // fetch: find a document this peer does not have and wait until it holds want.
  fetch: async ({ doc, want, timeout_ms }) => {
    const h = await repo.find(doc)
    handles.set(h.documentId, h)
    watch(h.documentId, Object.keys(want))
    return await waitFor(h.documentId, want, timeout_ms)
  },
  edit: async ({ doc, key, count, rate, seed }) => {
    const h = handles.get(doc)
    const sent = []
    let x = seed >>> 0
    const t0 = now()
    for (let i = 0; i < count; i++) {
      if (rate > 0) {
        const due = t0 + (i * 1e9) / rate
        const wait = (due - now()) / 1e6
        if (wait > 0) await sleep(wait)
      } else if (i % 500 === 499) {
        await sleep(0) // let the event loop (network) run
      }
      x = (Math.imul(x, 1103515245) + 12345) & 0x7fffffff
      sent.push(now())
      edit(h, key, i, x)
    }
    return { sent }
  },
  watch: async ({ doc, keys }) => { watch(doc, keys); return {} },
  wait: async ({ doc, want, timeout_ms }) => waitFor(doc, want, timeout_ms),
  state: async ({ doc }) => {
    const h = handles.get(doc)
    const d = h.doc()
    const n = {}
    for (const [k, v] of Object.entries(d)) if (k.startsWith("n_")) n[k.slice(2)] = v
    return { heads: [...A.getHeads(d)].sort(), text: d.t.length, n, save: A.save(d).length }
  },
  rusage: async () => {
    const u = process.cpuUsage()
    return { cpu_ns: (u.user + u.system) * 1000 }
  },
  conns: async () => ({ addrs: [] }),
  quit: async () => { setImmediate(() => process.exit(0)); return {} },
}

const out = obj => process.stdout.write(JSON.stringify(obj) + "\n")
const rl = readline.createInterface({ input: process.stdin })
rl.on("line", line => {
  let req
  try { req = JSON.parse(line) } catch (e) { out({ id: -1, error: String(e) }); return }
  const f = ops[req.op]
  if (!f) { out({ id: req.id, error: "unknown op " + req.op }); return }
  f(req).then(r => out({ id: req.id, ...r }), e => out({ id: req.id, error: String(e?.stack ?? e) }))
})
rl.on("close", () => process.exit(0))
