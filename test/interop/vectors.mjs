// Checks wire.mjs (written from docs/PROTOCOL.md) against the test vectors in
// testdata/protocol-v1/vectors.json: every envelope is produced byte for
// byte from its fields and decoded back, every invalid envelope is refused,
// every signed message is produced from the vector's key and verified, its
// message ID is gossipsub's, and the fetch and goodbye exchanges encode and
// decode. Prints one JSON line per vector and a closing "N passed, N failed".
//
//   node vectors.mjs ../../testdata/protocol-v1/vectors.json

import { readFileSync } from 'node:fs'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
// gossipsub's own StrictSign message ID (not in its package exports, so by path)
import { msgIdFnStrictSign } from './node_modules/@libp2p/gossipsub/dist/src/utils/msgIdFn.js'
import * as w from './wire.mjs'

const f = JSON.parse(readFileSync(process.argv[2], 'utf8'))
let passed = 0; let failed = 0
const notes = new Set()
const check = async (what, fn) => {
  try {
    await fn()
    passed++
  } catch (err) {
    failed++
    console.log(JSON.stringify({ vector: what, error: String(err.stack || err) }))
  }
}
const eq = (got, want, what) => { if (got !== want) throw new Error(`${what}: got ${got}, want ${want}`) }
const peerBytes = (s) => peerIdFromString(s).toMultihash().bytes

for (const k of f.keys) {
  await check('key ' + k.name, async () => {
    const sk = privateKeyFromProtobuf(w.unhex(k.private_key_protobuf))
    const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
    eq(peerIdFromPrivateKey(sk).toString(), k.peer_id, 'peer ID')
    eq(w.hex(peerBytes(k.peer_id)), k.peer_id_bytes, 'peer ID bytes')
  })
}

for (const v of f.envelopes) {
  await check('envelope ' + v.name, () => {
    const m = {
      kind: v.kind, epoch: v.epoch, name: v.peer_name, meta: v.meta,
      state: v.state ? w.unhex(v.state) : undefined,
      payload: v.payload ? w.unhex(v.payload) : undefined,
      refute: v.refute, subjectEpoch: v.subject_epoch
    }
    if (v.view) m.view = new DataView(w.unhex(v.view).buffer).getBigUint64(0, true)
    if (v.subject) m.subject = peerBytes(v.subject)
    if (v.kind === 'hello' || v.kind === 'heartbeat' || v.kind === 'suspect') delete m.payload
    eq(w.hex(w.encodeEnvelope(m)), v.envelope, 'encoding')
    const d = w.decodeEnvelope(w.unhex(v.envelope))
    eq(d.kind, v.kind, 'kind'); eq(d.epoch, v.epoch, 'epoch'); eq(d.name, v.peer_name, 'name')
    if (v.state) {
      eq(d.presence.kind, v.state_kind, 'state kind')
      if (d.presence.kind === 'snapshot') eq(w.hex(d.presence.peer), w.hex(peerBytes(v.author)), 'snapshot peer')
      const live = Object.fromEntries(d.presence.entries.filter(e => !e.tomb).map(e => [e.key, new TextDecoder().decode(e.value)]))
      eq(JSON.stringify(live, Object.keys(live).sort()), JSON.stringify(v.presence || {}, Object.keys(v.presence || {}).sort()), 'presence')
      // re-encode the presence from the decoded entries
      const p = d.presence
      const again = p.kind === 'delta'
        ? w.encodeDelta(p.epoch, p.entries)
        : w.encodeSnapshot(p.peer, p.epoch, p.complete, p.entries)
      eq(w.hex(again), v.state, 'presence re-encoding')
    }
  })
}

for (const v of f.invalid_envelopes) {
  await check('invalid ' + v.name, () => {
    let m
    try { m = w.decodeEnvelope(w.unhex(v.envelope)) } catch { return }
    if (m.presence && m.presence.kind === 'snapshot' && w.hex(m.presence.peer) !== w.hex(peerBytes(v.author))) return // wrong author
    throw new Error('accepted')
  })
}

const keys = Object.fromEntries(f.keys.map(k => [k.peer_id, privateKeyFromProtobuf(w.unhex(k.private_key_protobuf))]))
for (const v of f.signed_messages) {
  await check('signed ' + v.name, async () => {
    const from = peerBytes(v.author)
    const msg = await w.signMessage(keys[v.author], from, v.topic, w.unhex(v.data), w.unhex(v.seqno))
    eq(w.hex(msg), v.message_protobuf, 'signed message')
    const m = await w.openSigned(w.unhex(v.message_protobuf), v.topic)
    eq(w.hex(m.data), v.data, 'data')
    eq(w.hex(w.concat(m.from, m.seqno)), v.message_id, 'message ID (from ‖ seqno)')
    const idIn = { type: 'signed', from: peerIdFromString(v.author), sequenceNumber: BigInt('0x' + v.seqno) }
    eq(w.hex(w.msgIdFn(idIn)), v.message_id, 'wire.msgIdFn (the msgIdFn option the peer sets)')
    // gossipsub's own default is another ID (PROTOCOL.md 2.12): say so, do not fail.
    const def = w.hex(await msgIdFnStrictSign(idIn))
    if (def !== v.message_id) notes.add(`@libp2p/gossipsub msgIdFnStrictSign gives ${def.slice(0, 12)}... (the public key protobuf ‖ seqno), not from ‖ seqno (${v.message_id.slice(0, 12)}...): set msgIdFn`)
    w.decodeEnvelope(m.data)
  })
}

for (const v of f.fetch) {
  await check('fetch ' + v.name, async () => {
    eq(w.hex(w.encodeFetchRequest(v.room)), v.request, 'request')
    eq(w.decodeFetchRequest(w.unhex(v.request)), v.room, 'request room')
    const r = w.decodeFetchReply(w.unhex(v.reply))
    eq(r.status, v.status, 'status')
    if (r.status === 0) {
      eq(w.hex(w.encodeFetchReply(r.envelope, r.relayed)), v.reply, 'reply re-encoding')
      const own = w.decodeEnvelope(r.envelope)
      eq(w.hex(own.presence.peer), w.hex(peerBytes(v.server)), 'own state is the server\'s')
      for (const b of r.relayed) w.decodeEnvelope((await w.openSigned(b, f.topic)).data)
      eq(r.relayed.length, (v.reply_relayed || []).length, 'relayed count')
    }
  })
}

for (const v of f.leave) {
  await check('leave ' + v.name, async () => {
    if (v.protocol !== w.LEAVE) return
    const r = w.decodeLeaveRequest2(w.unhex(v.request))
    eq(r.room, v.room, 'room'); eq(r.flags, v.flags, 'flags')
    eq(w.hex(w.encodeLeaveRequest2(v.room, v.flags, w.unhex(v.signed_goodbye))), v.request, 'request')
    const m = await w.openSigned(r.signed, '/convene/room/1/' + r.room)
    eq(w.decodeEnvelope(m.data).kind, 'leave', 'kind')
  })
}

for (const n of notes) console.log(JSON.stringify({ note: n }))
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed ? 1 : 0)
