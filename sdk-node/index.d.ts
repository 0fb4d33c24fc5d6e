// Types of the public `neurocloak` API (index.js). The native addon's own types are generated
// by napi-rs into native.d.ts; this file re-uses its result shapes.

import type { Stats, WindowSummary, ColumnSummary, RobustnessReport } from './native'

export type { Stats, WindowSummary, ColumnSummary, RobustnessReport }

export type FeatureKind = 'numeric' | 'categorical' | 'boolean'
export type Task = 'binary' | 'multiclass' | 'regression'

export interface MonitorOptions {
  project: string
  model: string
  version?: string
  /** Default `production`. */
  environment?: string
  /** Default `binary`. */
  task?: Task
  /** `{name: kind}` in schema order, or `[{name, kind}]`; inferred from the first row when absent. */
  features?: Record<string, FeatureKind> | Array<{ name: string; kind: FeatureKind } | string>
  /** Class names in index order; a binary task defaults to `['0', '1']`. */
  classes?: string[]
  /** Sensitive attributes (feature names) profiled per group for fairness; at most 8. */
  sensitive?: string[]
  /** Tumbling window length, aligned to wall-clock multiples; default 60. */
  windowSeconds?: number
  /** Raw rows sampled per window; default 256. */
  reservoirSize?: number
  /** Share of prediction ids sampled by hash (0–1); default 0.01. */
  hashSampleRate?: number
  /** Longer strings are truncated (and counted); default 1024 bytes. */
  maxStringLength?: number
  /**
   * Prediction records (id, time, prediction, scores, groups) kept per window in this process
   * for joining delayed labels; default 20000, an integer from 0 to 100000. Rows with an id
   * beyond it are counted in `predictionsDropped` and their labels cannot be joined.
   */
  maxPredictionRecords?: number
  /**
   * `unix:///path.sock`, `http://127.0.0.1:7071`, or `memory` (no agent: windows stay in
   * memory for `takeWindows`). Default: `NEUROCLOAK_AGENT`, else `unix:///tmp/neurocloak/agent.sock`.
   */
  agent?: string
  /** Throw `NC_INVALID_DATA` for bad data instead of counting it. */
  strict?: boolean
  /** Longest wait for delivery when the process exits; default 2000. */
  exitFlushMs?: number
}

/** A value of one cell; anything else is counted as a type mismatch. */
export type Cell = number | string | boolean | bigint | null | undefined

export interface LogOptions {
  /** Ground truth, when already known. */
  label?: Cell
  /** Prediction id: joins delayed labels (`logLabels`) and drives hash sampling. */
  id?: string | number
  /**
   * Event time (ms since the epoch or a Date); default now. It does not choose the window (the
   * one open when `log` is called does); it is stored in the row's sample and prediction record.
   */
  timestamp?: number | Date
  /** Latency of this prediction in milliseconds. */
  latencyMs?: number
  /** One probability per class, or for a binary task P(class 1). */
  scores?: number | ArrayLike<number>
}

export type Column =
  | Float64Array
  | Float32Array
  | BigInt64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | ArrayLike<Cell>

export interface Batch {
  /** Feature columns, all of the same length. Float64Array, Float32Array and BigInt64Array are read in place. */
  columns: Record<string, Column>
  predictions?: Column
  labels?: Column
  ids?: ArrayLike<string | number>
  timestamps?: ArrayLike<number | Date>
  latenciesMs?: ArrayLike<number>
  /** Row-major class probabilities, the same number per row. */
  scores?: ArrayLike<number>
}

export interface WrapOptions<A extends unknown[], R> {
  /** The row to log; default the first argument. */
  features?: (args: A) => Record<string, Cell> | Cell[]
  /** The prediction to log; default the return value. */
  prediction?: (result: R) => Cell
  /** The prediction id; default none. */
  id?: (args: A, result: R) => string | number | undefined
}

/** Stable `err.code` values of errors thrown by the SDK. */
export type ErrorCode =
  | 'NC_INVALID_ARGUMENT'
  | 'NC_INVALID_CONFIG'
  | 'NC_INVALID_DATA'
  | 'NC_INVALID_BATCH'
  | 'NC_INVALID_PROFILE'
  | 'NC_INCOMPATIBLE'
  | 'NC_SHUT_DOWN'
  | 'NC_TIMEOUT'
  | 'NC_SHIP'

export declare class Monitor {
  constructor(options: MonitorOptions)
  /** Feature names in schema order; null until configured or inferred. */
  readonly features: string[] | null
  /** Records one prediction. Throws for bad data only in strict mode. */
  log(features: Record<string, Cell> | Cell[], prediction: Cell, options?: LogOptions): void
  /** Records a columnar batch. */
  logBatch(batch: Batch): void
  /** Sends ground truth for earlier predictions, by id. */
  logLabels(ids: ArrayLike<string | number>, labels: ArrayLike<Cell>): void
  /** Builds and ships the reference profile (training data); later windows count exact bins at its deciles. */
  setReference(columns: Record<string, Column>): void
  /** Records one latency in milliseconds (finite, >= 0). */
  recordLatency(ms: number): void
  /**
   * Records a robustness probe's result into the window open now (numbers finite and in range:
   * stability, dropout, sensitivities in [0, 1]; noise >= 0; rows, repeats integers >= 1).
   * Out-of-range values throw NC_INVALID_PROFILE, wrong types NC_INVALID_ARGUMENT.
   */
  recordRobustness(report: RobustnessReport): void
  /** Counts one failed prediction. */
  recordError(): void
  /** Wraps a sync or async predict function: times, logs, counts failures, rethrows them. */
  wrap<A extends unknown[], R>(fn: (...args: A) => R, options?: WrapOptions<A, Awaited<R>>): (...args: A) => R
  /** Closes open windows and waits for delivery; resolves false on timeout (default 5000 ms). */
  flush(timeoutMs?: number): Promise<boolean>
  /** Flushes, then stops; later `log` calls are ignored (strict: throw NC_SHUT_DOWN). */
  shutdown(timeoutMs?: number): Promise<boolean>
  /** Delivery counters: `sent === delivered + dropped + queued`. */
  stats(): Stats
  /** With `agent: 'memory'`: closes open windows and returns their summaries. */
  takeWindows(): WindowSummary[]
}

export declare function nativeVersion(): string
