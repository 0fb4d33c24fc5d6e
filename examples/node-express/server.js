'use strict'
// An Express service that serves a churn model and monitors it with NeuroCloak:
// POST /predict   {features: {...}, id?}  -> {id, churn, probability}
// POST /feedback  {id, churned}           -> records the delayed label
// GET  /healthz, GET /monitor/stats
// The model is a fixed logistic regression so the example needs no ML dependency.

const crypto = require('node:crypto')
const express = require('express')
const { Monitor } = require('neurocloak')

const FEATURES = {
  tenure_months: 'numeric',
  monthly_spend: 'numeric',
  support_tickets: 'numeric',
  plan: 'categorical',
  region: 'categorical',
  autopay: 'boolean',
}

const WEIGHTS = { tenure_months: -0.05, monthly_spend: 0.02, support_tickets: 0.4, autopay: -0.8 }
const PLAN_BIAS = { basic: 0.3, plus: 0, pro: -0.4 }

function predictChurn(row) {
  let z = -0.5 + (PLAN_BIAS[row.plan] ?? 0)
  for (const [name, w] of Object.entries(WEIGHTS)) z += w * Number(row[name] ?? 0)
  const probability = 1 / (1 + Math.exp(-z))
  return { churn: probability >= 0.5, probability }
}

// `agent` undefined: the SDK reads NEUROCLOAK_AGENT, else the default Unix socket.
function createApp({ agent, windowSeconds = 60 } = {}) {
  const monitor = new Monitor({
    project: 'example',
    model: 'churn',
    version: '2024-06',
    environment: process.env.NODE_ENV ?? 'development',
    task: 'binary',
    classes: ['stay', 'churn'],
    features: FEATURES,
    sensitive: ['region'],
    windowSeconds,
    agent,
  })

  // The wrapper times each call, counts failures and logs (row, prediction, scores, id).
  const predict = monitor.wrap(async (row, id) => predictChurn(row), {
    features: ([row]) => row,
    prediction: (out) => out.churn,
    id: ([, id]) => id,
  })

  const app = express()
  app.use(express.json({ limit: '100kb' }))

  app.post('/predict', async (req, res) => {
    const row = req.body?.features
    if (row === null || typeof row !== 'object' || Array.isArray(row)) {
      monitor.recordError()
      return res.status(400).json({ error: 'body must be {"features": {...}}' })
    }
    const id = typeof req.body.id === 'string' ? req.body.id : crypto.randomUUID()
    const out = await predict(row, id)
    res.json({ id, ...out })
  })

  app.post('/feedback', (req, res) => {
    const { id, churned } = req.body ?? {}
    if (typeof id !== 'string' || typeof churned !== 'boolean') {
      return res.status(400).json({ error: 'body must be {"id": string, "churned": boolean}' })
    }
    monitor.logLabels([id], [churned])
    res.status(204).end()
  })

  app.get('/healthz', (req, res) => res.json({ ok: true }))
  app.get('/monitor/stats', (req, res) => res.json(monitor.stats()))

  return { app, monitor }
}

if (require.main === module) {
  const port = Number(process.env.PORT ?? 3000)
  const { app, monitor } = createApp()
  const server = app.listen(port, () => console.log(`listening on :${port}`))
  const stop = () => {
    server.close(async () => {
      await monitor.shutdown(5000)
      process.exit(0)
    })
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

module.exports = { createApp, predictChurn }
