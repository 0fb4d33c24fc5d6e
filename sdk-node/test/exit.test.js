'use strict'
// The SDK never keeps a process alive, yet what was logged leaves on exit: a natural exit
// flushes through `beforeExit`, `process.exit()` through a bounded synchronous flush.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { deadEndpoint } = require('./helpers')

const CHILD = path.join(__dirname, 'fixtures', 'exit-child.js')

function runChild(env) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    const child = spawn(process.execPath, [CHILD], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const kill = setTimeout(() => child.kill('SIGKILL'), 20_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(kill)
      const ms = Number(process.hrtime.bigint() - started) / 1e6
      resolve({ code, ms, stats: out.trim() ? JSON.parse(out.trim()) : null, stderr: err })
    })
  })
}

// Node itself needs a moment to start; the SDK's share must stay well under a second.
async function baselineMs() {
  const started = process.hrtime.bigint()
  await new Promise((resolve) => spawn(process.execPath, ['-e', 'require("../..")'], { cwd: path.join(__dirname, 'fixtures') }).on('close', resolve))
  return Number(process.hrtime.bigint() - started) / 1e6
}

test('natural exit flushes the open window (memory sink) and exits promptly', async () => {
  const base = await baselineMs()
  const r = await runChild({ MODE: 'natural', AGENT: 'memory', EXIT_FLUSH_MS: '2000' })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stats.windows, 1, 'the open window was closed on exit')
  assert.equal(r.stats.sent, 1)
  assert.equal(r.stats.delivered, 1)
  assert.ok(r.ms < base + 1000, `exit took ${r.ms.toFixed(0)} ms (node alone ${base.toFixed(0)} ms)`)
})

test('process.exit() flushes synchronously', async () => {
  const r = await runChild({ MODE: 'explicit-exit', AGENT: 'memory', EXIT_FLUSH_MS: '2000' })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stats.windows, 1)
  assert.equal(r.stats.delivered, 1)
})

test('an unreachable agent delays exit by at most exitFlushMs, and nothing is lost from the count', async () => {
  const base = await baselineMs()
  for (const mode of ['natural', 'explicit-exit', 'timer']) {
    const r = await runChild({ MODE: mode, AGENT: await deadEndpoint(), EXIT_FLUSH_MS: '300' })
    assert.equal(r.code, 0, r.stderr)
    const s = r.stats
    assert.equal(s.windows, 1, mode)
    assert.equal(s.delivered, 0, mode)
    assert.equal(s.sent, s.delivered + s.dropped + s.queued, mode)
    assert.ok(r.ms < base + 300 + 1500, `${mode}: exit took ${r.ms.toFixed(0)} ms (node alone ${base.toFixed(0)} ms)`)
  }
})
