'use strict'
// Public JS API of the `neurocloak` package. The native addon (native.js, built from
// src/lib.rs) owns every statistic and the shipping thread; this file only shapes JS values
// into the flat form the addon reads in one call, times wrapped predict functions and hooks
// process exit.

const native = require('./native.js')
const { version } = require('./package.json')

// A stale addon next to newer JS would misread the packed rows: refuse it with a clear message.
if (native.nativeVersion() !== version) {
  const err = new Error(`neurocloak: native addon ${native.nativeVersion()} does not match package ${version}; rebuild it (npm run build)`)
  err.code = 'NC_INVALID_CONFIG'
  throw err
}

// Type tags the addon reads next to each packed slot (src/convert.rs).
const MISSING = 0
const NUMBER = 1
const TEXT = 2
const BOOL = 3
const INVALID = 4
const INTERNED = 5

// Packed row layout: the schema's features, then these tagged slots, then the class scores
// (their count sits in the META_SCORES slot).
const META_PREDICTION = 0
const META_LABEL = 1
const META_TIMESTAMP = 2
const META_LATENCY = 3
const META_SCORES = 4
const META_SLOTS = 5

// Strings up to this length are interned (sent once, then by id); the table is bounded so
// high-cardinality text cannot grow it without limit, past it strings travel per call.
const MAX_INTERN_LENGTH = 256
const MAX_INTERNED = 16384

// Class scores that fit the bound row buffer; rows with more take the named path.
const ROW_SCORE_CAPACITY = 64

const DEFAULT_EXIT_FLUSH_MS = 2000

/** Per-monitor string handling: interned ids, and this call's strings that are not interned. */
class Strings {
  constructor(nativeMonitor) {
    this.native = nativeMonitor
    this.ids = new Map()
    this.texts = []
  }

  pack(vals, tags, i, s) {
    let id = this.ids.get(s)
    if (id === undefined && s.length <= MAX_INTERN_LENGTH && this.ids.size < MAX_INTERNED) {
      id = this.native.intern(s)
      this.ids.set(s, id)
    }
    if (id === undefined) {
      vals[i] = this.texts.length
      tags[i] = TEXT
      this.texts.push(s)
    } else {
      vals[i] = id
      tags[i] = INTERNED
    }
  }
}

/** Strings sent with the call itself, never interned. */
class PlainStrings {
  constructor() {
    this.texts = []
  }

  pack(vals, tags, i, s) {
    vals[i] = this.texts.length
    tags[i] = TEXT
    this.texts.push(s)
  }
}

/** Writes one value of any JS type into slot `i`; the fast path inlines only numbers. */
function packValue(strings, vals, tags, i, v) {
  switch (typeof v) {
    case 'number':
      vals[i] = v
      tags[i] = NUMBER
      return
    case 'string':
      strings.pack(vals, tags, i, v)
      return
    case 'boolean':
      vals[i] = v ? 1 : 0
      tags[i] = BOOL
      return
    case 'undefined':
      tags[i] = MISSING
      return
    case 'bigint':
      vals[i] = Number(v)
      tags[i] = NUMBER
      return
    default:
      // null is "missing" in every data tool users come from; other objects are a type
      // mismatch the core counts (or rejects in strict mode).
      tags[i] = v === null ? MISSING : INVALID
  }
}

/**
 * Builds a packer specialised to one schema: property reads with constant names let V8 use
 * inline caches, where a loop over a names array would do a generic keyed lookup per feature.
 * It returns how many schema features were present, so the caller can spot extra keys.
 */
function compilePacker(names) {
  const lines = names.map((name, i) => {
    const key = JSON.stringify(name)
    return (
      `v = f[${key}]; if (typeof v === 'number') { vals[${i}] = v; tags[${i}] = 1; n++ } ` +
      `else if (v !== undefined) { pack(strings, vals, tags, ${i}, v); n++ } else tags[${i}] = 0`
    )
  })
  const body = `let v; let n = 0;\n${lines.join('\n')}\nreturn n`
  // The names are embedded as JSON string literals, so no name can inject code.
  const packObject = new Function('pack', 'strings', 'f', 'vals', 'tags', body)
  return (strings, f, vals, tags) => packObject(packValue, strings, f, vals, tags)
}

function toFloat64(v, what) {
  if (typeof v === 'bigint') return Float64Array.of(Number(v))
  if (v === undefined || v === null) return undefined
  if (v instanceof Float64Array) return v
  if (typeof v === 'number') return Float64Array.of(v)
  if (Array.isArray(v) || ArrayBuffer.isView(v)) return Float64Array.from(v, Number)
  throw typeError(`${what} must be a number, an array of numbers or a Float64Array`)
}

function typeError(message) {
  const err = new TypeError(message)
  err.code = 'NC_INVALID_ARGUMENT'
  return err
}

function configError(message) {
  const err = new TypeError(message)
  err.code = 'NC_INVALID_CONFIG'
  return err
}

// Option name -> expected JS type. Unknown names are rejected so a typo cannot silently fall
// back to a default.
const OPTION_TYPES = {
  project: 'string',
  model: 'string',
  version: 'string',
  environment: 'string',
  task: 'string',
  features: 'object',
  classes: 'string[]',
  sensitive: 'string[]',
  windowSeconds: 'number',
  reservoirSize: 'number',
  hashSampleRate: 'number',
  maxStringLength: 'number',
  maxPredictionRecords: 'number',
  agent: 'string',
  strict: 'boolean',
  exitFlushMs: 'number',
}

function checkOptions(options) {
  if (options === null || typeof options !== 'object') {
    throw configError('Monitor options must be an object')
  }
  for (const [key, value] of Object.entries(options)) {
    const want = OPTION_TYPES[key]
    if (want === undefined) throw configError(`unknown Monitor option ${JSON.stringify(key)}`)
    if (value === undefined) continue
    const ok =
      want === 'string[]'
        ? Array.isArray(value) && value.every((v) => typeof v === 'string')
        : typeof value === want && value !== null
    if (!ok) throw configError(`Monitor option ${key} must be ${want === 'object' ? 'an object' : `a ${want}`}`)
  }
  for (const key of ['project', 'model']) {
    if (typeof options[key] !== 'string' || options[key] === '') {
      throw configError(`Monitor option ${key} is required (a non-empty string)`)
    }
  }
  for (const key of ['reservoirSize', 'maxStringLength']) {
    const v = options[key]
    if (v !== undefined && !(Number.isInteger(v) && v >= 0 && v <= 0xffffffff)) {
      throw configError(`Monitor option ${key} must be a non-negative integer`)
    }
  }
}

function normalizeFeatures(features) {
  if (features === undefined || features === null) return undefined
  const list = Array.isArray(features)
    ? features.map((f) => (typeof f === 'string' ? { name: f, kind: 'numeric' } : f))
    : Object.entries(features).map(([name, kind]) => ({ name, kind }))
  for (const f of list) {
    if (f === null || typeof f !== 'object' || typeof f.name !== 'string' || typeof f.kind !== 'string') {
      throw configError('features must be {name: kind} or an array of {name, kind} (kind: numeric, categorical, boolean)')
    }
  }
  return list.map(({ name, kind }) => ({ name, kind }))
}

/**
 * A column as the addon reads it: typed arrays pass through untouched; plain arrays of one JS
 * type become one typed array (+ a validity bitmap for null/undefined). Returns null for an
 * array mixing types, which the caller logs row by row so each cell is judged on its own.
 */
function toNativeColumn(name, col) {
  if (col instanceof Float64Array) return { name, f64: col }
  if (col instanceof Float32Array) return { name, f32: col }
  if (col instanceof BigInt64Array) return { name, i64: col }
  if (ArrayBuffer.isView(col) && !(col instanceof DataView)) return { name, f64: Float64Array.from(col, Number) }
  if (!Array.isArray(col)) {
    throw typeError(`column ${JSON.stringify(name)} must be a typed array or an array`)
  }
  let kind = null
  let missing = 0
  for (let i = 0; i < col.length; i++) {
    const v = col[i]
    if (v === null || v === undefined) {
      missing++
      continue
    }
    const t = typeof v === 'bigint' ? 'number' : typeof v
    if (kind === null) kind = t
    else if (t !== kind) return null
  }
  if (kind !== null && kind !== 'number' && kind !== 'string' && kind !== 'boolean') return null
  const out = { name }
  // Strings cross napi once per distinct value: the column travels dictionary-encoded.
  if (kind === 'string') return dictionaryColumn(name, col)
  if (kind === 'boolean') out.bool = Uint8Array.from(col, (v) => (v ? 1 : 0))
  else out.f64 = Float64Array.from(col, (v) => (v === null || v === undefined ? 0 : Number(v)))
  if (missing > 0) {
    const validity = new Uint8Array((col.length + 7) >> 3)
    for (let i = 0; i < col.length; i++) {
      if (col[i] !== null && col[i] !== undefined) validity[i >> 3] |= 1 << (i & 7)
    }
    out.validity = validity
  }
  return out
}

function dictionaryColumn(name, col) {
  const index = new Map()
  const text = []
  const codes = new Int32Array(col.length)
  for (let i = 0; i < col.length; i++) {
    const v = col[i]
    if (typeof v !== 'string') {
      codes[i] = -1
      continue
    }
    let code = index.get(v)
    if (code === undefined) {
      code = text.length
      text.push(v)
      index.set(v, code)
    }
    codes[i] = code
  }
  return { name, text, codes }
}

function columnsOf(columns, what) {
  if (columns === null || typeof columns !== 'object' || Array.isArray(columns)) {
    throw typeError(`${what} must be an object {featureName: column}`)
  }
  return Object.keys(columns).map((name) => [name, columns[name]])
}

function optionalColumn(name, col) {
  return col === undefined || col === null ? undefined : toNativeColumn(name, col)
}

function timestampMs(t) {
  if (t instanceof Date) return t.getTime()
  return t
}

const live = new Set()
let hooksInstalled = false

function installProcessHooks() {
  if (hooksInstalled) return
  hooksInstalled = true
  // beforeExit fires when the loop is empty: a pending flush re-arms the loop, and once it
  // settles beforeExit fires again with nothing left to send, so the process then exits.
  process.on('beforeExit', () => {
    for (const m of live) {
      if (m._dirty) {
        m._dirty = false
        m.flush(m._exitFlushMs).catch(() => {})
      }
    }
  })
  // process.exit() skips beforeExit and 'exit' listeners cannot await: flush synchronously,
  // bounded, so data logged just before an explicit exit still leaves.
  process.on('exit', () => {
    for (const m of live) {
      if (m._dirty) {
        m._dirty = false
        try {
          m._native.flushSync(m._exitFlushMs)
        } catch {
          // Exiting anyway; the shipper already counted what it could not deliver.
        }
      }
    }
  })
}

class Monitor {
  /**
   * @param {import('./index').MonitorOptions} options
   */
  constructor(options) {
    checkOptions(options)
    const { features, exitFlushMs, ...rest } = options
    this._native = new native.NativeMonitor({ ...rest, features: normalizeFeatures(features) })
    this._exitFlushMs = exitFlushMs ?? DEFAULT_EXIT_FLUSH_MS
    this._strings = new Strings(this._native)
    this._names = null
    this._packer = null
    this._row = null
    this._tags = null
    this._dirty = false
    this._adoptSchema()
    live.add(this)
    installProcessHooks()
  }

  /** Feature names in the order the core indexes them; null until known or inferred. */
  get features() {
    return this._names === null ? null : this._names.slice()
  }

  _adoptSchema() {
    const names = this._native.featureNames()
    if (names.length === 0) return
    const m = names.length + META_SLOTS
    this._names = names
    this._packer = compilePacker(names)
    // One buffer the addon holds on to: values, then their tags, then class scores.
    this._row = new Float64Array(2 * m + ROW_SCORE_CAPACITY)
    this._tags = this._row.subarray(m, 2 * m)
    this._native.bindRow(this._row)
  }

  /**
   * Records one prediction: `features` is an object keyed by feature name (or an array in
   * schema order). Never throws for bad data unless `strict` was set: bad values are counted
   * as data quality by the core.
   */
  log(features, prediction, options) {
    this._dirty = true
    const strings = this._strings
    strings.texts.length = 0
    if (this._packer === null) {
      this._logNamed(features, prediction, options)
      this._adoptSchema()
      return
    }
    const row = this._row
    const tags = this._tags
    const n = this._names.length
    if (Array.isArray(features)) {
      if (features.length !== n) return this._logNamed(features, prediction, options)
      for (let i = 0; i < n; i++) packValue(strings, row, tags, i, features[i])
    } else if (features !== null && typeof features === 'object') {
      const present = this._packer(strings, features, row, tags)
      // Only rows with exactly the schema's keys take the indexed path; absent or extra keys go
      // through the named path so the core counts the schema change.
      if (present !== n || Object.keys(features).length !== n) {
        strings.texts.length = 0
        return this._logNamed(features, prediction, options)
      }
    } else {
      return this._logNamed(features, prediction, options)
    }
    if (this._packMeta(row, tags, n, prediction, options, 2 * tags.length) === null) {
      strings.texts.length = 0
      return this._logNamed(features, prediction, options)
    }
    const id = options?.id
    if (strings.texts.length === 0 && (id === undefined || id === null)) {
      this._native.logBound()
    } else {
      this._native.logBoundWith(strings.texts, id == null ? undefined : String(id))
    }
  }

  /**
   * Packs prediction, label, timestamp, latency and scores after `n` features, the scores at
   * `scoresAt`. Returns `vals`, a grown copy when `grow` and the scores need room, or null
   * when they do not fit and may not grow.
   */
  _packMeta(vals, tags, n, prediction, options, scoresAt, grow = false) {
    const strings = this._strings
    packValue(strings, vals, tags, n + META_PREDICTION, prediction)
    if (options === undefined || options === null) {
      tags[n + META_LABEL] = MISSING
      tags[n + META_TIMESTAMP] = MISSING
      tags[n + META_LATENCY] = MISSING
      tags[n + META_SCORES] = MISSING
      return vals
    }
    packValue(strings, vals, tags, n + META_LABEL, options.label)
    packValue(strings, vals, tags, n + META_TIMESTAMP, timestampMs(options.timestamp))
    packValue(strings, vals, tags, n + META_LATENCY, options.latencyMs)
    const s = options.scores
    if (s === undefined || s === null) {
      tags[n + META_SCORES] = MISSING
      return vals
    }
    const scores = typeof s === 'number' ? [s] : s
    if (!Array.isArray(scores) && !(ArrayBuffer.isView(scores) && !(scores instanceof DataView))) {
      // Not scores at all: the core counts an invalid outcome for a wrong-length score list.
      vals[n + META_SCORES] = 0
      tags[n + META_SCORES] = INVALID
      return vals
    }
    if (vals.length < scoresAt + scores.length) {
      if (!grow) return null
      const grown = new Float64Array(scoresAt + scores.length)
      grown.set(vals.subarray(0, scoresAt))
      vals = grown
    }
    for (let i = 0; i < scores.length; i++) vals[scoresAt + i] = Number(scores[i])
    vals[n + META_SCORES] = scores.length
    tags[n + META_SCORES] = NUMBER
    return vals
  }

  /** Rows whose keys differ from the schema (or any row before the schema is known). */
  _logNamed(features, prediction, options) {
    let names
    let values
    if (Array.isArray(features)) {
      names = this._names ?? features.map((_, i) => `f${i}`)
      values = features
    } else if (features !== null && typeof features === 'object') {
      names = Object.keys(features)
      values = names.map((k) => features[k])
    } else {
      names = []
      values = []
    }
    const width = Math.max(names.length, values.length)
    while (names.length < width) names.push(`f${names.length}`)
    const tags = new Uint8Array(width + META_SLOTS)
    let vals = new Float64Array(width + META_SLOTS)
    for (let i = 0; i < width; i++) packValue(this._strings, vals, tags, i, values[i])
    vals = this._packMeta(vals, tags, width, prediction, options, tags.length, true)
    const id = options?.id
    this._native.logNamed(names.slice(0, width), vals, tags, this._strings.texts, id == null ? undefined : String(id))
  }

  /**
   * Records a columnar batch: `{columns: {name: Float64Array | Float32Array | BigInt64Array |
   * other typed array | number[] | string[] | boolean[]}, predictions, labels, ids, timestamps,
   * latenciesMs, scores}` (scores row-major, one or more per row). Float64Array, Float32Array
   * and BigInt64Array columns are read in place.
   */
  logBatch(batch) {
    if (batch === null || typeof batch !== 'object') {
      throw typeError('logBatch expects {columns, predictions, ...}')
    }
    this._dirty = true
    const entries = columnsOf(batch.columns, 'batch.columns')
    const columns = entries.map(([name, col]) => toNativeColumn(name, col))
    const predictions = optionalColumn('predictions', batch.predictions)
    const labels = optionalColumn('labels', batch.labels)
    if (columns.includes(null) || predictions === null || labels === null) {
      this._logRows(entries, batch)
    } else {
      this._native.logBatch({
        columns,
        predictions,
        labels,
        ids: batch.ids == null ? undefined : Array.from(batch.ids, String),
        timestampsMs: toFloat64(batch.timestamps == null ? undefined : Array.from(batch.timestamps, timestampMs), 'timestamps'),
        latenciesMs: toFloat64(batch.latenciesMs, 'latenciesMs'),
        scores: toFloat64(batch.scores, 'scores'),
      })
    }
    if (this._packer === null) this._adoptSchema()
  }

  /** A batch whose arrays mix JS types: each row goes through `log` so every cell is judged. */
  _logRows(entries, batch) {
    const n = entries.length > 0 ? entries[0][1].length : (batch.predictions?.length ?? 0)
    const perRow = batch.scores != null && n > 0 ? batch.scores.length / n : 0
    for (let i = 0; i < n; i++) {
      const row = {}
      for (const [name, col] of entries) row[name] = col[i]
      this.log(row, batch.predictions?.[i], {
        label: batch.labels?.[i],
        id: batch.ids?.[i] == null ? undefined : String(batch.ids[i]),
        timestamp: batch.timestamps?.[i],
        latencyMs: batch.latenciesMs?.[i],
        scores: perRow > 0 ? Array.prototype.slice.call(batch.scores, i * perRow, (i + 1) * perRow) : undefined,
      })
    }
  }

  /** Attaches ground truth to earlier predictions by id (labels may arrive much later). */
  logLabels(ids, labels) {
    const isList = (v) => Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView))
    if (!isList(ids) || !isList(labels)) {
      throw typeError('logLabels expects (ids: array, labels: array)')
    }
    this._dirty = true
    const n = labels.length
    const vals = new Float64Array(n)
    const tags = new Uint8Array(n)
    // Labels are sent once each: interning them would only fill the table.
    const strings = new PlainStrings()
    for (let i = 0; i < n; i++) packValue(strings, vals, tags, i, labels[i])
    this._native.logLabels(Array.from(ids, String), vals, tags, strings.texts)
  }

  /** Sets the training-data reference profile from columns shaped like `logBatch` columns. */
  setReference(columns) {
    const native = columnsOf(columns, 'reference columns').map(([name, col]) => {
      const c = toNativeColumn(name, col)
      if (c === null) throw typeError(`reference column ${JSON.stringify(name)} mixes value types`)
      return c
    })
    this._dirty = true
    this._native.setReference(native)
    if (this._packer === null) this._adoptSchema()
  }

  /** Records the latency of one prediction made outside `log` (milliseconds). */
  recordLatency(ms) {
    this._dirty = true
    this._native.recordLatency(ms)
  }

  /**
   * Records a robustness probe's result (the model called on perturbed rows) into the window
   * open now; it reaches the collector with that window and is scored there.
   */
  recordRobustness(report) {
    if (report === null || typeof report !== 'object') {
      throw typeError('recordRobustness expects a report object')
    }
    const sensitivity = report.featureSensitivity ?? {}
    if (sensitivity === null || typeof sensitivity !== 'object' || Array.isArray(sensitivity)) {
      throw typeError('featureSensitivity must be an object of feature name to number')
    }
    for (const key of ['stability', 'rows', 'repeats', 'noise', 'dropout']) {
      if (typeof report[key] !== 'number') throw typeError(`report.${key} must be a number`)
    }
    for (const [name, value] of Object.entries(sensitivity)) {
      if (typeof value !== 'number') throw typeError(`featureSensitivity[${JSON.stringify(name)}] must be a number`)
    }
    this._dirty = true
    this._native.recordRobustness({
      stability: report.stability,
      rows: report.rows,
      repeats: report.repeats,
      noise: report.noise,
      dropout: report.dropout,
      discrete: Boolean(report.discrete),
      featureSensitivity: sensitivity,
    })
  }

  /** Counts one failed prediction. */
  recordError() {
    this._dirty = true
    this._native.recordError()
  }

  /**
   * Wraps a predict function (sync or async): each call is timed and logged, errors are
   * counted and rethrown. `options.features(args)` and `options.prediction(result)` pick the
   * row and the prediction (defaults: the first argument, the return value).
   */
  wrap(fn, options = {}) {
    if (typeof fn !== 'function') throw typeError('wrap expects a function')
    const pickFeatures = options.features ?? ((args) => args[0])
    const pickPrediction = options.prediction ?? ((result) => result)
    const pickId = options.id
    const monitor = this
    const record = (args, result, started) => {
      const latencyMs = performance.now() - started
      monitor.log(pickFeatures(args), pickPrediction(result), {
        latencyMs,
        id: pickId === undefined ? undefined : pickId(args, result),
      })
    }
    const fail = (started) => {
      monitor._native.recordLatency(performance.now() - started)
      monitor.recordError()
    }
    const wrapped = function (...args) {
      const started = performance.now()
      let out
      try {
        out = fn.apply(this, args)
      } catch (err) {
        fail(started)
        throw err
      }
      if (out !== null && typeof out === 'object' && typeof out.then === 'function') {
        return out.then(
          (result) => {
            record(args, result, started)
            return result
          },
          (err) => {
            fail(started)
            throw err
          },
        )
      }
      record(args, out, started)
      return out
    }
    Object.defineProperty(wrapped, 'name', { value: fn.name })
    return wrapped
  }

  /** Ships everything recorded so far; resolves true when all of it was delivered in time. */
  flush(timeoutMs = 5000) {
    return this._native.flush(timeoutMs)
  }

  /** Flushes, then stops shipping; later calls to `log` are ignored (or throw NC_SHUT_DOWN if strict). */
  shutdown(timeoutMs = 5000) {
    live.delete(this)
    this._dirty = false
    return this._native.shutdown(timeoutMs)
  }

  /** Delivery accounting: `sent === delivered + dropped + queued` always holds. */
  stats() {
    return this._native.stats()
  }

  /**
   * With `agent: 'memory'` (no agent: notebooks, tests): closes the open windows and returns
   * their summaries (rows, per-feature data-quality counters, moments, latency, errors).
   */
  takeWindows() {
    return this._native.takeWindows()
  }
}

module.exports = { Monitor, nativeVersion: native.nativeVersion }
