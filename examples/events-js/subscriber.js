// An actor that subscribes to a topic and records what it receives in its
// actor state.
//
//   kar run -app events -actors Recorder node subscriber.js
//
// Recorder methods:
//   subscribe(topic)  subscribes this instance's onEvent to topic
//   unsubscribe()     cancels that subscription
//   onEvent(event)    called by kar for every event on the topic
//   status()          what was received so far
const express = require('express')
const { actor, events, sys } = require('kar-sdk')

class Recorder {
  async activate () {
    const s = await actor.state.getAll(this)
    this.topic = s.topic
    this.probes = s.probes || 0 // events sent only to check the subscription is live
    this.seqs = s.seqs || [] // seq of every numbered event, in arrival order
    this.cloudEvents = s.cloudEvents || [] // events that came in as CloudEvents
  }

  // subscriptionId is ours alone: subscribers that share an id share the
  // topic's events between them, as the members of a consumer group do.
  subscriptionId (topic) { return `${topic}-${this.kar.id}` }

  async subscribe (topic) {
    // Subscribing again with the same id replaces the subscription.
    await events.subscribe(this, 'onEvent', topic, { id: this.subscriptionId(topic) })
    this.topic = topic
    await actor.state.set(this, 'topic', topic)
    console.log(`Recorder ${this.kar.id} subscribed to ${topic}`)
  }

  async unsubscribe () {
    if (this.topic) await events.cancelSubscription(this, this.subscriptionId(this.topic))
    console.log(`Recorder ${this.kar.id} unsubscribed from ${this.topic}`)
  }

  async onEvent (event) {
    if (event && event.probe !== undefined) {
      this.probes++
      await actor.state.set(this, 'probes', this.probes)
    } else if (event && event.seq !== undefined) {
      this.seqs.push(event.seq)
      await actor.state.set(this, 'seqs', this.seqs)
      console.log(`Recorder ${this.kar.id} received event ${event.seq}`)
    } else if (event && event.specversion !== undefined) {
      // A CloudEvent in structured form: attributes and data in one object.
      this.cloudEvents.push({ id: event.id, type: event.type, source: event.source, data: event.data })
      await actor.state.set(this, 'cloudEvents', this.cloudEvents)
      console.log(`Recorder ${this.kar.id} received CloudEvent ${event.id} of type ${event.type}`)
    } else {
      console.log(`Recorder ${this.kar.id} ignored an event it does not know: ${JSON.stringify(event)}`)
    }
  }

  status () {
    return { topic: this.topic || '', probes: this.probes, seqs: this.seqs, cloudEvents: this.cloudEvents }
  }
}

const app = express()
app.use(sys.actorRuntime({ Recorder }))
const port = process.env.KAR_APP_PORT || 8080
sys.h2c(app).listen(port, process.env.KAR_APP_HOST || '127.0.0.1', () => console.log(`Recorder listening on ${port}`))
