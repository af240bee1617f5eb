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
// @libp2p/websockets dials with; the `ws` package provides the API, but not
// the browser's event timing. A browser queues each received message as a
// task, so a 'message' listener added a few microtasks after 'open' misses
// nothing. `ws` emits synchronously from the socket: 'open' first, then any
// frame that came in the same read (or the next tick), before anyone
// listens — and drops it. @libp2p/websockets adds its listener only after
// `await pEvent(ws, 'open')` and building the connection, so the Go side's
// first multistream-select bytes (sent as soon as the WebSocket is
// upgraded) were sometimes lost and the dial failed with "could not
// negotiate /noise" (Go: "accept upgrade error"). This WebSocket holds the
// messages that arrive before the first 'message' listener and hands them
// to it, in order, when it is added — what a browser's queue gives.
import { WebSocket as WS } from 'ws'

class NodeWebSocket extends WS {
  #held = []
  #listening = false

  constructor (...args) {
    super(...args)
    this.on('message', (data, isBinary) => {
      if (!this.#listening) this.#held.push([data, isBinary])
    })
  }

  addEventListener (type, handler, options) {
    super.addEventListener(type, handler, options)
    if (type !== 'message' || this.#listening) return
    this.#listening = true
    const held = this.#held
    this.#held = []
    if (held.length > 0 && process.env.CONVENE_WS_DEBUG) {
      process.stderr.write(`polyfill: handing ${held.length} early WebSocket message(s) to the first listener\n`)
    }
    for (const [data, isBinary] of held) this.emit('message', data, isBinary)
  }
}

if (typeof globalThis.WebSocket !== 'function') globalThis.WebSocket = NodeWebSocket
