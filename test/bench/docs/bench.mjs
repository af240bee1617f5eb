// JS side of Convene's documents benchmark (see main.go): the same workloads through
// @automerge/automerge, printed as one JSON object on stdout.
//
//   node --expose-gc bench.mjs [--runs 5] [--changes 10000] [--durable 300] [--dir DIR]
//
// Method, the same as the Go side: every workload is run --runs times on fresh documents and the
// median is reported. Each run is checked (the final document holds what was written).

import * as A from '@automerge/automerge'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const amVersion = JSON.parse(fs.readFileSync(path.join(here, 'node_modules', '@automerge', 'automerge', 'package.json'))).version

function parseArgs (argv) {
  const cfg = { runs: 5, changes: 10000, durable: 300, dir: '' }
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]
    const v = argv[i + 1]
    if (a === '--runs') { cfg.runs = Number(v); i++ } else if (a === '--changes') { cfg.changes = Number(v); i++ } else if (a === '--durable') { cfg.durable = Number(v); i++ } else if (a === '--dir') { cfg.dir = v; i++ } else {
      throw new Error(`bench.mjs: unknown argument ${a}`)
    }
  }
  if (!(cfg.runs >= 1) || !(cfg.changes >= 1) || !(cfg.durable >= 1) || cfg.dir === '') {
    throw new Error('bench.mjs: bad --runs, --changes, --durable or missing --dir')
  }
  return cfg
}

const cfg = parseArgs(process.argv)
const gc = globalThis.gc ?? (() => {})
const now = () => process.hrtime.bigint()
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }

// The workloads (identical on the Go side).
const mapEdits = (n) => {
  let d = A.init()
  for (let i = 0; i < n; i++) {
    d = A.change(d, (doc) => { doc['k' + (i % 100)] = i })
  }
  if (d['k' + ((n - 1) % 100)] !== n - 1) throw new Error('map edits: wrong final value')
  return d
}

const typing = (n) => {
  let d = A.change(A.init(), (doc) => { doc.t = '' })
  let x = 1
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) & 0x7fffffff // the same generator as main.go
    const c = String.fromCharCode(97 + ((x >>> 16) % 26))
    d = A.change(d, (doc) => { A.splice(doc, ['t'], i, 0, c) })
  }
  if (d.t.length !== n) throw new Error('typing: wrong text length')
  return d
}

function timeRuns (fn) {
  const ns = []
  let last
  for (let r = 0; r < cfg.runs; r++) {
    gc()
    const t0 = now()
    last = fn()
    ns.push(Number(now() - t0))
  }
  return { ns: median(ns), last }
}

const out = { node: process.version, versions: { '@automerge/automerge': amVersion }, config: cfg }

const m = timeRuns(() => mapEdits(cfg.changes))
out.mapEdit = { nsPerChange: m.ns / cfg.changes }
const t = timeRuns(() => typing(cfg.changes))
out.typing = { nsPerChange: t.ns / cfg.changes }

const doc10k = t.last
const s = timeRuns(() => A.save(doc10k))
const saved = s.last
out.save = { ns: s.ns, bytes: saved.length }
const l = timeRuns(() => A.load(saved))
if (l.last.t.length !== cfg.changes) throw new Error('load: wrong text length')
out.load = { ns: l.ns }

// Durable saves: after each change, append saveIncremental() to a file and fsync it (what a
// Node application without automerge-repo would do to make each change durable).
{
  const file = path.join(cfg.dir, 'automerge-js.chunks')
  const ns = []
  for (let r = 0; r < cfg.runs; r++) {
    const fd = fs.openSync(file, 'w')
    let d = A.init()
    const t0 = now()
    for (let i = 0; i < cfg.durable; i++) {
      d = A.change(d, (doc) => { doc['k' + (i % 100)] = i })
      fs.writeSync(fd, A.saveIncremental(d))
      fs.fsyncSync(fd)
    }
    ns.push(Number(now() - t0))
    fs.closeSync(fd)
    const back = A.load(fs.readFileSync(file))
    if (back['k' + ((cfg.durable - 1) % 100)] !== cfg.durable - 1) throw new Error('durable: the file does not hold every change')
  }
  fs.rmSync(file)
  out.durable = { nsPerChange: median(ns) / cfg.durable }
}

process.stdout.write(JSON.stringify(out) + '\n')
