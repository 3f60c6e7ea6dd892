// A service whose /crash handler takes its host down before any answer:
// it kills its sidecar (kar run, its parent) with SIGKILL and exits, as a
// request that brings down a whole Pod does. Other paths answer "fine".
const fs = require('fs')
const http = require('http')

http.createServer((req, res) => {
  if (req.url.startsWith('/crash')) {
    // Written to a file before the sidecar dies: its relay of our output
    // dies with it.
    fs.appendFileSync(process.env.CRASH_LOG, 'crashing on ' + req.url + '\n')
    process.kill(process.ppid, 'SIGKILL')
    process.exit(3)
  }
  res.writeHead(200, { 'Content-Type': 'text/plain' })
  res.end('fine')
}).listen(process.env.KAR_APP_PORT, '127.0.0.1', () => console.log('crash ready'))
