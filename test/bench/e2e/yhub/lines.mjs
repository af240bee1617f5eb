// The line protocol shared by server.mjs and client.mjs (the same one the
// Go node processes speak, test/bench/e2e/hubproc.go): one JSON request per
// line on stdin, one JSON reply per line on stdout with the request's id,
// and event lines ({"ev": ...}, no id) at any time.
import readline from 'node:readline'
import fs from 'node:fs'

// mono is CLOCK_MONOTONIC in nanoseconds (libuv's hrtime reads it), the
// clock the Go processes read too, so times compare across processes.
export const mono = () => Number(process.hrtime.bigint())

export const send = (obj) => { process.stdout.write(JSON.stringify(obj) + '\n') }

export const serve = (handlers) => {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  rl.on('line', async (line) => {
    let req
    try { req = JSON.parse(line) } catch { return }
    const h = handlers[req.op]
    try {
      if (!h) throw new Error('unknown op ' + req.op)
      const out = (await h(req)) || {}
      send({ ...out, id: req.id })
      if (req.op === 'quit') setImmediate(() => process.exit(0))
    } catch (err) {
      send({ id: req.id, error: String(err && err.stack ? err.stack : err) })
    }
  })
  rl.on('close', () => process.exit(0))
}

export const cpuNs = () => { const u = process.cpuUsage(); return (u.user + u.system) * 1000 }

export const versions = (names) => {
  const out = {}
  for (const n of names) {
    const p = new URL('./node_modules/' + n + '/package.json', import.meta.url)
    out[n] = JSON.parse(fs.readFileSync(p, 'utf8')).version
  }
  return out
}
