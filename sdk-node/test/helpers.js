'use strict'
// Shared fixtures for the node --test suites.

const net = require('node:net')
const { Monitor } = require('..')

// A loopback port with nothing listening: shipping fails fast and is counted, never awaited.
async function deadEndpoint() {
  const server = net.createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return `http://127.0.0.1:${port}`
}

const FEATURES = { age: 'numeric', income: 'numeric', country: 'categorical', member: 'boolean' }

/** A monitor that keeps its windows in memory, so tests can read what the core counted. */
function memoryMonitor(overrides = {}) {
  return new Monitor({
    project: 'test',
    model: 'churn',
    version: '1',
    environment: 'test',
    task: 'binary',
    classes: ['stay', 'churn'],
    features: FEATURES,
    agent: 'memory',
    windowSeconds: 3600,
    ...overrides,
  })
}

/** The single window a test recorded into (windows are an hour long in these tests). */
function onlyWindow(m) {
  const windows = m.takeWindows()
  if (windows.length !== 1) throw new Error(`expected one window, got ${windows.length}`)
  return windows[0]
}

module.exports = { deadEndpoint, memoryMonitor, onlyWindow, FEATURES, Monitor }
