// Actor type TC for the tail-call tests (kar-sdk 1.3.10's actor runtime).
const express = require('express')
const { actor, sys, tailCall } = require('kar-sdk')

class TC {
  echo (...args) { return { args, id: this.kar.id } }
  nothing () {}

  // Actor → service, with the payload as kar-sdk expects it: a JSON string.
  toService (body) { return tailCall('tcsvc', 'echo', JSON.stringify(body)) }
  // The same with a JSON value as payload (KAR rejects it; kar sends the value).
  toServiceValue (body) { return tailCall('tcsvc', 'echo', body) }
  toServiceNoPayload () { return tailCall('tcsvc', 'echo') }
  toServiceNone () { return tailCall('tcsvc', 'none', '{}') }
  toServiceText () { return tailCall('tcsvc', 'text', '{}') }
  toServiceFail () { return tailCall('tcsvc', 'fail', '{}') }
  // Actor → service → actor.
  toServiceToActor (body) { return tailCall('tcsvc', 'toActor', JSON.stringify(body)) }

  // Actor → actor.
  toActor (x) { return actor.tailCall(actor.proxy('TC', 'other'), 'echo', x) }
  toActorNone () { return actor.tailCall(actor.proxy('TC', 'other'), 'nothing') }
  toSelf (x) { return actor.tailCall(this, 'echo', x) }
}

const app = express()
app.use(sys.actorRuntime({ TC }))
sys.h2c(app).listen(process.env.KAR_APP_PORT, '127.0.0.1', () => console.log('tc actors ready'))
