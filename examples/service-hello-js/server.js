// The greeter service: plain express, no kar library needed.
const express = require('express')

const app = express()
app.use(express.text({ type: 'text/plain' }))
app.use(express.json({ type: ['application/json', 'application/kar+json'] }))

app.post('/helloText', (req, res) => {
  const msg = `Hello ${req.body}!`
  console.log(msg)
  res.type('text/plain').send(msg)
})

app.post('/helloJson', (req, res) => {
  const msg = `Hello ${req.body.name}!`
  console.log(msg)
  res.json({ greetings: msg })
})

// Echo what the mesh passed through: method, path, query, headers, body.
app.all('/echo/*', express.raw({ type: '*/*' }), (req, res) => {
  res.status(Number(req.query.status || 200)).set('X-Echo', 'yes').json({
    method: req.method,
    path: req.path,
    query: req.query,
    header: req.get('X-Test') || null,
    body: typeof req.body === 'string' ? req.body : Buffer.isBuffer(req.body) ? req.body.toString() : null
  })
})

// Slow on purpose, for fault tests: answers after ?ms= milliseconds.
app.post('/slow', (req, res) => {
  setTimeout(() => res.json({ pid: process.pid, body: req.body }), Number(req.query.ms || 1000))
})

const port = process.env.KAR_APP_PORT || 8080
app.listen(port, '127.0.0.1', () => console.log(`greeter listening on ${port}`))
