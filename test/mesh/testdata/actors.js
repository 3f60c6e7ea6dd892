// Actor component for the runtime's tests, written against the npm kar-sdk
// as a KAR user writes one. NODE_PATH points at an example's node_modules.
const express = require('express')
const { actor, sys, tailCall } = require('kar-sdk')

class Counter {
  async activate () {
    this.count = (await actor.state.get(this, 'count')) || 0
    console.log(`activate ${this.kar.id}`)
  }

  deactivate () { console.log(`deactivate ${this.kar.id}`) }

  async incr (n = 1) {
    this.count += n
    await actor.state.set(this, 'count', this.count)
    return this.count
  }

  get () { return this.count }
  pid () { return process.pid }
  none () { }
  fail () { throw new Error('boom') }

  // Reads, waits, writes: two at once on one instance would lose an update.
  async slow (ms) {
    const c = this.count
    await new Promise(resolve => setTimeout(resolve, ms))
    this.count = c + 1
    await actor.state.set(this, 'count', this.count)
    return this.count
  }

  // Re-entrancy: calls itself through the sidecar with its session.
  async selfCall (depth) {
    if (depth <= 0) return 'bottom'
    return actor.call(this, this, 'selfCall', depth - 1)
  }

  // Re-entrancy through another instance that calls back.
  ping (other) { return actor.call(this, actor.proxy('Counter', other), 'pong', this.kar.id) }
  pong (from) { return actor.call(this, actor.proxy('Counter', from), 'get') }

  // Tail calls: a chain of steps on this instance, and a hop to another.
  chain (n) { return actor.tailCall(this, 'chainStep', n) }
  async chainStep (n) {
    await this.incr(1)
    if (n <= 1) return this.count
    return actor.tailCall(this, 'chainStep', n - 1)
  }

  toService (name) { return tailCall('tails', 'hello', { name }) }

  hop (other, n) { return actor.tailCall(actor.proxy('Counter', other), 'incr', n) }

  // A tail-call chain over instances: each step counts its visit, waits,
  // and hands over to the next instance.
  async relay (ids, i, ms) {
    console.log(`relay start ${i} ${this.kar.id}`)
    const visits = ((await actor.state.get(this, 'visits')) || 0) + 1
    await actor.state.set(this, 'visits', visits)
    await new Promise(resolve => setTimeout(resolve, ms))
    if (i + 1 >= ids.length) return ids.length
    return actor.tailCall(actor.proxy('Counter', ids[i + 1]), 'relay', ids, i + 1, ms)
  }

  // Counts the deliveries of event n (TestSubscriptionsSurviveAKilledRunner).
  async seen (n) {
    const key = `e${n}`
    await actor.state.set(this, key, ((await actor.state.get(this, key)) || 0) + 1)
  }

  // A chain on this instance whose steps wait first and then record
  // themselves: a step killed while waiting has done nothing yet.
  async slowChain (n, i, ms) {
    console.log(`slowChain start ${i}`)
    await new Promise(resolve => setTimeout(resolve, ms))
    const key = `step${i}`
    await actor.state.set(this, key, ((await actor.state.get(this, key)) || 0) + 1)
    if (i + 1 >= n) return n
    return actor.tailCall(this, 'slowChain', n, i + 1, ms)
  }

  async remindEvery (period) {
    await actor.reminders.schedule(this, 'incr', { id: 'tick', targetTime: new Date(Date.now() + 100), period }, 1)
    return 'scheduled'
  }

  async remind (ms, n) {
    await actor.reminders.schedule(this, 'incr', { id: 'r1', targetTime: new Date(Date.now() + ms) }, n)
    return 'scheduled'
  }
}

const app = express()
app.use(sys.actorRuntime({ Counter }))
sys.h2c(app).listen(process.env.KAR_APP_PORT, '127.0.0.1', () => console.log('actors ready'))
