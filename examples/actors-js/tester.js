// Seats a table of philosophers, waits until all of them have eaten, then
// checks what the actors report and prints SUCCESS or FAILURE.
//
// Settings (environment): DP_PHILOSOPHERS (5), DP_SERVINGS (5),
// DP_TIMEOUT seconds (120), DP_CAFE (Cafe-de-Flore), DP_TABLE (a fresh id).
const { actor } = require('kar-sdk')

const n = Number(process.env.DP_PHILOSOPHERS || 5)
const servings = Number(process.env.DP_SERVINGS || 5)
const timeoutMs = 1000 * Number(process.env.DP_TIMEOUT || 120)
const cafe = actor.proxy('Cafe', process.env.DP_CAFE || 'Cafe-de-Flore')
const table = process.env.DP_TABLE || `table-${Date.now()}-${process.pid}`

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function finish (problems) {
  if (problems.length === 0) {
    console.log(`SUCCESS: ${n} philosophers ate ${servings} servings each at table ${table}`)
    process.exit(0)
  }
  for (const p of problems) console.log(`problem: ${p}`)
  console.log(`FAILURE: ${problems.length} problem(s) at table ${table}`)
  process.exit(1)
}

// check returns the broken invariants of a table's final report.
function check (report) {
  const problems = []
  if (report.n !== n) problems.push(`table has ${report.n} seats, want ${n}`)
  if (report.diners.length !== 0) problems.push(`still at the table: ${report.diners.join(', ')}`)
  for (const [who, p] of Object.entries(report.philosophers)) {
    if (p.servingsEaten !== servings) problems.push(`${who} ate ${p.servingsEaten} servings, want ${servings}`)
    if (report.finished[who] !== servings) problems.push(`the table recorded ${report.finished[who]} servings for ${who}, want ${servings}`)
  }
  // Each fork lies between two philosophers: each of them ate every serving
  // with it, and nobody else ever did. A fork records a meal only for its
  // holder, so a meal recorded for anyone else, or a meal missing, means two
  // philosophers held one fork or a philosopher ate without its forks.
  for (const [fork, f] of Object.entries(report.forks)) {
    if (f.holder !== '') problems.push(`${fork} is still held by ${f.holder}`)
    const users = Object.entries(report.philosophers)
      .filter(([, p]) => p.firstFork === fork || p.secondFork === fork)
      .map(([who]) => who)
    if (users.length !== 2) problems.push(`${fork} lies between ${users.length} philosophers, want 2`)
    const want = new Set()
    for (const who of users) for (let s = 0; s < servings; s++) want.add(`${who}.${s}`)
    const got = Object.keys(f.uses)
    for (const use of got) if (!want.has(use)) problems.push(`${fork} was used for ${use}, which is not a meal of its neighbours`)
    for (const use of want) if (!(use in f.uses)) problems.push(`${fork} has no record of meal ${use}`)
  }
  return problems
}

async function main () {
  console.log(`Seating ${n} philosophers for ${servings} servings at table ${table}`)
  await actor.rootCall(cafe, 'seatTable', table, n, servings)
  const deadline = Date.now() + timeoutMs
  let last = -1
  for (;;) {
    const occupancy = await actor.rootCall(cafe, 'occupancy', table)
    if (occupancy !== last) console.log(`Table occupancy is ${occupancy}`)
    last = occupancy
    if (occupancy === 0) break
    if (Date.now() > deadline) return finish([`not done after ${timeoutMs / 1000}s: ${occupancy} philosophers still eating`])
    await sleep(250)
  }
  finish(check(await actor.rootCall(cafe, 'report', table)))
}

main().catch(err => finish([`error: ${err.stack || err}`]))
