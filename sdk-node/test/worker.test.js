'use strict'
// Monitors inside worker threads: each worker's environment tears down its own monitors
// (native cleanup hook), and the main thread carries on unaffected.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { Worker } = require('node:worker_threads')
const { deadEndpoint, memoryMonitor, onlyWindow } = require('./helpers')

function runWorker(source, workerData) {
  return new Promise((resolve, reject) => {
    const w = new Worker(source, { eval: true, workerData })
    let message = null
    w.on('message', (m) => (message = m))
    w.on('error', reject)
    w.on('exit', (code) => resolve({ code, message }))
  })
}

const SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const { Monitor } = require(${JSON.stringify(path.join(__dirname, '..'))})
const m = new Monitor({ project: 'p', model: 'w', version: '1', task: 'regression',
  features: { x: 'numeric' }, agent: workerData.agent, exitFlushMs: 200 })
for (let i = 0; i < 1000; i++) m.log({ x: i }, i)
parentPort.postMessage(workerData.agent === 'memory' ? m.takeWindows()[0].rows : m.stats().sent)
`

test('a worker thread logs, exits, and releases its monitor', async () => {
  const r = await runWorker(SOURCE, { agent: 'memory' })
  assert.equal(r.code, 0)
  assert.equal(r.message, 1000)
})

test('a terminated worker with an unreachable agent does not hang or crash the process', async () => {
  const started = Date.now()
  const results = await Promise.all([1, 2, 3].map(async () => runWorker(SOURCE, { agent: await deadEndpoint() })))
  for (const r of results) assert.equal(r.code, 0)
  assert.ok(Date.now() - started < 10_000)
  // The main thread's own monitor is untouched by the workers' teardown.
  const m = memoryMonitor()
  m.log({ age: 1, income: 1, country: 'FR', member: true }, 'stay')
  assert.equal(onlyWindow(m).rows, 1)
})
