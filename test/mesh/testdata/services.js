// A service that answers with kar-sdk tail calls (service → service).
const express = require('express')
const { tailCall } = require('kar-sdk')

const app = express()
app.use(express.json({ type: '*/*' }))
app.post('/hello', (req, res) => res.json({ greetings: `Hello ${req.body.name}!`, pid: process.pid }))
app.post('/start', (req, res) => res.type('application/kar+json').send(tailCall('tails', 'hello', { name: req.body.name + ' via tail call' })))
app.listen(process.env.KAR_APP_PORT, '127.0.0.1', () => console.log('services ready'))
