// Actor component for the bad-input tests: kar-sdk's actor routes
// (express) answer with the type and id they decoded from the path.
const express = require('express')
const { sys } = require('kar-sdk')

class Echo {
  whoami () { return { type: this.kar.type, id: this.kar.id } }
}

const app = express()
app.use(sys.actorRuntime({ Echo }))
sys.h2c(app).listen(process.env.KAR_APP_PORT, '127.0.0.1', () => console.log('names ready'))
