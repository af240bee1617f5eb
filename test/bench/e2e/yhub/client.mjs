// A y-websocket client process holding some of the room's nodes: each node
// is what a browser tab runs (a Y.Doc, its Awareness, a WebsocketProvider
// to the hub), with the awareness state {name, cursor: {x, y}}. Driven over
// the line protocol (lines.mjs, the same ops as the Go node processes of
// test/bench/e2e/hubproc.go).
import fs from 'node:fs'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { Awareness } from 'y-protocols/awareness'
import { WebsocketProvider } from 'y-websocket'
import { serve, send, mono, cpuNs, versions } from './lines.mjs'

process.setMaxListeners(0) // every provider adds an 'exit' listener
const room = 'bench'
const SENDER = 0xffff // recv field of a send record

// cursorOf is the cursor of update seq, the same mapping as cursorValue in
// test/bench/e2e/cluster.go.
const cursorOf = (seq) => ({ x: 100 + seq % 900, y: 100 + Math.floor(seq / 900) % 900 })
const seqOf = (c) => (c.y - 100) * 900 + (c.x - 100)

// The log of sends and receptions since the last dump: 16-byte records
// (u16 receiver or SENDER, u16 sender, u32 seq, f64 CLOCK_MONOTONIC ns).
let log = Buffer.alloc(1 << 20)
let logLen = 0
const record = (recv, sender, seq, t) => {
  if (logLen + 16 > log.length) {
    const bigger = Buffer.alloc(log.length * 2)
    log.copy(bigger, 0, 0, logLen)
    log = bigger
  }
  log.writeUInt16LE(recv, logLen)
  log.writeUInt16LE(sender, logLen + 2)
  log.writeUInt32LE(seq, logLen + 4)
  log.writeDoubleLE(t, logLen + 8)
  logLen += 16
}

const nodes = new Map() // index → node
const clientIndex = new Map() // awareness clientID → node index
// last[recv].get(sender): the newest cursor seq recv holds from sender.
const last = new Map()
let waiter = null

const held = (recv, sender) => { const m = last.get(recv); return m ? m.get(sender) : undefined }

const check = (w) => {
  if (w.left === 0) { clearTimeout(w.timer); waiter = null; w.resolve({ ok: true }) }
}

const onChange = (node) => ({ added, updated, removed }) => {
  const t = mono()
  const mine = last.get(node.i)
  const states = node.awareness.getStates()
  for (const id of added.concat(updated)) {
    if (id === node.doc.clientID) continue
    const st = states.get(id)
    if (!st || typeof st.name !== 'string' || !st.cursor) continue
    const j = parseInt(st.name.slice(1), 10)
    clientIndex.set(id, j)
    const seq = seqOf(st.cursor)
    record(node.i, j, seq, t)
    const old = mine.get(j)
    if (old === undefined) send({ ev: 'seen', recv: node.i, peer: j, t })
    if (old === undefined || seq > old) {
      mine.set(j, seq)
      const w = waiter
      if (w && w.recvs.has(node.i) && w.want.has(j) && (old === undefined || old < w.want.get(j)) && seq >= w.want.get(j)) {
        w.left--
        check(w)
      }
    }
  }
  for (const id of removed) {
    const j = clientIndex.get(id)
    if (j === undefined || !mine.has(j)) continue
    mine.delete(j)
    send({ ev: 'gone', recv: node.i, peer: j, t, reason: 'removed' })
  }
}

const newNode = (i, url, connect) => {
  const doc = new Y.Doc()
  const awareness = new Awareness(doc)
  const node = { i, doc, awareness, seq: 0 }
  last.set(i, new Map())
  awareness.setLocalState({ name: 'n' + i, cursor: cursorOf(0) })
  awareness.on('change', onChange(node))
  node.provider = new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket, awareness, disableBc: true, connect })
  nodes.set(i, node)
  return node
}

const setCursor = (node, seq) => {
  node.seq = seq
  const t = mono()
  record(SENDER, node.i, seq, t)
  node.awareness.setLocalStateField('cursor', cursorOf(seq))
}

const connected = (node) => new Promise((resolve) => {
  if (node.provider.wsconnected) return resolve(mono())
  const h = ({ status }) => {
    if (status === 'connected') { node.provider.off('status', h); resolve(mono()) }
  }
  node.provider.on('status', h)
})

// awaitHeld resolves once every receiver in recvs holds, from every sender
// in want (other than itself), a cursor seq ≥ want's.
const awaitHeld = (recvs, want, timeoutMs) => new Promise((resolve) => {
  const w = { recvs: new Set(recvs), want: new Map(want.map(([j, s]) => [j, s])), left: 0, resolve }
  for (const r of w.recvs) {
    for (const [j, s] of w.want) {
      if (j === r) continue
      const h = held(r, j)
      if (h === undefined || h < s) w.left++
    }
  }
  w.timer = setTimeout(() => { waiter = null; resolve({ ok: false, left: w.left }) }, timeoutMs)
  waiter = w
  check(w)
})

serve({
  hello: () => ({ node: process.versions.node, versions: versions(['@y/websocket-server', 'y-websocket', 'yjs', 'y-protocols', 'lib0', 'ws']) }),
  start: async (req) => {
    const out = []
    for (const i of req.nodes) out.push(newNode(i, req.url, true))
    await Promise.all(out.map(connected))
    return { nodes: out.map(n => ({ i: n.i, id: String(n.doc.clientID) })) }
  },
  await: (req) => awaitHeld(req.recvs || [...nodes.keys()], req.want, req.timeout_ms || 30000),
  set: (req) => { setCursor(nodes.get(req.i), req.seq); return {} },
  load: (req) => new Promise((resolve) => {
    const period = 1000 / req.hz
    const start = performance.now() + 20
    const end = start + req.dur_ms
    let running = 0
    let sent = 0
    const lastSeq = {}
    for (const i of req.nodes) {
      const node = nodes.get(i)
      let k = 0
      const phase = Math.random() * period
      const tick = () => {
        if (performance.now() >= end) {
          lastSeq[i] = node.seq
          if (--running === 0) resolve({ sent, last: lastSeq })
          return
        }
        setCursor(node, req.seq + k)
        k++
        sent++
        setTimeout(tick, Math.max(0, start + phase + k * period - performance.now()))
      }
      running++
      setTimeout(tick, Math.max(0, start + phase - performance.now()))
    }
  }),
  leave: (req) => { const t = mono(); nodes.get(req.i).provider.disconnect(); return { t } },
  rejoin: async (req) => {
    const node = nodes.get(req.i)
    node.provider.connect()
    await connected(node)
    setCursor(node, req.seq)
    return {}
  },
  join: async (req) => {
    const node = newNode(req.i, req.url, false)
    const t0 = mono()
    node.provider.connect()
    const tConn = await connected(node)
    const r = await awaitHeld([req.i], req.want, req.timeout_ms || 30000)
    return { ok: r.ok, t0, t_conn: tConn, t_all: mono() }
  },
  close: (req) => {
    const node = nodes.get(req.i)
    node.provider.destroy()
    node.doc.destroy()
    nodes.delete(req.i)
    last.delete(req.i)
    return {}
  },
  dump: (req) => {
    fs.writeFileSync(req.file, log.subarray(0, logLen))
    const n = logLen / 16
    logLen = 0
    return { records: n }
  },
  stats: () => ({ cpu_ns: cpuNs(), tx: 0, rx: 0 }),
  quit: () => ({})
})
