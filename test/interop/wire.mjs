// Convene wire version 1, written from docs/PROTOCOL.md (Part 2 §2.2, §2.3,
// §2.8, §2.9, §2.12, §2.13 and Part 3) for the interop test: envelopes,
// presence deltas and snapshots, the view digest, signed pubsub messages, and
// the fetch and goodbye stream formats. No Convene code is used.

import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'

const enc = new TextEncoder()
const dec = new TextDecoder('utf-8', { fatal: true })

export const KIND = { hello: 1, heartbeat: 2, delta: 3, leave: 4, broadcast: 5, suspect: 6 }
export const KIND_NAME = Object.fromEntries(Object.entries(KIND).map(([k, v]) => [v, k]))

export const hex = (b) => Buffer.from(b).toString('hex')
export const unhex = (s) => new Uint8Array(Buffer.from(s, 'hex'))

export function concat (...parts) {
  const n = parts.reduce((a, p) => a + p.length, 0)
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}

// uvarint: unsigned LEB128, minimal, at most 10 bytes (BigInt-safe).
export function uv (v) {
  let x = BigInt(v)
  const out = []
  while (x >= 0x80n) { out.push(Number(x & 0x7fn) | 0x80); x >>= 7n }
  out.push(Number(x))
  return new Uint8Array(out)
}

export class Reader {
  constructor (b) { this.b = b; this.o = 0 }
  left () { return this.b.length - this.o }
  byte () {
    if (this.o >= this.b.length) throw new Error('truncated')
    return this.b[this.o++]
  }
  uvBig () {
    let x = 0n; let s = 0n
    for (let i = 0; i < 10; i++) {
      const c = this.byte()
      x |= BigInt(c & 0x7f) << s
      if ((c & 0x80) === 0) {
        if (i > 0 && c === 0) throw new Error('non-minimal varint')
        if (x >= (1n << 64n)) throw new Error('varint overflow')
        return x
      }
      s += 7n
    }
    throw new Error('varint too long')
  }
  uv () {
    const x = this.uvBig()
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error('varint beyond 2^53')
    return Number(x)
  }
  take (n) {
    if (n > this.left()) throw new Error('truncated')
    const out = this.b.subarray(this.o, this.o + n)
    this.o += n
    return out
  }
  rest () { return this.take(this.left()) }
}

const cmpBytes = (a, b) => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return a.length - b.length
}

// ---- Part 3: presence (ephemeral format version 1) ----

// entry: head (keyLen<<2 | tomb | ttl<<1), key, counter, [ttl], [valueLen, value]
function encodeEntries (entries) {
  const sorted = [...entries].sort((x, y) => cmpBytes(enc.encode(x.key), enc.encode(y.key)))
  const parts = [uv(sorted.length)]
  for (const e of sorted) {
    const k = enc.encode(e.key)
    const flags = (e.tomb ? 1 : 0) | (e.ttl ? 2 : 0)
    parts.push(uv((k.length << 2) | flags), k, uv(e.counter))
    if (e.ttl) parts.push(uv(e.ttl))
    if (!e.tomb) parts.push(uv(e.value.length), e.value)
  }
  return concat(...parts)
}

export function encodeDelta (epoch, entries) {
  return concat(new Uint8Array([1, 1]), uv(epoch), encodeEntries(entries))
}

export function encodeSnapshot (peerBytes, epoch, complete, entries) {
  return concat(new Uint8Array([1, 2]), uv(1), uv(peerBytes.length), peerBytes, uv(epoch), uv(complete),
    encodeEntries(entries.filter(e => !e.tomb)))
}

function decodeEntries (r, count) {
  const out = []
  let prev = null
  for (let i = 0; i < count; i++) {
    const head = r.uv()
    const flags = head & 3
    if (flags === 3) throw new Error('tombstone with ttl')
    const key = r.take(head >> 2)
    if (prev && cmpBytes(prev, key) >= 0) throw new Error('keys not ascending')
    prev = key
    const e = { key: dec.decode(key), counter: r.uv(), tomb: (flags & 1) === 1 }
    if (e.counter < 1) throw new Error('zero counter')
    if (flags & 2) e.ttl = r.uv()
    if (!e.tomb) e.value = r.take(r.uv())
    out.push(e)
  }
  return out
}

// decodePresence returns { kind: 'delta'|'snapshot', epoch, complete?, peer?, entries }.
export function decodePresence (b) {
  const r = new Reader(b)
  if (r.byte() !== 1) throw new Error('presence version')
  const kind = r.byte()
  let out
  if (kind === 1) {
    const epoch = r.uv()
    out = { kind: 'delta', epoch, entries: decodeEntries(r, r.uv()) }
  } else if (kind === 2) {
    const n = r.uv()
    if (n !== 1) throw new Error('a snapshot from the network has exactly one record')
    const peer = r.take(r.uv())
    const epoch = r.uv()
    const complete = r.uv()
    out = { kind: 'snapshot', peer, epoch, complete, entries: decodeEntries(r, r.uv()) }
    if (out.entries.some(e => e.tomb)) throw new Error('tombstone in snapshot')
  } else {
    throw new Error('presence kind')
  }
  if (r.left() !== 0) throw new Error('trailing bytes')
  if (out.epoch < 1) throw new Error('zero epoch')
  return out
}

// ---- Part 2 §2.3: the envelope ----

export function encodeEnvelope (m) {
  let h = KIND[m.kind]
  const parts = []
  parts.push(uv(m.epoch))
  if (m.name) { h |= 0x08; const n = enc.encode(m.name); parts.push(uv(n.length), n) }
  const meta = Object.keys(m.meta || {}).sort((a, b) => cmpBytes(enc.encode(a), enc.encode(b)))
  if (meta.length) {
    h |= 0x10
    parts.push(uv(meta.length))
    for (const k of meta) {
      const kb = enc.encode(k); const vb = enc.encode(m.meta[k])
      parts.push(uv(kb.length), kb, uv(vb.length), vb)
    }
  }
  let payload = m.payload
  if (m.kind === 'hello' && m.view && m.view !== 0n) {
    payload = new Uint8Array(8)
    new DataView(payload.buffer).setBigUint64(0, m.view, true)
  }
  if (m.kind === 'heartbeat' && m.refute) payload = new Uint8Array([1])
  if (m.kind === 'suspect') payload = concat(uv(m.subjectEpoch), m.subject)
  const hasP = payload && payload.length > 0
  if (m.state && m.state.length) {
    h |= 0x20
    parts.push(hasP ? concat(uv(m.state.length), m.state) : m.state)
  }
  if (hasP) { h |= 0x40; parts.push(payload) }
  return concat(new Uint8Array([h]), ...parts)
}

export function decodeEnvelope (b) {
  const r = new Reader(b)
  const h = r.byte()
  const kind = KIND_NAME[h & 7]
  if (!kind || (h & 0x80)) throw new Error('bad header')
  const m = { kind, epoch: r.uv() }
  if (h & 0x08) {
    const n = r.uv()
    if (n < 1 || n > 256) throw new Error('name length')
    m.name = dec.decode(r.take(n))
  }
  if (h & 0x10) {
    const n = r.uv()
    if (n < 1 || n > 32) throw new Error('meta count')
    m.meta = {}
    for (let i = 0; i < n; i++) {
      const k = dec.decode(r.take(r.uv()))
      m.meta[k] = dec.decode(r.take(r.uv()))
    }
  }
  if (h & 0x20) {
    m.state = (h & 0x40) ? r.take(r.uv()) : r.rest()
    if (m.state.length === 0) throw new Error('empty state')
  }
  if (h & 0x40) {
    const p = r.rest()
    if (p.length === 0) throw new Error('empty payload')
    if (kind === 'hello') {
      if (p.length !== 8) throw new Error('view is 8 bytes')
      m.view = new DataView(p.buffer, p.byteOffset, 8).getBigUint64(0, true)
    } else if (kind === 'heartbeat') {
      if (p.length !== 1 || p[0] !== 1) throw new Error('heartbeat payload')
      m.refute = true
    } else if (kind === 'suspect') {
      const pr = new Reader(p)
      m.subjectEpoch = pr.uv()
      m.subject = pr.rest()
    } else {
      m.payload = p
    }
  }
  if (r.left() !== 0) throw new Error('trailing bytes')
  // §2.4 check 5: hello/heartbeat carry a snapshot, delta a delta, with the envelope's epoch.
  const needs = { hello: 'snapshot', heartbeat: 'snapshot', delta: 'delta' }[kind]
  if (needs) {
    if (!m.state) throw new Error(kind + ' without state')
    m.presence = decodePresence(m.state)
    if (m.presence.kind !== needs) throw new Error(kind + ' carries a ' + m.presence.kind)
    if (m.presence.epoch !== m.epoch) throw new Error('envelope epoch is not the state epoch')
  } else if (m.state) {
    throw new Error(kind + ' with state')
  }
  return m
}

// ---- §2.12: the view digest ----

const M64 = (1n << 64n) - 1n
export function peerHash (bytes) {
  let h = 14695981039346656037n
  for (const c of bytes) { h ^= BigInt(c); h = (h * 1099511628211n) & M64 }
  h ^= h >> 30n; h = (h * 0xbf58476d1ce4e5b9n) & M64
  h ^= h >> 27n; h = (h * 0x94d049bb133111ebn) & M64
  h ^= h >> 31n
  return h
}
export const viewDigest = (peers) => peers.reduce((d, p) => d ^ peerHash(p), 0n)

// ---- §2.2: the pubsub Message protobuf (fields 1..6, all bytes/string) ----

function pbField (n, b) { return concat(uv((n << 3) | 2), uv(b.length), b) }

export function encodePubsubMessage (m) {
  const parts = []
  if (m.from) parts.push(pbField(1, m.from))
  if (m.data) parts.push(pbField(2, m.data))
  if (m.seqno) parts.push(pbField(3, m.seqno))
  if (m.topic !== undefined) parts.push(pbField(4, enc.encode(m.topic)))
  if (m.signature) parts.push(pbField(5, m.signature))
  if (m.key) parts.push(pbField(6, m.key))
  return concat(...parts)
}

export function decodePubsubMessage (b) {
  const r = new Reader(b)
  const m = {}
  const names = { 1: 'from', 2: 'data', 3: 'seqno', 4: 'topic', 5: 'signature', 6: 'key' }
  while (r.left() > 0) {
    const tag = r.uv()
    if ((tag & 7) !== 2 || !names[tag >> 3]) throw new Error('unexpected protobuf field ' + tag)
    m[names[tag >> 3]] = r.take(r.uv())
  }
  if (m.topic) m.topic = dec.decode(m.topic)
  return m
}

export const SIGN_PREFIX = enc.encode('libp2p-pubsub:')

// The Ed25519 public key inside an identity-multihash peer ID: 00 <len> <PublicKey protobuf>.
export function keyOfPeer (peerBytes) {
  if (peerBytes[0] !== 0x00) throw new Error('peer ID does not embed its key')
  return publicKeyFromProtobuf(peerBytes.subarray(2, 2 + peerBytes[1]))
}

// openSigned verifies a relayed signed message as StrictSign does and returns it.
export async function openSigned (b, topic) {
  const m = decodePubsubMessage(b)
  if (m.topic !== topic) throw new Error('another topic')
  if (!m.from || !m.signature) throw new Error('unsigned')
  const pk = m.key ? publicKeyFromProtobuf(m.key) : keyOfPeer(m.from)
  const unsigned = encodePubsubMessage({ from: m.from, data: m.data, seqno: m.seqno, topic: m.topic })
  if (!(await pk.verify(concat(SIGN_PREFIX, unsigned), m.signature))) throw new Error('bad signature')
  return m
}

export async function signMessage (privateKey, fromBytes, topic, data, seqno) {
  const unsigned = encodePubsubMessage({ from: fromBytes, data, seqno, topic })
  const signature = await privateKey.sign(concat(SIGN_PREFIX, unsigned))
  return encodePubsubMessage({ from: fromBytes, data, seqno, topic, signature })
}

// ---- §2.8 fetch, §2.9 goodbye ----

export const FETCH = '/convene/fetch/2.0.0'
export const LEAVE = '/convene/leave/2.0.0'
export const LEAVE1 = '/convene/leave/1.0.0'
export const ALIVE = '/convene/alive/1.0.0'

export const encodeFetchRequest = (room) => { const r = enc.encode(room); return concat(uv(r.length), r) }
export function decodeFetchRequest (b) {
  const r = new Reader(b)
  const room = dec.decode(r.take(r.uv()))
  if (r.left() !== 0) throw new Error('trailing bytes')
  return room
}
export function encodeFetchReply (envelope, relayed = []) {
  return concat(new Uint8Array([0]), uv(envelope.length), envelope, uv(relayed.length),
    ...relayed.flatMap(m => [uv(m.length), m]))
}
export function decodeFetchReply (b) {
  const r = new Reader(b)
  const status = r.byte()
  if (status !== 0) { if (r.left()) throw new Error('trailing bytes'); return { status } }
  const envelope = r.take(r.uv())
  const n = r.uv()
  const relayed = []
  for (let i = 0; i < n; i++) relayed.push(r.take(r.uv()))
  if (r.left() !== 0) throw new Error('trailing bytes')
  return { status, envelope, relayed }
}
export function encodeLeaveRequest2 (room, flags, signed) {
  const r = enc.encode(room)
  return concat(uv(r.length), r, new Uint8Array([flags]), uv(signed.length), signed)
}
export function decodeLeaveRequest2 (b) {
  const r = new Reader(b)
  const room = dec.decode(r.take(r.uv()))
  const flags = r.byte()
  const signed = r.take(r.uv())
  if (r.left() !== 0) throw new Error('trailing bytes')
  return { room, flags, signed }
}

// readAll reads a libp2p v3 stream to its end.
export async function readAll (stream, limit = 4 << 20) {
  const parts = []
  let n = 0
  for await (const chunk of stream) {
    const b = chunk.subarray ? chunk.subarray() : chunk
    n += b.length
    if (n > limit) throw new Error('stream over limit')
    parts.push(b)
  }
  return concat(...parts)
}

// msgIdFn is the message ID of §2.2/§2.12 for js gossipsub's `msgIdFn`
// option: the author's peer ID bytes (the identity multihash, 00 24 ...)
// followed by the 8-byte big-endian seqno, as go-libp2p-pubsub's
// DefaultMsgIdFn. @libp2p/gossipsub 17's default for StrictSign
// (msgIdFnStrictSign) uses the public key protobuf instead of the peer ID
// (08 01 12 20 ..., without the 00 24 prefix): another ID for the same
// message, so IHAVE/IWANT/IDONTWANT never match across the two.
export function msgIdFn (msg) {
  const seq = new Uint8Array(8)
  new DataView(seq.buffer).setBigUint64(0, BigInt(msg.sequenceNumber))
  return concat(msg.from.toMultihash().bytes, seq)
}
