// A component whose handlers for /poison drop the connection without an
// answer (as a crash in a request handler does), counting each delivery.
// It serves the service "svc" and the actor type "Poison" with plain
// node:http, no SDK: the test looks at the exact deliveries.
const http = require('http')

const counts = {}
function count (key) { counts[key] = (counts[key] || 0) + 1 }

http.createServer((req, res) => {
  const path = req.url.split('?')[0]
  let body = ''
  req.on('data', c => { body += c })
  req.on('end', () => {
    if (path === '/counts') {
      res.writeHead(200, { 'Content-Type': 'application/json' })
      return res.end(JSON.stringify(counts))
    }
    count(req.method + ' ' + path)
    if (path.endsWith('/poison')) {
      console.log('poison delivered: ' + path)
      return req.socket.destroy()
    }
    if (req.method === 'GET' && path.startsWith('/kar/impl/v1/actor/')) {
      res.writeHead(200)
      return res.end()
    }
    if (path.startsWith('/kar/impl/v1/actor/')) {
      res.writeHead(200, { 'Content-Type': 'application/kar+json' })
      return res.end(JSON.stringify({ value: 'fine' }))
    }
    res.writeHead(200, { 'Content-Type': 'text/plain' })
    res.end('fine')
  })
}).listen(process.env.KAR_APP_PORT, '127.0.0.1', () => console.log('poison ready'))
