// The drain test's component: Slow.work runs for a while and logs its
// start and end; on SIGTERM it logs how many calls it was running.
const express = require('express')
const { sys } = require('kar-sdk')

let running = 0

class Slow {
  async work (ms, tag) {
    running++
    console.log(`start ${tag}`)
    await new Promise(resolve => setTimeout(resolve, ms))
    console.log(`end ${tag}`)
    running--
    return tag
  }
}

process.on('SIGTERM', () => {
  console.log(`sigterm running=${running}`)
  process.exit(0)
})

const app = express()
app.use(sys.actorRuntime({ Slow }))
sys.h2c(app).listen(process.env.KAR_APP_PORT, '127.0.0.1', () => console.log('drain ready'))
