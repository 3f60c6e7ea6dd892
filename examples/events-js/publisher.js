// Publishes EV_COUNT (20) numbered events to the topic EV_TOPIC (numbers),
// one after the other.
//
//   kar run -app events node publisher.js
const { events } = require('kar-sdk')

const topic = process.env.EV_TOPIC || 'numbers'
const count = Number(process.env.EV_COUNT || 20)

async function main () {
  for (let seq = 0; seq < count; seq++) {
    // The publish is accepted once it returns: kar will deliver it.
    await events.publish(topic, { seq, of: count, text: `event number ${seq}` })
  }
  console.log(`published ${count} events to ${topic}`)
  process.exit(0)
}

main().catch(err => { console.error(`publisher: ${err.stack || err}`); process.exit(1) })
