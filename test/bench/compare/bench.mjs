// JS side of Convene's cross-library presence benchmark (see README.md).
//
// Runs the cursor workload through Loro's EphemeralStore (loro-crdt) and Yjs awareness
// (y-protocols) and prints one JSON object on stdout. The Go driver (main.go) runs this file,
// measures Convene's ephemeral.Store with the same method and prints the combined table.
//
//   node --expose-gc bench.mjs [--runs 5] [--min-time 0.5] [--sizes 100,1000]
//
// Method, the same as the Go side: a calibration pass finds the op count that takes at least
// --min-time seconds (this is also the warm-up), then --runs timed runs of that count are made and
// the median is reported. Inputs (update streams, snapshots, fresh receivers) are prepared outside
// the timed region. Every run is checked: the receiver must hold the last value sent, and one
// untimed run per system counts the applied updates through the library's own events.

import { createRequire } from 'node:module'
import { EphemeralStore } from 'loro-crdt'
import * as Y from 'yjs'
import { Awareness, encodeAwarenessUpdate, applyAwarenessUpdate } from 'y-protocols/awareness'

const require = createRequire(import.meta.url)

// ---- configuration ----------------------------------------------------------------------------

function parseArgs (argv) {
  const cfg = { runs: 5, minTime: 0.5, sizes: [100, 1000] }
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]
    const v = argv[i + 1]
    if (a === '--runs') { cfg.runs = Number(v); i++ } else if (a === '--min-time') { cfg.minTime = Number(v); i++ } else if (a === '--sizes') { cfg.sizes = v.split(',').map(Number); i++ } else {
      throw new Error(`bench.mjs: unknown argument ${a}`)
    }
  }
  if (!(cfg.runs >= 1) || !(cfg.minTime > 0) || cfg.sizes.some(n => !(n >= 1))) {
    throw new Error('bench.mjs: bad --runs, --min-time or --sizes')
  }
  return cfg
}

const cfg = parseArgs(process.argv)
const MIN_NS = cfg.minTime * 1e9

// Loro stores in this benchmark use loro-extended's timeout (2^31-1 ms, about 24.8 days) so that
// no entry expires while a run is in progress. The timeout only decides which entries are
// skipped; it does not change the work done per entry. (A larger value would overflow the JS
// wrapper's setInterval(timeout/2).)
const LORO_TIMEOUT = 2 ** 31 - 1

// ---- workload ---------------------------------------------------------------------------------

const NAME = 'alice'
// The cursor of the bytes measurement: the middle of a 2560x1440 screen.
const FIXED = { x: 1280, y: 720 }
// The i-th distinct cursor position of a stream (distinct for every i < 2^31).
const cursorX = (i) => i % 2048
const cursorY = (i) => Math.floor(i / 2048)

// loro-extended keys presence by its peerId, a u64 printed in decimal (20 digits here).
const LORO_SHORT_ID = '12297829382473034410'
// A libp2p Ed25519 peer ID in base58 ("12D3KooW" + 44 more characters = 52).
const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
function peerIDString (seed) {
  let s = '12D3KooW'
  let x = (seed * 2654435761 + 12345) >>> 0
  while (s.length < 52) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    s += B58[(x >>> 16) % 58]
  }
  return s
}
// Yjs client IDs are random uint32; almost all take 5 bytes as a varUint. Fixed for repeatable sizes.
const YJS_CLIENT = 0xdeadbeef

// ---- timing -----------------------------------------------------------------------------------

const now = () => process.hrtime.bigint()
const gc = globalThis.gc ?? (() => {})

// measure runs batch(n) (which returns the elapsed ns of n operations, timing only the operations)
// until it has an n that takes >= MIN_NS, then cfg.runs timed runs of n. It returns the ns per
// operation of each run and the median.
function measure (batch, startN = 16) {
  let n = startN
  let el = batch(n) // warm-up and calibration
  while (el < MIN_NS) {
    const f = el > 0 ? (MIN_NS / el) * 1.2 : 100
    n = Math.max(n + 1, Math.ceil(n * Math.min(f, 100)))
    el = batch(n)
  }
  const perOp = []
  for (let r = 0; r < cfg.runs; r++) {
    gc()
    let t = batch(n)
    while (t < MIN_NS) { // the machine got faster: grow n and redo this run
      n = Math.ceil(n * (MIN_NS / t) * 1.2)
      t = batch(n)
    }
    perOp.push(t / n)
  }
  return { nsPerOp: median(perOp), runsNsPerOp: perOp, opsPerRun: n }
}

function median (xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

function check (cond, msg) {
  if (!cond) throw new Error('bench.mjs: check failed: ' + msg)
}

// ---- Loro -------------------------------------------------------------------------------------

function loroFree (st) {
  st.destroy() // clears the JS wrapper's sweep timer
  st.inner.free() // frees the wasm EphemeralStoreWasm now instead of at finalisation
}

function loroState (x, y) {
  return { cursor: { x, y }, name: NAME }
}

// withClock runs fn while Date.now() returns ms. loro-crdt's wasm reads the wall clock through the
// wasm-bindgen import `__wbg_now_*`, which calls Date.now() on every call, so this sets the
// timestamp that EphemeralStore.set writes into the entry (see README.md).
function withClock (ms, fn) {
  const real = Date.now
  Date.now = () => ms
  try { return fn() } finally { Date.now = real }
}

function loroBytes (key) {
  const st = new EphemeralStore(LORO_TIMEOUT)
  let sent = null
  const unsub = st.subscribeLocalUpdates((b) => { sent = b })
  st.set(key, loroState(FIXED.x, FIXED.y))
  unsub()
  const enc = st.encode(key)
  check(sent !== null && sent.length === enc.length, 'Loro subscribeLocalUpdates bytes == encode(key) bytes')
  loroFree(st)
  return sent.length
}

// set + encode(key), a fresh cursor each time.
function loroSetEncode () {
  const st = new EphemeralStore(LORO_TIMEOUT)
  let i = 0
  let sink = 0
  const r = measure((n) => {
    const t0 = now()
    for (let k = 0; k < n; k++, i++) {
      st.set(LORO_SHORT_ID, { cursor: { x: cursorX(i), y: cursorY(i) }, name: NAME })
      sink += st.encode(LORO_SHORT_ID).length
    }
    return Number(now() - t0)
  })
  check(sink > 0 && st.get(LORO_SHORT_ID).cursor.x === cursorX(i - 1), 'Loro set+encode final value')
  loroFree(st)
  return r
}

// set with a subscribeLocalUpdates listener (the library's own "send this" hook), a fresh cursor each time.
function loroSetSubscribe () {
  const st = new EphemeralStore(LORO_TIMEOUT)
  let i = 0
  let got = 0
  let sink = 0
  const unsub = st.subscribeLocalUpdates((b) => { got++; sink += b.length })
  const r = measure((n) => {
    const t0 = now()
    for (let k = 0; k < n; k++, i++) {
      st.set(LORO_SHORT_ID, { cursor: { x: cursorX(i), y: cursorY(i) }, name: NAME })
    }
    return Number(now() - t0)
  })
  unsub()
  check(got === i && sink > 0, `Loro subscribeLocalUpdates fired once per set (${got} of ${i})`)
  loroFree(st)
  return r
}

// loroStream returns n updates from one sender, each with its own millisecond timestamp
// (base+0 .. base+n-1, all in the past), produced by the real EphemeralStore.set under a mocked clock.
function loroStream (n) {
  const st = new EphemeralStore(LORO_TIMEOUT)
  const out = new Array(n)
  let k = 0
  const unsub = st.subscribeLocalUpdates((b) => { out[k] = b })
  const base = Date.now() - n - 1000
  for (; k < n; k++) {
    withClock(base + k, () => st.set(LORO_SHORT_ID, loroState(cursorX(k), cursorY(k))))
  }
  unsub()
  loroFree(st)
  check(out.every(b => b instanceof Uint8Array && b.length > 0), 'Loro stream complete')
  return out
}

function loroApply () {
  let stream = []
  const r = measure((n) => {
    if (stream.length < n) stream = loroStream(n)
    const rx = new EphemeralStore(LORO_TIMEOUT)
    const t0 = now()
    for (let k = 0; k < n; k++) rx.apply(stream[k])
    const el = Number(now() - t0)
    check(rx.get(LORO_SHORT_ID).cursor.x === cursorX(n - 1) && rx.get(LORO_SHORT_ID).cursor.y === cursorY(n - 1),
      'Loro receiver holds the last update')
    loroFree(rx)
    return el
  })
  // Untimed: the receiver's own events show that every update was applied, not just the last.
  const n = Math.min(stream.length, 20000)
  const applied = loroCountApplied(stream.slice(0, n))
  check(applied === n, `Loro applied ${applied} of ${n} distinct-timestamp updates`)
  stream = null
  return { ...r, verified: { sent: n, applied } }
}

function loroCountApplied (updates) {
  const rx = new EphemeralStore(LORO_TIMEOUT)
  let applied = 0
  const unsub = rx.subscribe((ev) => { if (ev.by === 'import') applied += ev.added.length + ev.updated.length })
  for (const u of updates) rx.apply(u)
  unsub()
  loroFree(rx)
  return applied
}

// The hazard the mocked clock avoids: the same stream produced with the real clock, as fast as set runs.
function loroRealClock (n) {
  const st = new EphemeralStore(LORO_TIMEOUT)
  const out = []
  const unsub = st.subscribeLocalUpdates((b) => out.push(b))
  const t0 = Date.now()
  for (let k = 0; k < n; k++) st.set(LORO_SHORT_ID, loroState(cursorX(k), cursorY(k)))
  const ms = Date.now() - t0 + 1
  unsub()
  loroFree(st)
  return { sent: n, applied: loroCountApplied(out), spanMs: ms }
}

function loroSnapshot (peers) {
  const src = new EphemeralStore(LORO_TIMEOUT)
  for (let p = 0; p < peers; p++) {
    src.set(loroPeerKey(p), loroState(cursorX(p), cursorY(p) + 1))
  }
  const snap = src.encodeAll()
  loroFree(src)
  const r = measure((n) => snapshotBatch(n, () => new EphemeralStore(LORO_TIMEOUT), (rx) => rx.apply(snap), (rx) => {
    check(rx.keys().length === peers, `Loro snapshot: ${rx.keys().length} of ${peers} peers`)
    loroFree(rx)
  }), 1)
  return { ...r, bytes: snap.length }
}

// Snapshot keys: 20-digit decimal ids like LORO_SHORT_ID, one per peer.
function loroPeerKey (p) {
  return (10000000000000000000n + BigInt(p) * 7919n).toString()
}

// snapshotBatch applies one snapshot into n fresh receivers, one at a time, as a joiner does:
// each receiver is created just before and checked and released just after its timed apply.
// It returns the summed apply time.
function snapshotBatch (n, fresh, apply, done) {
  let el = 0
  for (let k = 0; k < n; k++) {
    const rx = fresh()
    const t0 = now()
    apply(rx)
    el += Number(now() - t0)
    done(rx)
  }
  return el
}

// ---- Yjs --------------------------------------------------------------------------------------

function yjsAwareness (clientID) {
  const doc = new Y.Doc()
  doc.clientID = clientID
  return new Awareness(doc)
}

function yjsClose (aw) {
  aw.destroy() // clears the 3 s check interval
  aw.doc.destroy()
}

function yjsBytes () {
  const aw = yjsAwareness(YJS_CLIENT)
  aw.setLocalState({ cursor: { x: 0, y: 0 }, name: NAME }) // the state exists; the user now moves the cursor
  aw.setLocalState({ cursor: { x: FIXED.x, y: FIXED.y }, name: NAME })
  const b = encodeAwarenessUpdate(aw, [aw.clientID])
  yjsClose(aw)
  return b.length
}

// setLocalState + encodeAwarenessUpdate, a fresh cursor each time.
function yjsSetEncode () {
  const aw = yjsAwareness(YJS_CLIENT)
  const ids = [aw.clientID]
  let i = 0
  let sink = 0
  const r = measure((n) => {
    const t0 = now()
    for (let k = 0; k < n; k++, i++) {
      aw.setLocalState({ cursor: { x: cursorX(i), y: cursorY(i) }, name: NAME })
      sink += encodeAwarenessUpdate(aw, ids).length
    }
    return Number(now() - t0)
  })
  check(sink > 0 && aw.getLocalState().cursor.x === cursorX(i - 1), 'Yjs set+encode final value')
  yjsClose(aw)
  return r
}

function yjsStream (n) {
  const aw = yjsAwareness(YJS_CLIENT)
  const ids = [aw.clientID]
  const out = new Array(n)
  for (let k = 0; k < n; k++) {
    aw.setLocalState({ cursor: { x: cursorX(k), y: cursorY(k) }, name: NAME })
    out[k] = encodeAwarenessUpdate(aw, ids)
  }
  yjsClose(aw)
  return out
}

function yjsApply () {
  let stream = []
  const r = measure((n) => {
    if (stream.length < n) stream = yjsStream(n)
    const rx = yjsAwareness(1)
    const t0 = now()
    for (let k = 0; k < n; k++) applyAwarenessUpdate(rx, stream[k], 'remote')
    const el = Number(now() - t0)
    const st = rx.getStates().get(YJS_CLIENT)
    check(st.cursor.x === cursorX(n - 1) && st.cursor.y === cursorY(n - 1), 'Yjs receiver holds the last update')
    yjsClose(rx)
    return el
  })
  const n = Math.min(stream.length, 20000)
  const rx = yjsAwareness(1)
  let applied = 0
  rx.on('update', ({ added, updated }) => { applied += added.length + updated.length })
  for (let k = 0; k < n; k++) applyAwarenessUpdate(rx, stream[k], 'remote')
  yjsClose(rx)
  check(applied === n, `Yjs applied ${applied} of ${n}`)
  stream = null
  return { ...r, verified: { sent: n, applied } }
}

function yjsSnapshot (peers) {
  // What y-websocket-server sends a joiner: one update with every client's state, gathered by a hub
  // from each client's own update.
  const hub = yjsAwareness(0)
  hub.setLocalState(null)
  const ids = []
  for (let p = 0; p < peers; p++) {
    const id = 1000000 + p * 7919
    const aw = yjsAwareness(id)
    aw.setLocalState({ cursor: { x: cursorX(p), y: cursorY(p) + 1 }, name: NAME })
    applyAwarenessUpdate(hub, encodeAwarenessUpdate(aw, [id]), 'join')
    yjsClose(aw)
    ids.push(id)
  }
  const snap = encodeAwarenessUpdate(hub, ids)
  yjsClose(hub)
  const r = measure((n) => snapshotBatch(n, () => yjsAwareness(1), (rx) => applyAwarenessUpdate(rx, snap, 'remote'), (rx) => {
    check(rx.getStates().size === peers + 1, `Yjs snapshot: ${rx.getStates().size - 1} of ${peers} peers`)
    yjsClose(rx)
  }), 1)
  return { ...r, bytes: snap.length }
}

// ---- main -------------------------------------------------------------------------------------

function version (pkg) {
  return require(`${pkg}/package.json`).version
}

const out = {
  node: process.version,
  versions: { 'loro-crdt': version('loro-crdt'), 'y-protocols': version('y-protocols'), yjs: version('yjs'), lib0: version('lib0') },
  config: { runs: cfg.runs, minTimeSeconds: cfg.minTime, sizes: cfg.sizes, gcBetweenRuns: globalThis.gc !== undefined },
  loro: {
    bytesShortID: loroBytes(LORO_SHORT_ID),
    bytesPeerID: loroBytes(peerIDString(1)),
    keyShortID: LORO_SHORT_ID,
    keyPeerID: peerIDString(1)
  },
  yjs: { bytes: yjsBytes() }
}
out.loro.setEncode = loroSetEncode()
out.loro.setSubscribe = loroSetSubscribe()
out.loro.apply = loroApply()
out.loro.realClock = loroRealClock(10000)
out.yjs.setEncode = yjsSetEncode()
out.yjs.apply = yjsApply()
out.loro.snapshot = {}
out.yjs.snapshot = {}
for (const p of cfg.sizes) {
  out.loro.snapshot[p] = loroSnapshot(p)
  out.yjs.snapshot[p] = yjsSnapshot(p)
}
process.stdout.write(JSON.stringify(out, null, 1) + '\n')
