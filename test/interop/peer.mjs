// A Convene room member in js-libp2p, written from docs/PROTOCOL.md and
// testdata/protocol-v1 alone (wire.mjs), for go test ./test/interop.
//
//   node peer.mjs --room lobby --name js --timeout-ms 3000 [--transport tcp|ws] ADDR...
//
// It dials each ADDR (a Convene peer's multiaddr with /p2p/<id>), joins the
// room's topic, serves /convene/fetch/2.0.0 and /convene/leave/2.0.0, sends
// its hello (at join and again after its first room peer appears), a
// heartbeat every timeout/3, a delta for every `set`, and its goodbye on
// `leave` (over GossipSub and the direct goodbye stream to every room peer).
// Commands on stdin, one JSON object a line:
//   {"cmd":"set","key":"cursor","value":"{\"x\":1}"}   (value: JSON text)
//   {"cmd":"leave"}                                    (goodbye, then exit 0)
// Events on stdout, one JSON object a line: ready, peer-up, member, presence,
// left, sent, error.

import './polyfill.mjs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromMultihash } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import * as Digest from 'multiformats/hashes/digest'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import * as w from './wire.mjs'

const args = process.argv.slice(2)
const opt = { room: 'lobby', name: 'js', timeoutMs: 30000, transport: 'tcp', addrs: [] }
for (let i = 0; i < args.length; i++) {
  const a = args[i]
  if (a === '--room') opt.room = args[++i]
  else if (a === '--name') opt.name = args[++i]
  else if (a === '--timeout-ms') opt.timeoutMs = Number(args[++i])
  else if (a === '--transport') opt.transport = args[++i]
  else opt.addrs.push(a)
}
const out = (ev) => process.stdout.write(JSON.stringify({ ...ev, t: Date.now() }) + '\n')
const C = JSON.parse(readFileSync(new URL('../../testdata/protocol-v1/constants.json', import.meta.url), 'utf8'))
const topic = C.topic_prefix + opt.room

const key = await generateKeyPair('Ed25519')
const node = await createLibp2p({
  privateKey: key,
  addresses: { listen: [] },
  transports: opt.transport === 'ws' ? [webSockets()] : [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    // PROTOCOL.md 2.6.1/2.6.3 and 2.12: StrictSign, flood publish, the
    // message ID from ‖ seqno, the room's mesh parameters.
    pubsub: gossipsub({
      globalSignaturePolicy: 'StrictSign',
      msgIdFn: w.msgIdFn,
      floodPublish: true,
      allowPublishToZeroTopicPeers: true,
      emitSelf: false,
      heartbeatInterval: C.gossipsub_heartbeat_interval_ms,
      D: C.gossipsub_d,
      Dlo: C.gossipsub_dlo,
      Dhi: C.gossipsub_dhi,
      Dlazy: C.gossipsub_dlazy,
      gossipFactor: C.gossipsub_gossip_factor,
      seenTTL: 30000
    })
  }
})
const ps = node.services.pubsub
const self = node.peerId.toMultihash().bytes
const selfStr = node.peerId.toString()

// Own presence: epoch = unix ms at join; one counter per peer (Part 3).
const epoch = Date.now()
let counter = 0
const mine = new Map() // key -> { key, counter, value }
let pending = [] // keys written since the last delta
const snapshot = () => w.encodeSnapshot(self, epoch, counter, [...mine.values()])

// Members: peer ID string -> { bytes, name, epoch, presence Map, left }
const members = new Map()
const view = () => w.viewDigest([self, ...[...members.values()].filter(m => !m.left).map(m => m.bytes)])

function applyFrom (authorStr, authorBytes, m) {
  let mem = members.get(authorStr)
  if (mem && m.epoch < mem.epoch) return
  if (mem && m.epoch === mem.epoch && mem.left) return // a goodbye is final for its epoch
  if (m.kind === 'leave') {
    if (mem && !mem.left) { mem.left = true; out({ type: 'left', peer: authorStr, name: mem.name }) }
    return
  }
  if (m.kind === 'broadcast' || m.kind === 'suspect') return
  if (!mem || m.epoch > mem.epoch) {
    mem = { bytes: authorBytes, name: mem?.name || '', epoch: m.epoch, presence: new Map(), left: false, fresh: true }
    members.set(authorStr, mem)
  }
  if (m.name !== undefined && (m.kind === 'hello' || m.kind === 'heartbeat')) mem.name = m.name
  if (mem.fresh) { mem.fresh = false; out({ type: 'member', peer: authorStr, name: mem.name, epoch: mem.epoch, via: m.via }) }
  for (const e of m.presence.entries) {
    const held = mem.presence.get(e.key)
    if (held && held.counter >= e.counter) continue
    mem.presence.set(e.key, { counter: e.counter, tomb: e.tomb, value: e.value })
    out({ type: 'presence', peer: authorStr, key: e.key, value: e.tomb ? null : new TextDecoder().decode(e.value) })
  }
}

const decodeOrNull = (b) => { try { return w.decodeEnvelope(b) } catch (err) { out({ type: 'error', error: 'envelope: ' + err.message }); return null } }

ps.addEventListener('message', (evt) => {
  const msg = evt.detail.msg ?? evt.detail
  if (msg.topic !== topic || msg.type !== 'signed') return
  const m = decodeOrNull(msg.data)
  if (!m) return
  const author = msg.from.toMultihash().bytes
  if (m.presence && m.presence.kind === 'snapshot' && w.hex(m.presence.peer) !== w.hex(author)) return // not its own state
  m.via = 'gossipsub'
  applyFrom(msg.from.toString(), author, m)
})

// §2.8: serve our own state; relay nothing.
await node.handle(w.FETCH, async (stream) => {
  try {
    const room = w.decodeFetchRequest(await w.readAll(stream, 512))
    if (room !== opt.room) { stream.send(new Uint8Array([1])) } else {
      stream.send(w.encodeFetchReply(w.encodeEnvelope({ kind: 'heartbeat', epoch, name: opt.name, state: snapshot() })))
    }
    await stream.close()
  } catch (err) { stream.abort(err) }
}, { runOnLimitedConnection: false })

// §2.9: a goodbye over a stream, signed by its author, whoever sends it.
await node.handle(w.LEAVE, async (stream) => {
  try {
    const req = w.decodeLeaveRequest2(await w.readAll(stream, 80 << 10))
    let status = 1
    if (req.room === opt.room) {
      status = 2
      const sm = await w.openSigned(req.signed, topic)
      const m = w.decodeEnvelope(sm.data)
      if (m.kind === 'leave') {
        status = 0
        applyFrom(peerIdFromMultihash(Digest.decode(sm.from)).toString(), sm.from, m)
      }
    }
    stream.send(new Uint8Array([status]))
    await stream.close()
  } catch (err) { stream.abort(err) }
})
await node.handle(w.ALIVE, async (stream) => { await stream.close() })

// §2.8 client: the join snapshot of one room peer (its own state and relays).
async function fetchFrom (peerId) {
  for (const wait of [0, 100, 200, 400]) {
    if (wait) await new Promise(resolve => setTimeout(resolve, wait))
    try {
      const stream = await node.dialProtocol(peerId, w.FETCH, { signal: AbortSignal.timeout(5000) })
      stream.send(w.encodeFetchRequest(opt.room))
      await stream.close()
      const r = w.decodeFetchReply(await w.readAll(stream))
      if (r.status !== 0) throw new Error('fetch status ' + r.status)
      const own = w.decodeEnvelope(r.envelope)
      const pb = peerId.toMultihash().bytes
      if (w.hex(own.presence.peer) !== w.hex(pb)) throw new Error('fetch reply about another peer')
      own.via = 'fetch'
      applyFrom(peerId.toString(), pb, own)
      for (const b of r.relayed) {
        try {
          const sm = await w.openSigned(b, topic)
          const m = w.decodeEnvelope(sm.data)
          if (m.presence?.kind === 'snapshot' && w.hex(m.presence.peer) !== w.hex(sm.from)) continue
          if (w.hex(sm.from) === w.hex(self)) continue
          m.via = 'relayed'
          applyFrom(peerIdFromMultihash(Digest.decode(sm.from)).toString(), sm.from, m)
        } catch (err) { out({ type: 'error', error: 'relayed: ' + err.message }) }
      }
      return
    } catch (err) {
      out({ type: 'error', error: `fetch ${peerId}: ${err.message}` })
    }
  }
}

async function publish (m) {
  const data = w.encodeEnvelope(m)
  try {
    const r = await ps.publish(topic, data)
    out({ type: 'sent', kind: m.kind, recipients: r.recipients.length })
  } catch (err) {
    out({ type: 'error', error: `publish ${m.kind}: ${err.message}` })
  }
  return data
}
const hello = () => publish({ kind: 'hello', epoch, name: opt.name, state: snapshot(), view: view() })
const heartbeat = () => publish({ kind: 'heartbeat', epoch, name: opt.name, state: snapshot() })

// PeerUp (§2.7.1): a peer whose subscription to the room we have.
const up = new Set()
let helloAgain = null
ps.addEventListener('subscription-change', (evt) => {
  const { peerId, subscriptions } = evt.detail
  for (const s of subscriptions) {
    if (s.topic !== topic || !s.subscribe || up.has(peerId.toString())) continue
    up.add(peerId.toString())
    out({ type: 'peer-up', peer: peerId.toString() })
    fetchFrom(peerId)
    // The hello that counts: PublishInterval after the first peer appears.
    if (!helloAgain) helloAgain = setTimeout(hello, C.room_default_publish_interval_ms)
  }
})

ps.subscribe(topic)
for (const a of opt.addrs) {
  try { await node.dial(multiaddr(a), { signal: AbortSignal.timeout(10000) }) } catch (err) { out({ type: 'error', error: `dial ${a}: ${err.message}` }) }
}
out({ type: 'ready', peer: selfStr, epoch, transport: opt.transport })
await hello()

// Heartbeats every timeout/3, jittered ±10 % (Part 1).
let hbTimer
const scheduleHeartbeat = () => {
  const d = (opt.timeoutMs / 3) * (0.9 + 0.2 * Math.random())
  hbTimer = setTimeout(async () => { await heartbeat(); scheduleHeartbeat() }, d)
}
scheduleHeartbeat()

let leaving = false
async function leave () {
  if (leaving) return
  leaving = true
  clearTimeout(hbTimer); clearTimeout(helloAgain)
  const data = w.encodeEnvelope({ kind: 'leave', epoch })
  // The GossipSub copy, then the direct goodbye (§2.9) to every room peer,
  // signed as StrictSign signs (any 8-byte seqno).
  await publish({ kind: 'leave', epoch })
  const seq = new Uint8Array(8)
  new DataView(seq.buffer).setBigUint64(0, BigInt(Date.now()) * 1000000n)
  const signed = await w.signMessage(key, self, topic, data, seq)
  // Pass it on (flag bit 0) when we heard members we are not connected to.
  const direct = ps.getSubscribers(topic)
  const directSet = new Set(direct.map(p => p.toString()))
  const flags = [...members.entries()].some(([id, m]) => !m.left && !directSet.has(id)) ? 1 : 0
  const acks = await Promise.all(direct.map(async (p) => {
    try {
      const s = await node.dialProtocol(p, w.LEAVE, { signal: AbortSignal.timeout(2000) })
      s.send(w.encodeLeaveRequest2(opt.room, flags, signed))
      await s.close()
      const r = await w.readAll(s, 16)
      return r[0] === 0
    } catch (err) { out({ type: 'error', error: `goodbye to ${p}: ${err.message}` }); return false }
  }))
  out({ type: 'left-room', acked: acks.filter(Boolean).length, peers: acks.length, passOn: flags === 1 })
  await node.stop()
  process.exit(0)
}

const rl = createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  let c
  try { c = JSON.parse(line) } catch { out({ type: 'error', error: 'bad command' }); return }
  if (c.cmd === 'set') {
    counter++
    mine.set(c.key, { key: c.key, counter, value: new TextEncoder().encode(c.value) })
    pending.push(c.key)
    const entries = [...new Set(pending)].map(k => mine.get(k))
    pending = []
    await publish({ kind: 'delta', epoch, state: w.encodeDelta(epoch, entries) })
  } else if (c.cmd === 'leave') {
    await leave()
  }
})
rl.on('close', () => leave())
