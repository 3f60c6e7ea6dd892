// Sends one CloudEvent, in binary mode, to kar's CloudEvents ingress
// POST /kar/v1/event/{topic}/cloudevents: the route a Knative Eventing
// source or trigger delivers to. Attributes travel as ce-* headers, the data
// as the body. kar answers 202 once the event is in the topic; subscribers
// receive it like any other event (by default as a structured CloudEvent:
// {specversion, id, source, type, datacontenttype, data}).
//
//   kar run -app events node ingress.js
//
// This route is kar's extension; IBM KAR 1.3.10 has no CloudEvents ingress.
const http = require('http')

const topic = process.env.EV_TOPIC || 'numbers'
const id = process.env.EV_CE_ID || `greeting-${Date.now()}`
const body = JSON.stringify({ greeting: 'Hello from outside the mesh!' })

const req = http.request({
  host: '127.0.0.1',
  port: process.env.KAR_RUNTIME_PORT,
  method: 'POST',
  path: `/kar/v1/event/${encodeURIComponent(topic)}/cloudevents`,
  headers: {
    'ce-specversion': '1.0',
    'ce-id': id,
    'ce-source': 'urn:kar:example:ingress',
    'ce-type': 'com.example.greeting',
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body)
  }
}, res => {
  let text = ''
  res.setEncoding('utf8')
  res.on('data', s => { text += s })
  res.on('end', () => {
    if (res.statusCode === 202) {
      console.log(`CloudEvent ${id} accepted on ${topic}`)
      process.exit(0)
    }
    console.log(`CloudEvent ${id} refused: ${res.statusCode} ${text}`)
    process.exit(1)
  })
})
req.on('error', err => { console.error(`ingress: ${err.message}`); process.exit(1) })
req.end(body)
