'use strict'
// Behaviour of the public API against the real native core (windows read back in memory).

const test = require('node:test')
const assert = require('node:assert/strict')
const { memoryMonitor, onlyWindow, Monitor, deadEndpoint } = require('./helpers')

test('log records rows, outcomes and latency into the current window', () => {
  const m = memoryMonitor()
  m.log({ age: 30, income: 1000, country: 'FR', member: true }, 'churn', { label: 'stay', latencyMs: 4, id: 'a1', scores: 0.8 })
  m.log({ age: 40, income: 2000, country: 'DE', member: false }, 'stay', { label: 'stay', scores: [0.9, 0.1] })
  m.log([50, 3000, 'FR', true], 1)
  const w = onlyWindow(m)
  assert.equal(w.rows, 3)
  assert.equal(w.features.age.count, 3)
  assert.equal(w.features.age.mean, 40)
  assert.equal(w.features.age.min, 30)
  assert.equal(w.features.age.max, 50)
  assert.equal(w.features.country.kind, 'categorical')
  assert.equal(w.features.member.kind, 'boolean')
  assert.equal(w.features.member.typeMismatch, 0)
  assert.equal(w.label.count, 2)
  assert.equal(w.latencyCount, 1)
  assert.ok(Math.abs(w.latencyP50Ms - 4) < 0.05)
  assert.equal(w.predictionRecords, 1, 'only rows with an id are kept for label joins')
  assert.equal(w.extraFeatures, 0)
})

test('features getter follows the configured schema order', () => {
  const m = memoryMonitor()
  assert.deepEqual(m.features, ['age', 'income', 'country', 'member'])
})

test('schema is inferred from the first row when not configured', () => {
  const m = memoryMonitor({ features: undefined })
  assert.equal(m.features, null)
  m.log({ x: 1.5, tier: 'gold', ok: true }, 'churn')
  assert.deepEqual(m.features, ['x', 'tier', 'ok'])
  m.log({ x: 2.5, tier: 'silver', ok: false }, 'stay')
  const w = onlyWindow(m)
  assert.equal(w.rows, 2)
  assert.equal(w.features.x.kind, 'numeric')
  assert.equal(w.features.tier.kind, 'categorical')
  assert.equal(w.features.ok.kind, 'boolean')
  assert.equal(w.features.x.mean, 2)
})

test('many distinct strings stay correct past the intern table', () => {
  const m = memoryMonitor()
  for (let i = 0; i < 20000; i++) m.log({ age: 1, income: 1, country: `c${i}`, member: true }, 0)
  const w = onlyWindow(m)
  assert.equal(w.features.country.count, 20000)
  assert.equal(w.features.country.missing, 0)
  assert.equal(w.features.country.typeMismatch, 0)
})

test('logBatch reads typed arrays, string and boolean arrays, with nulls as missing', () => {
  const m = memoryMonitor()
  m.logBatch({
    columns: {
      age: new Float64Array([10, 20, 30, 40]),
      income: new Float32Array([1, 2, 3, 4]),
      country: ['FR', null, 'DE', undefined],
      member: [true, false, null, true],
    },
    predictions: ['churn', 'stay', 'stay', 'churn'],
    labels: ['stay', 'stay', 'churn', 'churn'],
    ids: ['r1', 'r2', 'r3', 'r4'],
    latenciesMs: [1, 2, 3, 4],
    scores: new Float64Array([0.9, 0.1, 0.2, 0.8]),
  })
  const w = onlyWindow(m)
  assert.equal(w.rows, 4)
  assert.equal(w.features.age.mean, 25)
  assert.equal(w.features.income.mean, 2.5)
  assert.equal(w.features.country.missing, 2)
  assert.equal(w.features.member.missing, 1)
  assert.equal(w.label.count, 4)
  assert.equal(w.latencyCount, 4)
})

test('logBatch accepts integer typed arrays and BigInt64Array', () => {
  const m = memoryMonitor({ features: { a: 'numeric', b: 'numeric' } })
  m.logBatch({ columns: { a: new Int32Array([1, 2, 3]), b: new BigInt64Array([4n, 5n, 6n]) }, predictions: [0, 1, 0] })
  const w = onlyWindow(m)
  assert.equal(w.features.a.mean, 2)
  assert.equal(w.features.b.mean, 5)
})

test('logBatch with columns of different lengths throws NC_INVALID_BATCH', () => {
  const m = memoryMonitor()
  assert.throws(
    () => m.logBatch({ columns: { age: new Float64Array(3), income: new Float64Array(2) } }),
    (err) => err.code === 'NC_INVALID_BATCH' && /rows/.test(err.message),
  )
  assert.throws(
    () => m.logBatch({ columns: { age: new Float64Array(3) }, predictions: [1, 0], scores: [0.1, 0.2, 0.3, 0.4] }),
    (err) => err.code === 'NC_INVALID_BATCH',
  )
})

test('logBatch with mixed-type arrays judges each cell (row path)', () => {
  const m = memoryMonitor()
  m.logBatch({ columns: { age: [1, 'two', 3], income: [1, 2, 3], country: ['a', 'b', 7], member: [true, 'yes', false] } })
  const w = onlyWindow(m)
  assert.equal(w.rows, 3)
  assert.equal(w.features.age.typeMismatch, 1)
  assert.equal(w.features.country.typeMismatch, 1)
  assert.equal(w.features.member.typeMismatch, 1)
})

test('logLabels ships a label batch; mismatched lengths are rejected', () => {
  const m = memoryMonitor()
  const before = m.stats().sent
  m.logLabels(['a1', 'a2'], ['churn', 'stay'])
  assert.equal(m.stats().sent, before + 1)
  assert.throws(() => m.logLabels(['a1'], ['churn', 'stay']), (err) => err.code === 'NC_INVALID_BATCH')
  assert.throws(() => m.logLabels('a1', 'churn'), (err) => err.code === 'NC_INVALID_ARGUMENT')
})

test('setReference ships a reference profile', () => {
  const m = memoryMonitor()
  const n = 1000
  const age = Float64Array.from({ length: n }, (_, i) => i)
  m.setReference({ age, income: age, country: Array.from({ length: n }, (_, i) => (i % 2 ? 'FR' : 'DE')), member: Array.from({ length: n }, (_, i) => i % 3 === 0) })
  const s = m.stats()
  assert.equal(s.sent, 1)
  assert.throws(() => m.setReference({ age: [1, 'x'] }), (err) => err.code === 'NC_INVALID_ARGUMENT')
})

test('recordLatency and recordError land in the window; bad latency throws', () => {
  const m = memoryMonitor()
  m.recordLatency(12.5)
  m.recordError()
  m.recordError()
  assert.throws(() => m.recordLatency(-1), (err) => err.code === 'NC_INVALID_ARGUMENT')
  assert.throws(() => m.recordLatency(NaN), (err) => err.code === 'NC_INVALID_ARGUMENT')
  const w = onlyWindow(m)
  assert.equal(w.errors, 2)
  assert.equal(w.latencyCount, 1)
})

test('stats keep sent == delivered + dropped + queued', async () => {
  const m = memoryMonitor()
  for (let i = 0; i < 10; i++) m.log({ age: i, income: 1, country: 'FR', member: true }, 0)
  assert.equal(await m.flush(1000), true)
  const s = m.stats()
  assert.equal(s.sent, s.delivered + s.dropped + s.queued)
  assert.equal(s.windows, 1)
})

test('flush against an unreachable agent resolves false within its timeout', async () => {
  const m = memoryMonitor({ agent: await deadEndpoint() })
  m.log({ age: 1, income: 1, country: 'FR', member: true }, 0)
  const t0 = Date.now()
  const delivered = await m.flush(300)
  const waited = Date.now() - t0
  assert.equal(delivered, false)
  assert.ok(waited >= 250 && waited < 3000, `waited ${waited} ms`)
  const s = m.stats()
  assert.equal(s.sent, s.delivered + s.dropped + s.queued)
  assert.equal(s.delivered, 0)
  await m.shutdown(100)
})

test('after shutdown, log is ignored (and throws NC_SHUT_DOWN in strict mode)', async () => {
  const m = memoryMonitor()
  await m.shutdown(100)
  assert.doesNotThrow(() => m.log({ age: 1, income: 1, country: 'FR', member: true }, 0))
  const s = memoryMonitor({ strict: true })
  await s.shutdown(100)
  assert.throws(() => s.log({ age: 1, income: 1, country: 'FR', member: true }, 'stay'), (err) => err.code === 'NC_SHUT_DOWN')
})

test('options are validated with NC_INVALID_CONFIG', () => {
  const bad = [
    undefined,
    null,
    {},
    { project: 'p' },
    { project: 'p', model: 'm', windowSecond: 60 },
    { project: 'p', model: 'm', windowSeconds: '60' },
    { project: 'p', model: 'm', windowSeconds: -1 },
    { project: 'p', model: 'm', windowSeconds: NaN },
    { project: 'p', model: 'm', task: 'ranking' },
    { project: 'p', model: 'm', task: 'binary', classes: ['a', 'b', 'c'] },
    { project: 'p', model: 'm', features: { a: 'text' } },
    { project: 'p', model: 'm', features: [{ name: 1 }] },
    { project: 'p', model: 'm', features: { a: 'numeric' }, sensitive: ['zz'] },
    { project: 'p', model: 'm', reservoirSize: 1.5 },
    { project: 'p', model: 'm', hashSampleRate: 2 },
    { project: 'p', model: 'm', agent: 'ftp://nowhere' },
    { project: 'p', model: 'm', classes: [1, 2] },
  ]
  for (const options of bad) {
    assert.throws(() => new Monitor(options), (err) => err.code === 'NC_INVALID_CONFIG', JSON.stringify(options))
  }
})

test('a regression monitor records numeric predictions and labels', () => {
  const m = memoryMonitor({ task: 'regression', classes: undefined })
  m.log({ age: 1, income: 2, country: 'FR', member: true }, 3.5, { label: 3 })
  m.log({ age: 1, income: 2, country: 'FR', member: true }, 4.5, { label: 5 })
  const w = onlyWindow(m)
  assert.equal(w.prediction.kind, 'numeric')
  assert.equal(w.prediction.mean, 4)
  assert.equal(w.label.mean, 4)
})

test('takeWindows needs agent: memory', async () => {
  const m = memoryMonitor({ agent: await deadEndpoint() })
  assert.throws(() => m.takeWindows(), (err) => err.code === 'NC_INVALID_ARGUMENT')
  await m.shutdown(50)
})

test('multiclass with more scores than the row buffer holds still records them', () => {
  const classes = Array.from({ length: 100 }, (_, i) => `c${i}`)
  const m = memoryMonitor({ task: 'multiclass', classes, strict: true })
  const scores = new Float64Array(100).fill(0.01)
  m.log({ age: 1, income: 2, country: 'FR', member: true }, 'c3', { label: 'c3', scores })
  m.log({ age: 1, income: 2, country: 'FR', member: true }, 7, { label: 'c7', scores: Array.from(scores) })
  assert.throws(
    () => m.log({ age: 1, income: 2, country: 'FR', member: true }, 'c3', { scores: [0.5, 0.5] }),
    (err) => err.code === 'NC_INVALID_DATA' && /scores/.test(err.message),
  )
  const w = onlyWindow(m)
  assert.equal(w.rows, 2)
  assert.equal(w.label.count, 2)
})

test('features may be given as a list of names or of {name, kind}', () => {
  const a = memoryMonitor({ features: ['x', 'y'] })
  assert.deepEqual(a.features, ['x', 'y'])
  const b = memoryMonitor({ features: [{ name: 'y', kind: 'categorical' }, { name: 'x', kind: 'numeric' }] })
  assert.deepEqual(b.features, ['y', 'x'])
  b.log({ x: 1, y: 'k' }, 'stay')
  const w = onlyWindow(b)
  assert.equal(w.features.y.kind, 'categorical')
  assert.equal(w.features.x.mean, 1)
})

test('maxPredictionRecords caps the records kept per window; the rest are counted', () => {
  const row = { age: 30, income: 1000, country: 'FR', member: true }
  const m = memoryMonitor({ maxPredictionRecords: 3 })
  for (let i = 0; i < 10; i++) m.log(row, 'stay', { id: `r${i}` })
  m.log(row, 'stay') // no id: nothing to keep, nothing dropped
  let w = onlyWindow(m)
  assert.deepEqual([w.predictionRecords, w.predictionsDropped], [3, 7])

  const batch = memoryMonitor({ maxPredictionRecords: 0 })
  batch.logBatch({ columns: { age: new Float64Array(5) }, predictions: Array(5).fill('stay'), ids: ['a', 'b', 'c', 'd', 'e'] })
  w = onlyWindow(batch)
  assert.deepEqual([w.predictionRecords, w.predictionsDropped], [0, 5])

  const byDefault = memoryMonitor()
  for (let i = 0; i < 10; i++) byDefault.log(row, 'stay', { id: `r${i}` })
  assert.equal(onlyWindow(byDefault).predictionRecords, 10)
})

test('a bad maxPredictionRecords throws NC_INVALID_CONFIG naming the option', () => {
  for (const bad of [-1, 1.5, 100_001, 1e20, Infinity, NaN, '100', true, null, [3]]) {
    assert.throws(
      () => memoryMonitor({ maxPredictionRecords: bad }),
      (err) => err.code === 'NC_INVALID_CONFIG' && /maxPredictionRecords/.test(err.message),
      String(bad),
    )
  }
})

test('timestamp does not choose the window: the window open at call time gets the row', () => {
  const m = memoryMonitor()
  m.log({ age: 30, income: 1000, country: 'FR', member: true }, 'stay', { id: 'old', timestamp: 1000 })
  const w = onlyWindow(m)
  assert.ok(w.windowStartMs <= Date.now() && Date.now() < w.windowStartMs + w.windowLengthMs)
  assert.equal(w.rows, 1)
})

test('ids the collector would refuse never leave the SDK', () => {
  const row = { age: 30, income: 1000, country: 'FR', member: true }
  const tooLong = 'x'.repeat(129)
  const m = memoryMonitor()
  for (const id of [tooLong, '', 'line\nbreak', 'y'.repeat(128)]) m.log(row, 'stay', { id })
  m.logBatch({ columns: { age: new Float64Array(2) }, predictions: ['stay', 'stay'], ids: [tooLong, 'ok'] })
  assert.throws(
    () => m.logLabels(['ok', tooLong], ['stay', 'churn']),
    (err) => err.code === 'NC_INVALID_BATCH' && /ids\[1\]/.test(err.message),
  )
  const w = onlyWindow(m)
  assert.equal(w.rows, 6)
  assert.deepEqual([w.predictionRecords, w.predictionsDropped], [2, 4])

  const strict = memoryMonitor({ strict: true })
  assert.throws(() => strict.log(row, 'stay', { id: tooLong }), (err) => err.code === 'NC_INVALID_DATA')
})
