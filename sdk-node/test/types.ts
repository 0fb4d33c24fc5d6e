// Compiled with `tsc --noEmit` by scripts/test-node.sh: index.d.ts must describe the API the
// way a TypeScript user calls it (this file is never run).
import { Monitor, type MonitorOptions, type Stats, type WindowSummary, type ErrorCode } from '..'

const options: MonitorOptions = {
  project: 'p',
  model: 'm',
  version: '1',
  task: 'binary',
  classes: ['no', 'yes'],
  features: { age: 'numeric', country: 'categorical', member: 'boolean' },
  sensitive: ['country'],
  windowSeconds: 60,
  agent: 'memory',
  strict: false,
  exitFlushMs: 1000,
}
const m = new Monitor(options)
m.log({ age: 3, country: 'FR', member: true }, 'yes', { label: 'no', id: 'r1', latencyMs: 2, scores: 0.7, timestamp: new Date() })
m.log([3, 'FR', true], 1)
m.logBatch({ columns: { age: new Float64Array(2), country: ['a', null], member: [true, false] }, predictions: ['yes', 'no'], scores: [0.1, 0.9] })
m.logLabels(['r1'], ['no'])
m.setReference({ age: new Float64Array([1, 2, 3]) })
m.recordLatency(3)
m.recordError()
m.recordRobustness({ stability: 0.9, rows: 100, repeats: 3, noise: 0.05, dropout: 0, discrete: true, featureSensitivity: { age: 0.1 } })
const predict = m.wrap(async (row: { age: number }) => row.age > 3, { prediction: (r) => r, id: ([row]) => String(row.age) })
const result: Promise<boolean> = predict({ age: 4 })
const stats: Stats = m.stats()
const windows: WindowSummary[] = m.takeWindows()
const names: string[] | null = m.features
const code: ErrorCode = 'NC_INVALID_DATA'
void [result, stats, windows, names, code, m.flush(10), m.shutdown()]
