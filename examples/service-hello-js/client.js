// A client that calls the greeter through its sidecar with plain fetch.
const base = `http://127.0.0.1:${process.env.KAR_RUNTIME_PORT}/kar/v1/service/greeter/call`

async function main () {
  const text = await fetch(`${base}/helloText`, {
    method: 'POST',
    headers: { 'Content-Type': 'text/plain' },
    body: 'John Doe'
  })
  console.log(await text.text())

  const json = await fetch(`${base}/helloJson`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'John Doe' })
  })
  console.log((await json.json()).greetings)
}

main().catch(err => { console.error(err); process.exit(1) })
