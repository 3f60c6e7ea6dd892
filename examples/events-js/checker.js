// Subscribes a Recorder actor to the topic EV_TOPIC (numbers), makes sure
// the subscription is live, then waits until the Recorder has received the
// EV_COUNT (20) numbered events of publisher.js and checks that each came
// exactly once, in order. Prints SUCCESS or FAILURE and exits 0 or 1.
//
//   kar run -app events node checker.js
//   (when it prints "subscription is live", run publisher.js)
//
// EV_RECORDER names the Recorder (default: a fresh one per run);
// EV_TIMEOUT is how long to wait, in seconds (60); EV_CLOUDEVENTS (0) is how
// many CloudEvents (of ingress.js) to wait for as well.
const { actor, events } = require('kar-sdk')

const topic = process.env.EV_TOPIC || 'numbers'
const count = Number(process.env.EV_COUNT || 20)
const timeoutMs = 1000 * Number(process.env.EV_TIMEOUT || 60)
const cloudEvents = Number(process.env.EV_CLOUDEVENTS || 0)
const recorder = actor.proxy('Recorder', process.env.EV_RECORDER || `recorder-${Date.now()}-${process.pid}`)

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function finish (problem) {
  if (problem) {
    console.log(`FAILURE: ${problem}`)
    process.exit(1)
  }
  const ce = cloudEvents > 0 ? ` and ${cloudEvents} CloudEvent(s)` : ''
  console.log(`SUCCESS: ${count} events arrived on ${topic} in order${ce}`)
  process.exit(0)
}

// until polls the Recorder's status until ok(status) holds; between polls
// it runs between() (if any). It gives up at the deadline.
async function until (deadline, ok, between) {
  for (;;) {
    const status = await actor.rootCall(recorder, 'status')
    if (ok(status)) return status
    if (Date.now() > deadline) return null
    if (between) await between()
    await sleep(100)
  }
}

async function main () {
  const deadline = Date.now() + timeoutMs
  // One partition keeps the events in the order they were published.
  await events.createTopic(topic, { numPartitions: 1 }).catch(err => console.log(`createTopic ${topic}: ${err.message}`))
  await actor.rootCall(recorder, 'subscribe', topic)

  // A subscription starts with the events published after it is live. Make
  // sure it is before the numbered events come: publish probes until one
  // arrives.
  let probe = 0
  const live = await until(deadline, s => s.probes > 0, () => events.publish(topic, { probe: probe++ }))
  if (!live) return finish(`no probe event arrived within ${timeoutMs / 1000}s: the subscription to ${topic} does not deliver`)
  console.log(`subscription is live (${probe} probe(s)); waiting for ${count} events on ${topic}`)

  const done = await until(deadline, s => s.seqs.length >= count && s.cloudEvents.length >= cloudEvents)
  const status = done || await actor.rootCall(recorder, 'status')
  await actor.rootCall(recorder, 'unsubscribe')
  const want = Array.from({ length: count }, (_, i) => i)
  if (JSON.stringify(status.seqs) !== JSON.stringify(want)) {
    return finish(`received ${JSON.stringify(status.seqs)}, want ${JSON.stringify(want)}`)
  }
  if (status.cloudEvents.length !== cloudEvents) {
    return finish(`received ${status.cloudEvents.length} CloudEvent(s), want ${cloudEvents}: ${JSON.stringify(status.cloudEvents)}`)
  }
  for (const e of status.cloudEvents) {
    if (e.type !== 'com.example.greeting' || e.source !== 'urn:kar:example:ingress' || !e.data || !e.data.greeting) {
      return finish(`CloudEvent ${JSON.stringify(e)} is not what ingress.js sent`)
    }
    console.log(`CloudEvent ${e.id}: ${e.data.greeting}`)
  }
  finish()
}

main().catch(err => finish(`error: ${err.stack || err}`))
