// Service "tcsvc" for the tail-call tests (kar-sdk 1.3.10): it answers
// what it received, and makes tail calls of its own.
const express = require('express')
const { tailCall, actor } = require('kar-sdk')

const app = express()
app.use(express.json({ type: '*/*' }))
// What the service got: the body as JSON and its Content-Type.
app.post('/echo', (req, res) => {
  console.log(`echo ${JSON.stringify(req.body)}`)
  res.json({ got: req.body, type: req.get('content-type') })
})
app.post('/none', (req, res) => res.status(204).end())
app.post('/text', (req, res) => res.type('text/plain').send('plain words'))
app.post('/fail', (req, res) => res.status(404).type('text/plain').send('no such thing'))
// Service → service and service → actor tail calls (application/kar+json).
app.post('/toService', (req, res) => res.type('application/kar+json').send(tailCall('tcsvc', 'echo', JSON.stringify(req.body))))
app.post('/toActor', (req, res) => res.type('application/kar+json').send(actor.tailCall(actor.proxy('TC', 'svc-target'), 'echo', req.body)))
// A plain JSON answer that looks like a tail call is data, as with KAR.
app.post('/looksLikeTail', (req, res) => res.json(tailCall('tcsvc', 'echo', '{"sneaky":true}')))
app.listen(process.env.KAR_APP_PORT, '127.0.0.1', () => console.log('tcsvc ready'))
