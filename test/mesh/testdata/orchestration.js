// Retry orchestration's test component: Orch.run calls Worker.slow and
// waits for it; the test kills Orch's host while Worker.slow runs.
const express = require('express')
const { actor, sys } = require('kar-sdk')

class Orch {
  async run (ms) {
    console.log(`orch run ${this.kar.id}`)
    return actor.call(this, actor.proxy('Worker', 'w1'), 'slow', ms)
  }

  // runLater waits (the test cuts this host from Kafka meanwhile), then
  // calls Worker.slow: the call cannot be sent, and the test kills the
  // host while its sidecar tries.
  async runLater (pause, ms) {
    console.log(`orch runLater ${this.kar.id}`)
    await new Promise(resolve => setTimeout(resolve, pause))
    console.log(`orch calls ${this.kar.id}`)
    return actor.call(this, actor.proxy('Worker', 'w1'), 'slow', ms)
  }
}

class Worker {
  async slow (ms) {
    console.log(`worker start ${this.kar.id}`)
    await new Promise(resolve => setTimeout(resolve, ms))
    console.log(`worker end ${this.kar.id}`)
    return 'done'
  }
}

const app = express()
app.use(sys.actorRuntime({ Orch, Worker }))
sys.h2c(app).listen(process.env.KAR_APP_PORT, '127.0.0.1', () => console.log('orchestration ready'))
