// The y-websocket hub: @y/websocket-server's own server (src/server.js:
// an http server, ws's WebSocket.Server, setupWSConnection for every
// connection), on a loopback port of its own, with byte counters on every
// connection's TCP socket. Driven over the line protocol (lines.mjs).
import http from 'node:http'
import WebSocket from 'ws'
import { setupWSConnection } from '@y/websocket-server/utils'
import { serve, cpuNs, versions } from './lines.mjs'

const wss = new WebSocket.Server({ noServer: true })
wss.on('connection', setupWSConnection)

// TCP payload in and out of the server (WebSocket frames and the HTTP
// upgrade): live sockets' counters plus those of closed ones.
const live = new Set()
let closedTx = 0
let closedRx = 0

const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' })
  res.end('okay')
})
server.on('upgrade', (request, socket, head) => {
  live.add(socket)
  socket.on('close', () => {
    live.delete(socket)
    closedTx += socket.bytesWritten
    closedRx += socket.bytesRead
  })
  wss.handleUpgrade(request, socket, head, ws => { wss.emit('connection', ws, request) })
})
const port = await new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve(server.address().port)))

serve({
  hello: () => ({
    node: process.versions.node,
    port,
    versions: versions(['@y/websocket-server', 'y-websocket', 'yjs', 'y-protocols', 'lib0', 'ws'])
  }),
  stats: () => {
    let tx = closedTx
    let rx = closedRx
    for (const s of live) { tx += s.bytesWritten; rx += s.bytesRead }
    return { cpu_ns: cpuNs(), tx, rx }
  },
  quit: () => ({})
})
