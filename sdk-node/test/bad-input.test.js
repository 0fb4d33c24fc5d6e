'use strict'
// Bad data never throws (it is counted by the core) unless the monitor is strict, where it
// throws a typed error and is counted as rejected.

const test = require('node:test')
const assert = require('node:assert/strict')
const { memoryMonitor, onlyWindow } = require('./helpers')

const GOOD = { age: 30, income: 1000, country: 'FR', member: true }

test('NaN, ±Infinity, undefined, null and wrong types are counted, not thrown', () => {
  const m = memoryMonitor()
  const rows = [
    { ...GOOD, age: NaN },
    { ...GOOD, age: Infinity },
    { ...GOOD, age: -Infinity },
    { ...GOOD, age: undefined },
    { ...GOOD, age: null },
    { ...GOOD, age: 'thirty' },
    { ...GOOD, age: { years: 30 } },
    { ...GOOD, age: [30] },
    { ...GOOD, age: () => 30 },
    { ...GOOD, age: Symbol('x') },
    { ...GOOD, age: 30n },
    { ...GOOD, country: 42 },
    { ...GOOD, country: { code: 'FR' } },
    { ...GOOD, member: 'yes' },
    { ...GOOD, member: 1 },
  ]
  for (const row of rows) assert.doesNotThrow(() => m.log(row, 'churn'))
  const w = onlyWindow(m)
  assert.equal(w.rows, rows.length)
  const age = w.features.age
  assert.equal(age.nan, 1)
  assert.equal(age.posInf, 1)
  assert.equal(age.negInf, 1)
  assert.equal(age.missing, 2, 'undefined and null')
  assert.equal(age.typeMismatch, 5, "'thirty', object, array, function, symbol")
  assert.equal(age.count, rows.length)
  assert.equal(w.features.country.typeMismatch, 2)
  assert.equal(w.features.member.typeMismatch, 2)
})

test('missing features are counted as missing, extra features as a schema change', () => {
  const m = memoryMonitor()
  m.log({ age: 1, income: 2 }, 'stay')
  m.log({ ...GOOD, extra: 'surprise' }, 'stay')
  m.log([1, 2], 'stay')
  const w = onlyWindow(m)
  assert.equal(w.rows, 3)
  assert.equal(w.features.country.missing, 2)
  assert.equal(w.features.member.missing, 2)
  assert.ok(w.extraFeatures >= 2, `extraFeatures ${w.extraFeatures}`)
})

test('rows that are not objects are counted, not thrown', () => {
  const m = memoryMonitor()
  for (const row of [undefined, null, 42, 'row', true]) assert.doesNotThrow(() => m.log(row, 'stay'))
  const w = onlyWindow(m)
  assert.equal(w.rows, 5)
  assert.equal(w.features.age.missing, 5)
})

test('bad predictions, labels, scores, ids and timestamps are counted, not thrown', () => {
  const m = memoryMonitor()
  const opts = [
    { label: 'unknown-class' },
    { label: {} },
    { scores: [2, -1] },
    { scores: 'high' },
    { scores: [NaN] },
    { id: { not: 'a string' } },
    { id: 12345 },
    { timestamp: 'yesterday' },
    { timestamp: new Date(0) },
    { latencyMs: -5 },
    { latencyMs: 'slow' },
    null,
    'not-options',
  ]
  for (const o of opts) assert.doesNotThrow(() => m.log(GOOD, 'churn', o))
  for (const p of ['maybe', NaN, undefined, null, {}, 7]) assert.doesNotThrow(() => m.log(GOOD, p))
  const w = onlyWindow(m)
  assert.equal(w.rows, opts.length + 6)
  assert.equal(w.latencyCount, 0, 'negative or non-numeric latencies are not recorded')
})

test('huge strings are truncated and counted', () => {
  const m = memoryMonitor({ maxStringLength: 64 })
  const huge = 'x'.repeat(5 * 1024 * 1024)
  m.log({ ...GOOD, country: huge }, 'stay')
  m.log({ ...GOOD, country: 'é'.repeat(100) }, 'stay')
  m.logBatch({ columns: { age: [1], income: [1], country: [huge], member: [true] } })
  const w = onlyWindow(m)
  assert.equal(w.features.country.truncated, 3)
})

test('a huge feature name or id does not throw', () => {
  const m = memoryMonitor()
  const long = 'k'.repeat(1 << 20)
  assert.doesNotThrow(() => m.log({ ...GOOD, [long]: 1 }, 'stay', { id: long }))
  assert.equal(onlyWindow(m).rows, 1)
})

test('strict mode throws NC_INVALID_DATA with the feature named, and counts rejections', () => {
  const m = memoryMonitor({ strict: true })
  m.log(GOOD, 'churn', { label: 'stay' })
  const cases = [
    [{ ...GOOD, age: NaN }, 'churn', /age/],
    [{ ...GOOD, age: Infinity }, 'churn', /age/],
    [{ ...GOOD, age: undefined }, 'churn', /age/],
    [{ ...GOOD, age: 'x' }, 'churn', /age/],
    [{ ...GOOD, country: {} }, 'churn', /country/],
    [{ ...GOOD, extra: 1 }, 'churn', /extra/],
    [GOOD, 'maybe', /prediction/],
  ]
  for (const [row, pred, re] of cases) {
    assert.throws(
      () => m.log(row, pred),
      (err) => err.code === 'NC_INVALID_DATA' && re.test(err.message),
      JSON.stringify(row),
    )
  }
  assert.throws(() => m.log(GOOD, 'churn', { scores: [1.5] }), (err) => err.code === 'NC_INVALID_DATA')
  assert.throws(
    () => m.logBatch({ columns: { age: [1, NaN], income: [1, 1], country: ['a', 'b'], member: [true, true] } }),
    (err) => err.code === 'NC_INVALID_DATA',
  )
  assert.ok(m.stats().rejected >= cases.length)
  assert.equal(onlyWindow(m).rows, 1, 'rejected rows are not recorded')
})

test('wrong argument shapes for batches throw NC_INVALID_ARGUMENT', () => {
  const m = memoryMonitor()
  assert.throws(() => m.logBatch(null), (err) => err.code === 'NC_INVALID_ARGUMENT')
  assert.throws(() => m.logBatch({ columns: 'nope' }), (err) => err.code === 'NC_INVALID_ARGUMENT')
  assert.throws(() => m.logBatch({ columns: { age: 5 } }), (err) => err.code === 'NC_INVALID_ARGUMENT')
  assert.throws(() => m.logBatch({ columns: { age: [1] }, scores: 'x' }), (err) => err.code === 'NC_INVALID_ARGUMENT')
})
