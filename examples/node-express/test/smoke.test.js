'use strict'
// Smoke test of the example service: real HTTP requests against the Express app on a random
// loopback port; the monitor keeps its windows in memory so the test can see what it recorded.

const test = require('node:test')
const assert = require('node:assert/strict')
const { createApp } = require('../server')

async function withServer(fn) {
  const { app, monitor } = createApp({ agent: 'memory', windowSeconds: 3600 })
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const base = `http://127.0.0.1:${server.address().port}`
  try {
    await fn(base, monitor)
  } finally {
    await new Promise((resolve) => server.close(resolve))
    await monitor.shutdown(1000)
  }
}

const post = (url, body) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

test('predictions, feedback and bad requests are served and monitored', async () => {
  await withServer(async (base, monitor) => {
    const row = { tenure_months: 3, monthly_spend: 80, support_tickets: 4, plan: 'basic', region: 'eu', autopay: false }
    const res = await post(`${base}/predict`, { id: 'c-1', features: row })
    assert.equal(res.status, 200)
    const body = await res.json()
    assert.equal(body.id, 'c-1')
    assert.equal(typeof body.churn, 'boolean')
    assert.ok(body.probability > 0 && body.probability < 1)

    // A client sending garbage values still gets an answer; the monitor counts the damage.
    const odd = await post(`${base}/predict`, { features: { ...row, monthly_spend: 'lots', region: null } })
    assert.equal(odd.status, 200)

    assert.equal((await post(`${base}/predict`, { nope: 1 })).status, 400)
    assert.equal((await post(`${base}/feedback`, { id: 'c-1', churned: true })).status, 204)
    assert.equal((await post(`${base}/feedback`, { id: 'c-1' })).status, 400)
    assert.equal((await fetch(`${base}/healthz`)).status, 200)

    const windows = monitor.takeWindows()
    assert.equal(windows.length, 1)
    const w = windows[0]
    assert.equal(w.rows, 2)
    assert.equal(w.errors, 1, 'the malformed request counts as a failed prediction')
    assert.equal(w.latencyCount, 2)
    assert.equal(w.features.monthly_spend.typeMismatch, 1)
    assert.equal(w.features.region.missing, 1)
    const stats = await (await fetch(`${base}/monitor/stats`)).json()
    assert.equal(stats.sent, stats.delivered + stats.dropped + stats.queued)
    assert.ok(stats.sent >= 2, 'the label batch and the window were handed over')
  })
})
