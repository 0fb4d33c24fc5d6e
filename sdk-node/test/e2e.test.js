'use strict'
// End to end through real processes: a Node model process → neurocloak-agent (Unix socket,
// durable queue) → neurocloak-collector (SQLite store), read back over the collector's REST
// API. The binaries come from NEUROCLOAK_BIN_DIR (scripts/test-node.sh builds them).

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, execFileSync } = require('node:child_process')
const { setTimeout: sleep } = require('node:timers/promises')

function binary(name) {
  const dirs = [process.env.NEUROCLOAK_BIN_DIR, path.join(process.env.CARGO_TARGET_DIR ?? path.join(os.homedir(), '.cache/neurocloak/target'), 'debug')]
  for (const dir of dirs.filter(Boolean)) {
    const p = path.join(dir, name)
    if (fs.existsSync(p)) return p
  }
  throw new Error(`${name} is not built (looked in ${dirs.filter(Boolean).join(', ')}); run scripts/test-node.sh`)
}

/** Starts a server binary and resolves with the `key=value` pairs of its "listening" line. */
function start(bin, args, procs) {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NEUROCLOAK_LOG: 'warn' } })
    procs.push(p)
    let out = ''
    let err = ''
    const timer = setTimeout(() => reject(new Error(`${path.basename(bin)} did not report its ports:\n${err}`)), 30_000)
    p.stderr.on('data', (d) => (err += d))
    p.stdout.on('data', (d) => {
      out += d
      const line = out.split('\n').find((l) => l.includes(' listening '))
      if (line) {
        clearTimeout(timer)
        resolve(Object.fromEntries(line.split(' ').filter((w) => w.includes('=')).map((w) => w.split('='))))
      }
    })
    p.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${path.basename(bin)} exited with ${code}:\n${err}`))
    })
  })
}

function runChild(env) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now()
    const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'e2e-child.js')], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, ms: Date.now() - t0, stats: out.trim() ? JSON.parse(out.trim()) : null, stderr: err }))
  })
}

test('rows logged by a Node process reach the collector through a real agent', { timeout: 120_000 }, async (t) => {
  const collector = binary('neurocloak-collector')
  const agent = binary('neurocloak-agent')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'neurocloak-node-e2e-'))
  const procs = []
  t.after(async () => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM')
    await sleep(200)
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL')
    fs.rmSync(dir, { recursive: true, force: true })
  })

  const project = 'node-e2e'
  const dataDir = path.join(dir, 'collector')
  const boot = JSON.parse(execFileSync(collector, ['admin', 'bootstrap', '--org', 'acme', '--project', project, '--data-dir', dataDir], { encoding: 'utf8' }))
  const apiKey = boot.api_key
  assert.ok(apiKey, `bootstrap printed no api_key: ${JSON.stringify(boot)}`)
  const c = await start(collector, ['serve', '--data-dir', dataDir, '--grpc-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0', '--jobs-enabled', 'false'], procs)
  const sock = path.join(dir, 'agent.sock')
  const a = await start(agent, [
    '--uds-path', sock,
    '--tcp-addr', '127.0.0.1:0',
    '--http-addr', '127.0.0.1:0',
    '--data-dir', path.join(dir, 'agent'),
    '--collector', `http://${c.grpc}`,
    '--api-key', apiKey,
    '--merge-grace-ms', '200',
    '--linger-ms', '50',
  ], procs)

  // Two model processes at once, one per transport; the agent merges their window parts.
  const ROWS = 500
  const children = await Promise.all([
    runChild({ ROWS: String(ROWS), PROJECT: project, AGENT: `unix://${sock}` }),
    runChild({ ROWS: String(ROWS), PROJECT: project, AGENT: `http://${a.tcp}` }),
  ])
  for (const r of children) {
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stats.dropped, 0)
    assert.equal(r.stats.queued, 0)
    assert.equal(r.stats.delivered, r.stats.sent, 'everything was acknowledged by the agent before exit')
    assert.ok(r.stats.windows >= 1)
    assert.ok(r.ms < 10_000, `child took ${r.ms} ms`)
  }

  // The agent forwards after its merge grace; poll the collector until every row is stored.
  const url = `http://${c.http}/api/v1/projects/${project}/models/e2e-model/windows`
  let stored = 0
  let body = null
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(200)) {
    const res = await fetch(url, { headers: { 'x-api-key': apiKey } })
    assert.equal(res.status, 200, await res.clone().text())
    body = await res.json()
    stored = body.items.reduce((sum, w) => sum + w.rows, 0)
    if (stored >= 2 * ROWS) break
  }
  assert.equal(stored, 2 * ROWS, `collector windows: ${JSON.stringify(body)}`)
  for (const w of body.items) {
    assert.equal(w.version, 'v1')
    assert.equal(w.environment, 'test')
  }
})
