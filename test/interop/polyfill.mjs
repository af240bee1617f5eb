// Node 20 lacks Promise.withResolvers (Node 22), which current js-libp2p
// packages use (it-queue); the machine has Node 20. Imported first.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

// Node 20 has no global WebSocket either (Node 22 has), which
// @libp2p/websockets dials with; the `ws` package provides the same API.
import { WebSocket as WS } from 'ws'
if (typeof globalThis.WebSocket !== 'function') globalThis.WebSocket = WS
