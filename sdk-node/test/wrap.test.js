'use strict'
// monitor.wrap(fn): sync and async predict functions are timed, logged, and their failures
// counted, without changing what the caller sees.

const test = require('node:test')
const assert = require('node:assert/strict')
const { setTimeout: sleep } = require('node:timers/promises')
const { memoryMonitor, onlyWindow } = require('./helpers')

const ROW = { age: 30, income: 1000, country: 'FR', member: true }

test('sync predict: result passes through, row and latency are logged', () => {
  const m = memoryMonitor()
  const predict = m.wrap((row) => (row.age > 18 ? 'churn' : 'stay'))
  assert.equal(predict(ROW), 'churn')
  assert.equal(predict({ ...ROW, age: 10 }), 'stay')
  const w = onlyWindow(m)
  assert.equal(w.rows, 2)
  assert.equal(w.latencyCount, 2)
  assert.equal(w.errors, 0)
  assert.equal(w.features.age.mean, 20)
})

test('async predict: awaited result is logged with its full latency', async () => {
  const m = memoryMonitor()
  const predict = m.wrap(async (row) => {
    await sleep(30)
    return 'stay'
  })
  assert.equal(await predict(ROW), 'stay')
  const w = onlyWindow(m)
  assert.equal(w.rows, 1)
  assert.equal(w.latencyCount, 1)
  assert.ok(w.latencyP50Ms >= 25, `latency ${w.latencyP50Ms} ms`)
})

test('a throwing predict rethrows and counts an error, no row', () => {
  const m = memoryMonitor()
  const boom = new Error('model failed')
  const predict = m.wrap(() => {
    throw boom
  })
  assert.throws(() => predict(ROW), (err) => err === boom)
  const w = onlyWindow(m)
  assert.equal(w.errors, 1)
  assert.equal(w.rows, 0)
  assert.equal(w.latencyCount, 1)
})

test('a rejecting async predict rejects with the same error and counts it', async () => {
  const m = memoryMonitor()
  const boom = new Error('timeout upstream')
  const predict = m.wrap(async () => {
    await sleep(5)
    throw boom
  })
  await assert.rejects(predict(ROW), (err) => err === boom)
  const w = onlyWindow(m)
  assert.equal(w.errors, 1)
  assert.equal(w.rows, 0)
})

test('pickers choose features, prediction and id; this is preserved', async () => {
  const m = memoryMonitor()
  const model = {
    threshold: 0.5,
    predict: m.wrap(
      async function (request) {
        return { p: request.features.age / 100 > this.threshold ? 1 : 0, score: request.features.age / 100 }
      },
      {
        features: ([request]) => request.features,
        prediction: (out) => out.p,
        id: ([request]) => request.id,
      },
    ),
  }
  const out = await model.predict({ id: 'req-1', features: { ...ROW, age: 80 } })
  assert.deepEqual(out, { p: 1, score: 0.8 })
  const w = onlyWindow(m)
  assert.equal(w.rows, 1)
  assert.equal(w.features.age.mean, 80)
  assert.equal(w.predictionRecords, 1)
})

test('a wrapped function keeps its name and bad returns are counted, not thrown', () => {
  const m = memoryMonitor()
  function scoreModel() {
    return { unexpected: 'shape' }
  }
  const wrapped = m.wrap(scoreModel)
  assert.equal(wrapped.name, 'scoreModel')
  assert.deepEqual(wrapped(ROW), { unexpected: 'shape' })
  assert.equal(onlyWindow(m).rows, 1)
  assert.throws(() => m.wrap('not a function'), (err) => err.code === 'NC_INVALID_ARGUMENT')
})
