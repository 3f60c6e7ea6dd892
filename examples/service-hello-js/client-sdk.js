// The same calls through the kar-sdk npm package (h2c to the sidecar):
// call, tell and asyncCall.
const { call, tell, asyncCall, sys } = require('kar-sdk')

async function main () {
  const r1 = await call('greeter', 'helloJson', { name: 'SDK Call' })
  console.log('call:', r1.greetings)
  const r2 = await tell('greeter', 'helloJson', { name: 'SDK Tell' })
  console.log('tell:', r2)
  const promise = await asyncCall('greeter', 'helloJson', { name: 'SDK Async' })
  const r3 = await promise()
  console.log('asyncCall:', r3.greetings)
  // Ends this component's sidecar and closes the SDK's HTTP/2 session,
  // so the process exits.
  await sys.shutdown()
}

main().catch(err => { console.error(err); process.exit(1) })
