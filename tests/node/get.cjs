// GET a URL with Node's own https module, as older Node clients do: run with
// `node -r global-agent/bootstrap`, which reads GLOBAL_AGENT_* (tests/newcomer.rs).
const https = require('https');

https.get(process.argv[2], (res) => {
  let body = '';
  res.on('data', (c) => { body += c; });
  res.on('end', () => console.log(JSON.stringify({
    status: res.statusCode,
    request_id: res.headers['x-sudomode-request-id'] || null,
    body,
  })));
}).on('error', (e) => console.log(JSON.stringify({ error: String(e) })));
