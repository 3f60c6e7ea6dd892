// Calls every tail-call combination the way a kar-sdk 1.3.10 user does and
// prints one line per result: RESULT <case> <caller> <JSON>.
const { actor, call, asyncCall, tell, sys } = require('kar-sdk')

const show = v => v === undefined ? 'undefined' : JSON.stringify(v)
const print = (name, how, v) => console.log(`RESULT ${name} ${how} ${v}`)

async function run (name, how, f) {
  try {
    print(name, how, show(await f()))
  } catch (err) {
    print(name, how, 'error ' + JSON.stringify(err.message))
  }
}

async function main () {
  const a = actor.proxy('TC', 'caller')
  const actorCases = [
    ['toService', [{ a: 1 }]], ['toServiceValue', [{ a: 2 }]], ['toServiceNoPayload', []],
    ['toServiceNone', []], ['toServiceText', []], ['toServiceFail', []],
    ['toServiceToActor', [{ a: 3 }]], ['toActor', [4]], ['toActorNone', []], ['toSelf', [5]]
  ]
  for (const [m, args] of actorCases) {
    await run(m, 'sync', () => actor.call(a, m, ...args))
    await run(m, 'promise', async () => (await actor.asyncCall(a, m, ...args))())
  }
  // Async (tell): the service shows what it got in its own output.
  await run('toService', 'tell', () => actor.tell(a, 'toService', { told: 'actor' }))

  const serviceCases = [['toService', { b: 1 }], ['toActor', { b: 2 }], ['looksLikeTail', {}]]
  for (const [p, body] of serviceCases) {
    await run('svc-' + p, 'sync', () => call('tcsvc', p, body))
    await run('svc-' + p, 'promise', async () => (await asyncCall('tcsvc', p, body))())
  }
  await run('svc-toService', 'tell', () => tell('tcsvc', 'toService', { told: 'service' }))
  console.log('client done')
  await sys.shutdown()
}

main().catch(err => { console.error(err); process.exit(1) })
