// POST /v1/govern with undici's EnvHttpProxyAgent, which reads HTTP(S)_PROXY
// and NO_PROXY as `sudomode exec` sets them (tests/newcomer.rs).
const { EnvHttpProxyAgent, fetch } = require('undici');

async function main() {
  const res = await fetch(process.argv[2], {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ resource: 'shell', action: 'exec', args: { command: 'ls' } }),
    dispatcher: new EnvHttpProxyAgent(),
  });
  console.log(JSON.stringify({ status: res.status, body: await res.json() }));
}

main().catch((e) => console.log(JSON.stringify({ error: String(e && e.cause ? e.cause : e) })));
