'use strict'
// recordRobustness: a probe's result goes into the open window (rows-weighted stability in the
// window summary); malformed reports are refused with a stable code and leave nothing behind.

const test = require('node:test')
const assert = require('node:assert/strict')
const { memoryMonitor, onlyWindow } = require('./helpers')

const report = (changes = {}) => ({
  stability: 0.9,
  rows: 100,
  repeats: 3,
  noise: 0.05,
  dropout: 0.1,
  discrete: true,
  featureSensitivity: { age: 0.1 },
  ...changes,
})

test('probes are recorded into the open window and weighted by rows', () => {
  const m = memoryMonitor()
  m.recordRobustness(report({ stability: 0.5, rows: 300 }))
  m.recordRobustness(report({ stability: 1, rows: 100, featureSensitivity: undefined }))
  const w = onlyWindow(m)
  assert.equal(w.rows, 0, 'a window holding only probes is still shipped')
  assert.equal(w.robustnessProbes, 2)
  assert.ok(Math.abs(w.perturbationStability - (0.5 * 300 + 100) / 400) < 1e-12, String(w.perturbationStability))
})

test('a window without probes has no stability', () => {
  const m = memoryMonitor()
  m.log({ age: 30, income: 1000, country: 'FR', member: true }, 'stay')
  const w = onlyWindow(m)
  assert.equal(w.robustnessProbes, 0)
  assert.equal(w.perturbationStability, undefined)
})

for (const [name, changes, code] of [
  ['NaN stability', { stability: NaN }, 'NC_INVALID_PROFILE'],
  ['stability above 1', { stability: 1.5 }, 'NC_INVALID_PROFILE'],
  ['infinite noise', { noise: Infinity }, 'NC_INVALID_PROFILE'],
  ['negative dropout', { dropout: -0.1 }, 'NC_INVALID_PROFILE'],
  ['zero rows', { rows: 0 }, 'NC_INVALID_PROFILE'],
  ['fractional rows', { rows: 1.5 }, 'NC_INVALID_ARGUMENT'],
  ['negative repeats', { repeats: -1 }, 'NC_INVALID_ARGUMENT'],
  ['repeats above u32', { repeats: 2 ** 32 }, 'NC_INVALID_ARGUMENT'],
  ['string stability', { stability: '0.9' }, 'NC_INVALID_ARGUMENT'],
  ['NaN sensitivity', { featureSensitivity: { age: NaN } }, 'NC_INVALID_PROFILE'],
  ['string sensitivity', { featureSensitivity: { age: 'high' } }, 'NC_INVALID_ARGUMENT'],
  ['array sensitivity', { featureSensitivity: [0.1] }, 'NC_INVALID_ARGUMENT'],
  ['empty feature name', { featureSensitivity: { '': 0.1 } }, 'NC_INVALID_PROFILE'],
  ['huge feature name', { featureSensitivity: { ['x'.repeat(100000)]: 0.1 } }, 'NC_INVALID_PROFILE'],
]) {
  test(`recordRobustness refuses ${name} with ${code}`, () => {
    const m = memoryMonitor()
    assert.throws(() => m.recordRobustness(report(changes)), (err) => err.code === code)
    m.recordRobustness(report())
    assert.equal(onlyWindow(m).robustnessProbes, 1, 'the refused report left nothing behind')
  })
}

test('recordRobustness needs an object', () => {
  const m = memoryMonitor()
  for (const bad of [null, undefined, 0.9, 'report']) {
    assert.throws(() => m.recordRobustness(bad), (err) => err.code === 'NC_INVALID_ARGUMENT')
  }
})
