#!/usr/bin/env node
/**
 * The peer of Doorstep's end-to-end WeChat tests: the official Wechaty puppet server (wechaty-puppet-service)
 * serving the official mock puppet (wechaty-puppet-mock), on a loopback port, without TLS (the Python SDK
 * speaks plaintext HTTP/2).
 *
 *   node peer.mjs --port 18888 --token doorstep-test --world world.json [--scan]
 *
 * The world file names the bot's own contact, the residents, riders and staff, and the rooms (with members).
 * The mocker creates them, then logs the bot in whenever the puppet starts (or, with --scan, shows a QR code
 * and waits for a `login` command).
 *
 * Commands arrive on stdin, one JSON object a line, and are acknowledged with {"event":"done","id":...}:
 *   {"op":"say", "id":"1", "from":"u_zhang", "room":"r3@chatroom", "text":"...", "mentions":["wxid_bot"]}
 *   {"op":"say", "id":"2", "from":"s_li", "to":"wxid_bot", "text":"..."}          a 1:1 chat with the bot
 *   {"op":"image", "from", "room", "name":"p.jpg", "base64":"..."}               a photo (any size)
 *   {"op":"image", "from", "room", "name":"p.jpg", "url":"/p.jpg", "base64":"..."} served over HTTP: a URL FileBox
 *   {"op":"file", "from", "room", "name":"通知.pdf", "base64":"..."}
 *   {"op":"location", "from", "room", "latitude", "longitude", "address", "name"}
 *   {"op":"link", "from", "room", "title", "url", "description"}
 *   {"op":"topic", "room", "topic", "by"}                                         someone renames the room
 *   {"op":"join", "room", "invitees":["wxid_bot"], "by"}                           someone adds people to a room
 *   {"op":"login"} / {"op":"logout"} / {"op":"quit"}
 * Everything the bot sends is reported on stdout, one JSON object a line:
 *   {"event":"said", "messageId", "room", "topic", "to", "text", "mentions":[...], "type":"text"|"image"|"file",
 *    "file":{"name","size","mediaType"}}
 * plus {"event":"listening","port"}, {"event":"login"}, {"event":"logout"}, {"event":"error","message"}.
 */
import fs from 'node:fs'
import http from 'node:http'
import readline from 'node:readline'
import util from 'node:util'

import { FileBox } from 'file-box'
import * as PUPPET from 'wechaty-puppet'
import { log } from 'wechaty-puppet'
import { mock, PuppetMock } from 'wechaty-puppet-mock'
import { PuppetServer } from 'wechaty-puppet-service'

// stdout carries only our JSON lines: every library log goes to stderr
const toStderr = (...args) => process.stderr.write(util.format(...args) + '\n')
console.log = toStderr
console.info = toStderr
console.debug = toStderr
log.level(process.env.WECHATY_LOG || 'warn')

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

function parseArgs (argv) {
  const args = { port: 0, token: '', world: '', scan: false, host: '127.0.0.1' }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--port') args.port = Number(argv[++i])
    else if (a === '--token') args.token = argv[++i]
    else if (a === '--world') args.world = argv[++i]
    else if (a === '--host') args.host = argv[++i]
    else if (a === '--scan') args.scan = true
    else throw new Error('unknown argument ' + a)
  }
  if (!args.port || !args.token || !args.world) throw new Error('usage: peer.mjs --port N --token T --world FILE [--scan]')
  return args
}

const args = parseArgs(process.argv.slice(2))
const world = JSON.parse(fs.readFileSync(args.world, 'utf8'))

/**
 * The official mock puppet, filled in where it returns fixed placeholders: the location and link of a message
 * are those the scenario gave, and the bot's @mentions reach the room message (the mock drops them).
 */
class ScenarioPuppet extends PuppetMock {
  locations = new Map()
  links = new Map()

  async messageLocation (messageId) {
    return this.locations.get(messageId) ?? super.messageLocation(messageId)
  }

  async messageUrl (messageId) {
    return this.links.get(messageId) ?? super.messageUrl(messageId)
  }

  async messageSendText (conversationId, text, mentionIdList) {
    if (!this.isLoggedIn) throw new Error('not logged in')
    const user = this.mocker.ContactMock.load(this.currentUserId)
    const mentions = (mentionIdList || []).map(id => this.mocker.ContactMock.load(id))
    const conversation = /@/.test(conversationId)
      ? this.mocker.RoomMock.load(conversationId)
      : this.mocker.ContactMock.load(conversationId)
    user.say(text, mentions).to(conversation)
  }
}

const mocker = new mock.Mocker()
const puppet = new ScenarioPuppet({ mocker })

const contacts = new Map()
const bot = mocker.createContact({ id: world.bot.id, name: world.bot.name })
contacts.set(bot.id, bot)
for (const c of world.contacts || []) {
  contacts.set(c.id, mocker.createContact({ id: c.id, name: c.name }))
}
const rooms = new Map()
for (const r of world.rooms || []) {
  rooms.set(r.id, mocker.createRoom({ id: r.id, topic: r.topic, memberIdList: [...r.members] }))
}

const contact = (id) => {
  const c = contacts.get(id)
  if (!c) throw new Error('no contact ' + id)
  return c
}
const room = (id) => {
  const r = rooms.get(id)
  if (!r) throw new Error('no room ' + id)
  return r
}

// log the bot in whenever the puppet (re)starts: the Python SDK stops and starts the puppet when it connects
let autoLogin = !args.scan
mocker.use(m => {
  if (autoLogin) m.login(bot)
  else m.scan('https://login.weixin.qq.com/l/doorstep-mock', PUPPET.types.ScanStatus.Waiting)
  return () => {}
})

puppet.on('login', () => emit({ event: 'login' }))
puppet.on('logout', () => emit({ event: 'logout' }))

// what the bot said: its messages as the mock records them (room message events on the TS side)
puppet.on('message', ({ messageId }) => {
  const p = mocker.cacheMessagePayload.get(messageId)
  if (!p || p.talkerId !== bot.id) return
  const out = {
    event: 'said',
    messageId,
    room: p.roomId || null,
    topic: p.roomId ? room(p.roomId).payload.topic : null,
    to: p.listenerId || null,
    text: p.text || '',
    mentions: p.mentionIdList || [],
    type: p.type === PUPPET.types.Message.Text ? 'text' : p.type === PUPPET.types.Message.Image ? 'image' : 'file',
  }
  const box = mocker.cacheFileBoxPayload.get(messageId)
  if (box) {
    out.file = {
      name: box.name,
      size: box.base64 ? Buffer.from(box.base64, 'base64').length : (box.size ?? -1),
      mediaType: FileBox.fromJSON(box).mediaType,
    }
  }
  emit(out)
})

// files the scenario serves over HTTP, to send URL FileBoxes
const served = new Map()
const httpServer = http.createServer((req, res) => {
  const body = served.get(req.url)
  if (!body) { res.writeHead(404); res.end(); return }
  res.writeHead(200, { 'content-type': body.type, 'content-length': body.data.length })
  res.end(body.data)
})
await new Promise(resolve => httpServer.listen(0, '127.0.0.1', resolve))
const httpBase = `http://127.0.0.1:${httpServer.address().port}`

function conversationOf (cmd) {
  return cmd.room ? room(cmd.room) : contact(cmd.to)
}

/** A message of any type from a resident, through the mock's own message store and event. */
function emitMessage (cmd, type, before = () => {}) {
  const id = 'm' + Date.now().toString(36) + Math.random().toString(36).slice(2, 8)
  before(id)
  const payload = {
    id,
    talkerId: cmd.from,
    timestamp: Date.now(),
    type,
    text: cmd.text || '',
    ...(cmd.room ? { roomId: cmd.room, mentionIdList: cmd.mentions || [] } : { listenerId: cmd.to }),
  }
  mocker.MessageMock.create(payload)
  puppet.emit('message', { messageId: id })
  return id
}

const mime = (name) => name.endsWith('.png') ? 'image/png' : name.endsWith('.pdf') ? 'application/pdf' : 'image/jpeg'

async function run (cmd) {
  switch (cmd.op) {
    case 'say': {
      const mentions = (cmd.mentions || []).map(contact)
      contact(cmd.from).say(cmd.text, mentions).to(conversationOf(cmd))
      return {}
    }
    case 'image':
    case 'file': {
      let box
      if (cmd.url) {
        served.set(cmd.url, { type: mime(cmd.name), data: Buffer.from(cmd.base64, 'base64') })
        box = FileBox.fromUrl(httpBase + cmd.url, { name: cmd.name })
      } else {
        box = FileBox.fromBase64(cmd.base64, cmd.name)
      }
      if (cmd.op === 'image') {
        contact(cmd.from).say(box).to(conversationOf(cmd))
        return {}
      }
      // the mock types a sent FileBox by its media type and knows only a few; a file is an Attachment
      const id = emitMessage(cmd, PUPPET.types.Message.Attachment, id => mocker.cacheFileBoxPayload.set(id, box.toJSON()))
      return { messageId: id }
    }
    case 'location': {
      const id = emitMessage(cmd, PUPPET.types.Message.Location, id => puppet.locations.set(id, {
        accuracy: 15, address: cmd.address || '', latitude: cmd.latitude, longitude: cmd.longitude, name: cmd.name || '',
      }))
      return { messageId: id }
    }
    case 'link': {
      const id = emitMessage({ ...cmd, text: cmd.text ?? cmd.title }, PUPPET.types.Message.Url, id => puppet.links.set(id, {
        title: cmd.title, url: cmd.url, description: cmd.description || '',
      }))
      return { messageId: id }
    }
    case 'topic':
      room(cmd.room).topic(cmd.topic).by(contact(cmd.by))
      return {}
    case 'join':
      room(cmd.room).add(...cmd.invitees.map(contact)).by(contact(cmd.by))
      return {}
    case 'login':
      autoLogin = true
      if (!puppet.isLoggedIn) mocker.login(bot)
      return {}
    case 'logout':
      await puppet.logout('scenario logout')
      return {}
    case 'quit':
      await shutdown(0)
      return {}
    default:
      throw new Error('unknown op ' + cmd.op)
  }
}

const server = new PuppetServer({
  endpoint: `${args.host}:${args.port}`,
  puppet,
  token: args.token,
  tls: { disable: true },
})

let stopping = false
async function shutdown (code) {
  if (stopping) return
  stopping = true
  try { await server.stop() } catch (e) { toStderr('server.stop', e) }
  try { await puppet.stop() } catch (e) { toStderr('puppet.stop', e) }
  httpServer.close()
  process.exit(code)
}
process.on('SIGTERM', () => shutdown(0))
process.on('SIGINT', () => shutdown(0))

await server.start()
emit({ event: 'listening', port: args.port, http: httpBase })

// Commands run one at a time, in order, so a scenario's messages arrive in the order it wrote them.
const rl = readline.createInterface({ input: process.stdin })
let queue = Promise.resolve()
rl.on('line', line => {
  if (!line.trim()) return
  queue = queue.then(async () => {
    let cmd
    try {
      cmd = JSON.parse(line)
      const result = await run(cmd)
      emit({ event: 'done', id: cmd.id ?? null, ...result })
    } catch (e) {
      emit({ event: 'error', id: cmd?.id ?? null, message: String(e && e.message ? e.message : e) })
    }
  })
})
rl.on('close', () => shutdown(0))
