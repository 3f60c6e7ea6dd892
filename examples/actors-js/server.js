// Dining philosophers on kar actors.
//
// A Cafe seats Tables; a Table seats n Philosophers around n Forks; each
// Philosopher eats a number of servings, each time picking up its two Forks
// (the lower-numbered one first, so the table never deadlocks), eating, and
// putting them down again, with a random think time in between.
//
// What it shows of the actor model:
//   - actor state (actor.state.*, actor.state.submap.*) holds everything that
//     must survive a crash; in-memory fields are a cache rebuilt in activate;
//   - reminders (actor.reminders.schedule) drive the philosophers' thinking
//     and retrying, one reminder id per philosopher, so rescheduling replaces;
//   - tail calls (actor.tailCall) chain a philosopher's steps while keeping
//     its lock, and let the Cafe answer with another actor's result;
//   - actor.call(this, other, ...) passes the caller's session, so the Table
//     can call back into the Cafe that is waiting on it (re-entrancy).
//
// Every method may run more than once: a request the mesh accepted is
// delivered at least once, also when this process is killed mid-method. So
// each method is written to be repeatable: it checks the persisted state
// (the serving number) before acting, and Forks are idempotent.
const express = require('express')
const { actor, sys } = require('kar-sdk')

const thinkMs = Number(process.env.DP_THINK_MS || 200)

// DP_TRACE=1 logs every step of every philosopher, to follow a run.
const trace = process.env.DP_TRACE ? (who, what) => console.log(`trace ${who.kar.id} ${what}`) : () => {}

// when is the target time of the next step: 0..thinkMs from now.
const when = () => new Date(Date.now() + Math.floor(Math.random() * thinkMs))

class Fork {
  async activate () {
    this.holder = (await actor.state.get(this, 'holder')) || ''
  }

  // pickUp gives the fork to who if it is free; asking again is fine.
  async pickUp (who) {
    if (this.holder === who) return true
    if (this.holder !== '') return false
    await actor.state.set(this, 'holder', who)
    this.holder = who
    return true
  }

  async putDown (who) {
    if (this.holder !== who) return // already put down (a repeated request)
    await actor.state.set(this, 'holder', '')
    this.holder = ''
  }

  getHolder () { return this.holder }

  // use records that who eats serving with this fork, if who holds it. The
  // key makes a repeated request count once.
  async use (who, serving) {
    if (this.holder !== who) return false
    await actor.state.submap.set(this, 'uses', `${who}.${serving}`, Date.now())
    return true
  }

  async report () {
    return { holder: this.holder, uses: await actor.state.submap.getAll(this, 'uses') }
  }
}

class Philosopher {
  async activate () {
    Object.assign(this, await actor.state.getAll(this))
  }

  joined () { return typeof this.table === 'string' }

  // joinTable seats the philosopher; the first reminder starts its meal.
  async joinTable (table, firstFork, secondFork, servings) {
    trace(this, `joinTable joined=${this.joined()}`)
    if (this.joined()) return // a repeated request
    // Schedule before persisting: if we die in between, the repeated
    // request finds no state and schedules again (the same reminder id).
    await actor.reminders.schedule(this, 'getFirstFork', { id: 'step', targetTime: when() }, 0)
    const state = { table, firstFork, secondFork, servings, servingsEaten: 0 }
    await actor.state.setMultiple(this, state)
    Object.assign(this, state)
  }

  current (serving) { return this.joined() && serving === this.servingsEaten }

  fork (which) { return actor.proxy('Fork', which === 1 ? this.firstFork : this.secondFork) }

  async getFirstFork (serving) {
    trace(this, `getFirstFork(${serving}) servingsEaten=${this.servingsEaten}`)
    if (!this.current(serving)) return // stale step
    if (await actor.call(this, this.fork(1), 'pickUp', this.kar.id)) {
      return actor.tailCall(this, 'getSecondFork', serving)
    }
    await actor.reminders.schedule(this, 'getFirstFork', { id: 'step', targetTime: when() }, serving)
  }

  async getSecondFork (serving) {
    trace(this, `getSecondFork(${serving}) servingsEaten=${this.servingsEaten}`)
    if (!this.current(serving)) return
    if (await actor.call(this, this.fork(2), 'pickUp', this.kar.id)) {
      return actor.tailCall(this, 'eat', serving)
    }
    // Keep the first fork: forks are taken in a global order, so whoever
    // holds our second fork will finish without needing our first one.
    await actor.reminders.schedule(this, 'getSecondFork', { id: 'step', targetTime: when() }, serving)
  }

  async eat (serving) {
    trace(this, `eat(${serving}) servingsEaten=${this.servingsEaten}`)
    if (!this.joined()) return
    if (serving === this.servingsEaten - 1) {
      // We ate it but died before leaving the table: leave now.
      return actor.tailCall(this, 'leave', this.servingsEaten)
    }
    if (serving !== this.servingsEaten) return
    const [h1, h2] = [
      await actor.call(this, this.fork(1), 'getHolder'),
      await actor.call(this, this.fork(2), 'getHolder')
    ]
    if (h1 !== this.kar.id || h2 !== this.kar.id) {
      // Only a repeated, stale request can get here; start over.
      console.log(`Philosopher ${this.kar.id} lost a fork before serving ${serving}; trying again`)
      return actor.tailCall(this, 'leave', serving)
    }
    await actor.call(this, this.fork(1), 'use', this.kar.id, serving)
    await actor.call(this, this.fork(2), 'use', this.kar.id, serving)
    this.servingsEaten = serving + 1
    await actor.state.setMultiple(this, { servingsEaten: this.servingsEaten, lastMeal: Date.now() })
    console.log(`Philosopher ${this.kar.id} ate serving ${this.servingsEaten} of ${this.servings}`)
    return actor.tailCall(this, 'leave', this.servingsEaten)
  }

  // leave puts both forks down and either thinks before the next serving
  // or tells the table it is done. It changes no state of its own, so it
  // can run any number of times.
  async leave (next) {
    trace(this, `leave(${next}) servingsEaten=${this.servingsEaten}`)
    if (!this.current(next)) return
    await actor.call(this, this.fork(2), 'putDown', this.kar.id)
    await actor.call(this, this.fork(1), 'putDown', this.kar.id)
    if (next < this.servings) {
      await actor.reminders.schedule(this, 'getFirstFork', { id: 'step', targetTime: when() }, next)
    } else {
      // A tell, not a call: the Table may be busy calling us.
      await actor.tell(actor.proxy('Table', this.table), 'doneEating', this.kar.id, this.servingsEaten)
    }
  }

  report () {
    return { table: this.table, servings: this.servings, servingsEaten: this.servingsEaten, firstFork: this.firstFork, secondFork: this.secondFork }
  }
}

class Table {
  async activate () {
    const s = await actor.state.getAll(this)
    this.cafe = s.cafe
    this.n = s.n
    this.servings = s.servings
    this.diners = s.diners || []
  }

  philosopher (i) { return `${this.kar.id}-p${i}` }

  fork (i) { return `${this.kar.id}-f${i}` }

  // prepare seats n philosophers for servings each. The Cafe is waiting on
  // this call; calling it back works because actor.call passes our session.
  async prepare (cafe, n, servings) {
    if (this.n === undefined) {
      const diners = []
      for (let i = 0; i < n; i++) diners.push(this.philosopher(i))
      await actor.state.setMultiple(this, { cafe, n, servings, diners })
      Object.assign(this, { cafe, n, servings, diners })
      console.log(`Cafe ${cafe} seats table ${this.kar.id}: ${n} philosophers, ${servings} servings each`)
    }
    await actor.call(this, actor.proxy('Cafe', this.cafe), 'tableReady', this.kar.id)
    // Philosopher i uses forks i and i+1 (mod n), the lower-numbered first.
    for (let i = 0; i < this.n; i++) {
      const a = i
      const b = (i + 1) % this.n
      await actor.tell(actor.proxy('Philosopher', this.philosopher(i)), 'joinTable',
        this.kar.id, this.fork(Math.min(a, b)), this.fork(Math.max(a, b)), this.servings)
    }
    return this.n
  }

  occupancy () { return this.diners.length }

  async doneEating (who, servingsEaten) {
    await actor.state.submap.set(this, 'finished', who, servingsEaten)
    if (!this.diners.includes(who)) return
    this.diners = this.diners.filter(d => d !== who)
    await actor.state.set(this, 'diners', this.diners)
    console.log(`Philosopher ${who} is done; ${this.diners.length} left at table ${this.kar.id}`)
  }

  async report () {
    const philosophers = {}
    const forks = {}
    for (let i = 0; i < this.n; i++) {
      philosophers[this.philosopher(i)] = await actor.call(this, actor.proxy('Philosopher', this.philosopher(i)), 'report')
      forks[this.fork(i)] = await actor.call(this, actor.proxy('Fork', this.fork(i)), 'report')
    }
    const finished = await actor.state.submap.getAll(this, 'finished')
    return { n: this.n, servings: this.servings, diners: this.diners, finished, philosophers, forks }
  }
}

class Cafe {
  // seatTable is where a re-entrant call happens: Table.prepare calls
  // tableReady on this Cafe while this method still holds the Cafe's lock.
  async seatTable (table, n = 5, servings = 5) {
    await actor.state.submap.set(this, 'tables', table, { n, servings, ready: false })
    await actor.call(this, actor.proxy('Table', table), 'prepare', this.kar.id, n, servings)
    return actor.state.submap.get(this, 'tables', table)
  }

  async tableReady (table) {
    const t = await actor.state.submap.get(this, 'tables', table)
    await actor.state.submap.set(this, 'tables', table, Object.assign({}, t, { ready: true }))
  }

  // The answers come from the Table itself: a tail call hands the request
  // over and frees the Cafe at once.
  occupancy (table) { return actor.tailCall(actor.proxy('Table', table), 'occupancy') }

  report (table) { return actor.tailCall(actor.proxy('Table', table), 'report') }
}

const app = express()
app.use(sys.actorRuntime({ Cafe, Table, Fork, Philosopher }))
const port = process.env.KAR_APP_PORT || 8080
sys.h2c(app).listen(port, process.env.KAR_APP_HOST || '127.0.0.1', () => console.log(`dining philosophers listening on ${port}`))
