// An RTSP server on loopback for the live-source tests and drills (deploy/local/rtsp.py).
// Publishers ANNOUNCE to PUBLISH_PORT (ffmpeg -f rtsp), clients read from CLIENT_PORT.
// With RTSP_USER/RTSP_PASS set, clients must send them (Basic auth; a wrong pair gets 401).
// The server itself sends RTP over UDP only: a client asking for TCP gets 461 Unsupported Transport.
const RtspServer = require('rtsp-streaming-server').default;

const env = (name, fallback) => process.env[name] || fallback;
const user = env('RTSP_USER', '');
const pass = env('RTSP_PASS', '');
const server = new RtspServer({
  serverPort: Number(env('PUBLISH_PORT', 5554)),
  clientPort: Number(env('CLIENT_PORT', 6554)),
  rtpPortStart: Number(env('RTP_PORT_START', 20000)),
  rtpPortCount: Number(env('RTP_PORT_COUNT', 1000)),
  clientServerHooks: user ? { authentication: async (u, p) => u === user && p === pass } : {},
});

server.start().then(() => console.log('ready'), (err) => { console.error(err); process.exit(1); });
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
