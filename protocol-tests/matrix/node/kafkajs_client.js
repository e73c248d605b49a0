#!/usr/bin/env node
'use strict'
// The KafkaJS program of the client matrix: `scenarios` and `member`, as ../CONTRACT.md says.
// stdout carries only JSON lines; diagnostics (and KafkaJS's own log) go to stderr.

const {
  Kafka,
  logLevel,
  CompressionTypes,
  Partitioners,
  ConfigResourceTypes,
  PartitionAssigners,
} = require('kafkajs')
const { registerCodecs, usage: codecUsage } = require('./codecs')

const CLIENT = 'kafkajs'
const VERSION = require('kafkajs/package.json').version
const TIMEOUT_MS = 60000
const SCENARIOS = [
  'metadata',
  'topic_admin',
  'compression_none',
  'compression_gzip',
  'compression_snappy',
  'compression_lz4',
  'compression_zstd',
  'keyed_partitioning',
  'headers_nulls',
  'idempotent',
  'group_resume',
  'timestamp_offsets',
  'large_records',
]

registerCodecs()

// ---- output, errors ----

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function log(msg) {
  process.stderr.write(msg + '\n')
}

class Failed extends Error {}
class Unsupported extends Error {}
class TimedOut extends Error {}

function check(cond, message) {
  if (!cond) throw new Failed(message)
}

// The Kafka protocol error name carried by a KafkaJS error: KafkaJSProtocolError (and its
// subclasses) has `type`; retry wrappers keep the original in `cause`; aggregate errors (per
// topic results) list theirs in `errors`.
function errorType(err, depth = 0) {
  if (!err || depth > 8) return null
  if (typeof err.type === 'string' && err.type) return err.type
  if (Array.isArray(err.errors)) {
    const types = [...new Set(err.errors.map(e => errorType(e, depth + 1)).filter(Boolean))]
    if (types.length) return types.join(',')
  }
  return errorType(err.cause || err.originalError, depth + 1)
}

function describeError(err) {
  const t = errorType(err)
  const name = (err && err.name) || 'Error'
  const msg = (err && err.message) || String(err)
  return t ? `${name} [${t}]: ${msg}` : `${name}: ${msg}`
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// KafkaJS logs through a logCreator: everything to stderr, level ERROR and above.
const logCreator = () => ({ namespace, label, log: entry }) => {
  const { message, ...extra } = entry
  let rest = ''
  try {
    rest = JSON.stringify(extra)
  } catch (_) {
    rest = ''
  }
  process.stderr.write(`[kafkajs ${label} ${namespace}] ${message} ${rest}\n`)
}

function newKafka(bootstrap, retry) {
  return new Kafka({
    clientId: 'mx-kafkajs',
    brokers: [bootstrap],
    logLevel: logLevel.ERROR,
    logCreator,
    connectionTimeout: 5000,
    requestTimeout: 30000,
    retry: retry || { initialRetryTime: 100, maxRetryTime: 1000, retries: 8 },
  })
}

// ---- one scenario's context ----

class Ctx {
  constructor(scenario, bootstrap, runId) {
    this.scenario = scenario
    this.bootstrap = bootstrap
    this.runId = runId
    this.currentStep = 'start'
    this.cancelled = false
    this.clients = [] // everything with a disconnect(), closed at the end
    this.kafka = newKafka(bootstrap)
  }

  topic(n = 1) {
    const base = `mx-${CLIENT}-${this.scenario}-${this.runId}`.replace(/_/g, '-')
    return n === 1 ? base : `${base}-${n}`
  }

  group(n = 1) {
    return this.topic(n) + '-group'
  }

  step(what) {
    if (this.cancelled) throw new TimedOut('scenario timed out')
    this.currentStep = what
    log(`[${CLIENT} ${this.scenario}] ${what}`)
  }

  track(client) {
    this.clients.push(client)
    return client
  }

  async admin() {
    const admin = this.track(this.kafka.admin())
    await admin.connect()
    return admin
  }

  async producer(options = {}, kafka = this.kafka) {
    const producer = this.track(
      kafka.producer({
        allowAutoTopicCreation: false,
        // KafkaJS 2.x's default partitioner (murmur2 of the key, as Java's), named explicitly
        // only to silence its "default partitioner changed" notice.
        createPartitioner: Partitioners.DefaultPartitioner,
        ...options,
      })
    )
    await producer.connect()
    return producer
  }

  async closeAll() {
    const clients = this.clients.splice(0).reverse()
    await Promise.all(
      clients.map(c =>
        Promise.race([c.disconnect().catch(e => log(`close: ${describeError(e)}`)), sleep(10000)])
      )
    )
  }
}

// Poll until `fn` returns a truthy value (or the scenario is cancelled).
async function waitFor(ctx, what, fn, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs
  let last = null
  for (;;) {
    if (ctx.cancelled) throw new TimedOut('scenario timed out')
    try {
      const v = await fn()
      if (v) return v
      last = null
    } catch (e) {
      last = e
    }
    if (Date.now() > deadline) {
      throw new Failed(`${what}: not reached within ${timeoutMs} ms${last ? ` (${describeError(last)})` : ''}`)
    }
    await sleep(50)
  }
}

// Create a topic with the admin API and wait until its metadata shows every partition with a leader.
async function createTopic(ctx, admin, topic, partitions, configs = {}) {
  ctx.step(`create topic ${topic} (${partitions} partitions)`)
  const created = await admin.createTopics({
    topics: [
      {
        topic,
        numPartitions: partitions,
        replicationFactor: 1,
        configEntries: Object.entries(configs).map(([name, value]) => ({ name, value })),
      },
    ],
    waitForLeaders: true,
    timeout: 10000,
  })
  check(created === true, `createTopics(${topic}) did not report the topic as created (returned ${created})`)
  await waitForLeaders(ctx, admin, topic, partitions)
}

async function waitForLeaders(ctx, admin, topic, partitions) {
  ctx.step(`wait for leaders of ${topic}`)
  return waitFor(ctx, `every partition of ${topic} with a leader`, async () => {
    const md = await admin.fetchTopicMetadata({ topics: [topic] })
    const t = md.topics.find(x => x.name === topic)
    if (!t || t.partitions.length !== partitions) return null
    return t.partitions.every(p => p.leader >= 0 && p.partitionErrorCode === 0) ? t : null
  })
}

// Log end offset of each partition (index = partition).
async function logEnds(admin, topic) {
  const offsets = await admin.fetchTopicOffsets(topic)
  const ends = []
  for (const o of offsets) ends[o.partition] = Number(o.high)
  return ends
}

// Read `topic` with a group consumer (KafkaJS has no consumer without a group) from the beginning
// (or from the group's committed offsets) until every partition is read up to `ends[p]`. Returns
// the records in the order read per partition. With `commit`, commits after each batch.
async function consume(ctx, { topic, groupId, ends, commit = false, label = 'consume' }) {
  const records = []
  const next = [] // next offset to read per partition, as seen
  const consumer = ctx.track(
    ctx.kafka.consumer({
      groupId,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 100,
      heartbeatInterval: 1000,
      sessionTimeout: 10000,
      rebalanceTimeout: 10000,
      maxBytesPerPartition: 1048576,
    })
  )
  ctx.step(`${label}: connect consumer (group ${groupId})`)
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  let failure = null
  const caughtUp = () => ends.every((end, p) => end === 0 || (next[p] !== undefined && next[p] >= end))
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        records.push({
          partition: batch.partition,
          offset: Number(m.offset),
          key: m.key,
          value: m.value,
          headers: m.headers,
          timestamp: m.timestamp,
        })
      }
      if (batch.messages.length) {
        const after = Number(batch.lastOffset()) + 1
        if (commit) {
          try {
            await consumer.commitOffsets([{ topic, partition: batch.partition, offset: String(after) }])
          } catch (e) {
            failure = failure || e
            throw e
          }
        }
        next[batch.partition] = after
      }
    },
  })
  ctx.step(`${label}: read up to log end offsets ${JSON.stringify(ends)}`)
  // Partitions whose committed offset is already at the log end are never fetched from, so a
  // group that has nothing to read would wait here; callers only use it where there is something.
  await waitFor(
    ctx,
    `${label}: read up to ${JSON.stringify(ends)} (read ${records.length}, next offsets ${JSON.stringify(next)})`,
    () => {
      if (failure) throw failure
      return caughtUp()
    },
    45000
  )
  ctx.step(`${label}: close consumer`)
  await consumer.disconnect()
  return records
}

const str = b => (b === null || b === undefined ? null : b.toString('utf8'))

// ---- scenarios ----

async function metadata(ctx) {
  const admin = await ctx.admin()
  const topic = ctx.topic()
  await createTopic(ctx, admin, topic, 3)
  ctx.step('describe cluster')
  const cluster = await admin.describeCluster()
  const brokers = cluster.brokers
  check(brokers.length >= 1, `expected >= 1 broker, saw ${brokers.length}`)
  const [host, port] = splitHostPort(ctx.bootstrap)
  check(
    brokers.some(b => b.host === host && Number(b.port) === port),
    `expected a broker at ${ctx.bootstrap}, saw ${JSON.stringify(brokers.map(b => `${b.host}:${b.port}`))}`
  )
  const ids = new Set(brokers.map(b => b.nodeId))
  let controllerListed = null
  if (cluster.controller !== null && cluster.controller !== undefined) {
    controllerListed = ids.has(cluster.controller)
    check(controllerListed, `controller ${cluster.controller} is not a listed broker ${JSON.stringify([...ids])}`)
  }
  ctx.step('topic metadata')
  const md = await admin.fetchTopicMetadata({ topics: [topic] })
  const t = md.topics.find(x => x.name === topic)
  check(t, `topic ${topic} not in metadata`)
  const parts = [...t.partitions].sort((a, b) => a.partitionId - b.partitionId)
  check(parts.length === 3, `expected 3 partitions, saw ${parts.length}`)
  check(
    JSON.stringify(parts.map(p => p.partitionId)) === '[0,1,2]',
    `expected partitions 0..2, saw ${JSON.stringify(parts.map(p => p.partitionId))}`
  )
  for (const p of parts) {
    check(ids.has(p.leader), `partition ${p.partitionId}: leader ${p.leader} is not a listed broker`)
    check(p.replicas.length === 1, `partition ${p.partitionId}: expected 1 replica, saw ${JSON.stringify(p.replicas)}`)
  }
  return {
    brokers: brokers.length,
    partitions: parts.length,
    replicas: parts.map(p => p.replicas.length),
    controller_listed: controllerListed,
  }
}

function splitHostPort(hp) {
  const i = hp.lastIndexOf(':')
  return [hp.slice(0, i), Number(hp.slice(i + 1))]
}

async function topicConfigs(admin, topic, names) {
  const res = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: names }],
    includeSynonyms: false,
  })
  const r = res.resources.find(x => x.resourceName === topic)
  check(r, `describeConfigs: no resource for ${topic}`)
  check(!r.errorCode, `describeConfigs: error code ${r.errorCode} ${r.errorMessage}`)
  const out = {}
  for (const e of r.configEntries) out[e.configName] = e
  return out
}

// ConfigSource values of DescribeConfigs v1+.
const TOPIC_CONFIG = 1

async function topicAdmin(ctx) {
  const admin = await ctx.admin()
  const topic = ctx.topic()
  const observed = {}
  await createTopic(ctx, admin, topic, 3, { 'retention.ms': '3600000' })

  ctx.step('describe topic')
  const md = await admin.fetchTopicMetadata({ topics: [topic] })
  observed.partitions = md.topics.find(x => x.name === topic).partitions.length
  check(observed.partitions === 3, `expected 3 partitions, saw ${observed.partitions}`)

  ctx.step('describe configs')
  let cfg = await topicConfigs(admin, topic, ['retention.ms', 'cleanup.policy'])
  const ret = cfg['retention.ms']
  const cp = cfg['cleanup.policy']
  check(ret, `retention.ms missing from describeConfigs: ${JSON.stringify(Object.keys(cfg))}`)
  check(cp, `cleanup.policy missing from describeConfigs: ${JSON.stringify(Object.keys(cfg))}`)
  check(ret.configValue === '3600000', `expected retention.ms=3600000, saw ${ret.configValue}`)
  check(
    ret.configSource === undefined ? ret.isDefault === false : ret.configSource === TOPIC_CONFIG,
    `expected retention.ms to be a topic override, saw source ${ret.configSource} isDefault ${ret.isDefault}`
  )
  check(cp.configValue === 'delete', `expected cleanup.policy=delete, saw ${cp.configValue}`)
  check(
    cp.configSource === undefined ? cp.isDefault === true : cp.configSource !== TOPIC_CONFIG,
    `expected cleanup.policy to be a default, saw source ${cp.configSource} isDefault ${cp.isDefault}`
  )
  observed.retention_ms = ret.configValue
  observed.cleanup_policy = cp.configValue

  // KafkaJS 2.x has only the legacy (non-incremental) AlterConfigs call, no IncrementalAlterConfigs.
  observed.retention_ms_altered =
    typeof admin.incrementalAlterConfigs === 'function' ? null : 'unsupported:incrementalAlterConfigs'
  if (observed.retention_ms_altered === null) {
    ctx.step('incrementally alter retention.ms')
    await admin.incrementalAlterConfigs({
      resources: [
        {
          type: ConfigResourceTypes.TOPIC,
          name: topic,
          configEntries: [{ name: 'retention.ms', value: '7200000', operation: 0 }],
        },
      ],
    })
    cfg = await topicConfigs(admin, topic, ['retention.ms'])
    observed.retention_ms_altered = cfg['retention.ms'].configValue
    check(observed.retention_ms_altered === '7200000', `expected retention.ms=7200000 after the alter, saw ${observed.retention_ms_altered}`)
  }

  ctx.step('create partitions (to 4)')
  await admin.createPartitions({ topicPartitions: [{ topic, count: 4 }], timeout: 10000 })
  const after = await waitFor(ctx, `${topic} with 4 partitions in metadata`, async () => {
    const m = await admin.fetchTopicMetadata({ topics: [topic] })
    const n = m.topics.find(x => x.name === topic).partitions.length
    return n === 4 ? n : null
  }, 15000)
  observed.partitions_after_create_partitions = after

  ctx.step('create the topic again')
  try {
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: 3, replicationFactor: 1 }],
      waitForLeaders: false,
      timeout: 10000,
    })
    // KafkaJS resolves createTopics to false exactly when every topic failed with
    // TOPIC_ALREADY_EXISTS (admin/index.js); any other error is thrown.
    observed.create_again = created === false ? 'TOPIC_ALREADY_EXISTS' : 'no error'
  } catch (e) {
    observed.create_again = errorType(e) || describeError(e)
  }
  check(observed.create_again === 'TOPIC_ALREADY_EXISTS', `expected TOPIC_ALREADY_EXISTS, saw ${observed.create_again}`)

  ctx.step('delete topic')
  await admin.deleteTopics({ topics: [topic], timeout: 10000 })
  await waitFor(ctx, `${topic} gone from metadata`, async () => {
    const topics = await admin.listTopics()
    return !topics.includes(topic)
  }, 20000)

  ctx.step('delete a topic that never existed')
  // UNKNOWN_TOPIC_OR_PARTITION is retriable in KafkaJS: an admin without retries answers at once.
  const admin0 = ctx.track(newKafka(ctx.bootstrap, { retries: 0 }).admin())
  await admin0.connect()
  try {
    await admin0.deleteTopics({ topics: [ctx.topic(2) + '-never-created'], timeout: 10000 })
    observed.delete_unknown = 'no error'
  } catch (e) {
    observed.delete_unknown = errorType(e) || describeError(e)
  }
  check(
    observed.delete_unknown === 'UNKNOWN_TOPIC_OR_PARTITION',
    `expected UNKNOWN_TOPIC_OR_PARTITION, saw ${observed.delete_unknown}`
  )
  return observed
}

function compression(codecName, type) {
  return async ctx => {
    const admin = await ctx.admin()
    const topic = ctx.topic()
    await createTopic(ctx, admin, topic, 1)
    const before = codecName ? { ...codecUsage[codecName] } : null
    const producer = await ctx.producer()
    ctx.step(`produce 100 records (${codecName || 'none'})`)
    const messages = []
    for (let i = 0; i < 100; i++) messages.push({ key: `k-${i}`, value: `v-${i}` })
    const res = await producer.send({ topic, messages, acks: -1, compression: type, timeout: 30000 })
    check(res.length === 1 && res[0].errorCode === 0, `unexpected produce result ${JSON.stringify(res)}`)
    check(Number(res[0].baseOffset) === 0, `expected base offset 0, saw ${res[0].baseOffset}`)
    if (codecName) {
      check(codecUsage[codecName].compress > before.compress, `the producer did not compress with ${codecName}`)
    }
    const ends = await logEnds(admin, topic)
    check(ends[0] === 100, `expected log end offset 100, saw ${ends[0]}`)
    const records = await consume(ctx, { topic, groupId: ctx.group(), ends })
    check(records.length === 100, `expected 100 records, read ${records.length}`)
    records.forEach((r, i) => {
      check(r.offset === i, `record ${i}: expected offset ${i}, saw ${r.offset}`)
      check(str(r.key) === `k-${i}` && str(r.value) === `v-${i}`,
        `record ${i}: expected k-${i}/v-${i}, saw ${str(r.key)}/${str(r.value)}`)
    })
    if (codecName) {
      check(codecUsage[codecName].decompress > before.decompress,
        `the consumer did not decompress with ${codecName} (the fetched batches were not ${codecName}-compressed)`)
    }
    return { records: records.length, offsets: [records[0].offset, records[records.length - 1].offset] }
  }
}

async function keyedPartitioning(ctx) {
  const admin = await ctx.admin()
  const topic = ctx.topic()
  await createTopic(ctx, admin, topic, 6)
  const producer = await ctx.producer()
  const partitionOf = {}
  const reported = new Map() // value -> partition from the delivery report
  for (let round = 0; round < 2; round++) {
    ctx.step(`produce 60 keyed records (round ${round + 1})`)
    await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        const key = `key-${i}`
        const value = `r${round}-${key}`
        const res = await producer.send({ topic, messages: [{ key, value }], acks: -1, timeout: 30000 })
        check(res.length === 1 && res[0].errorCode === 0, `unexpected produce result ${JSON.stringify(res)}`)
        const p = res[0].partition
        reported.set(value, p)
        if (round === 0) partitionOf[key] = p
        else check(partitionOf[key] === p, `${key}: first send went to partition ${partitionOf[key]}, second to ${p}`)
      })
    )
  }
  const ends = await logEnds(admin, topic)
  const records = await consume(ctx, { topic, groupId: ctx.group(), ends })
  check(records.length === 120, `expected 120 records, read ${records.length}`)
  const seen = new Set()
  for (const r of records) {
    const v = str(r.value)
    check(reported.has(v), `read an unexpected record ${v}`)
    check(!seen.has(v), `read ${v} twice`)
    seen.add(v)
    check(r.partition === reported.get(v), `${v} found in partition ${r.partition}, reported in ${reported.get(v)}`)
    check(str(r.key) === v.slice(3), `${v}: key ${str(r.key)}`)
  }
  const ordered = {}
  for (let i = 0; i < 60; i++) ordered[`key-${i}`] = partitionOf[`key-${i}`]
  return { records: records.length, partition_of: ordered }
}

// KafkaJS gives a record's headers as an object: name -> value, or name -> [values] for a name
// that occurs more than once (in order). Back to [name, value] pairs.
function headerPairs(headers) {
  const pairs = []
  for (const name of Object.keys(headers || {})) {
    const v = headers[name]
    for (const x of Array.isArray(v) ? v : [v]) pairs.push([name, str(x)])
  }
  return pairs
}

async function headersNulls(ctx) {
  const admin = await ctx.admin()
  const topic = ctx.topic()
  await createTopic(ctx, admin, topic, 1)
  const producer = await ctx.producer()
  // No (k5, v5, n=null) record: KafkaJS 2.2.4 cannot send a header with a null value. Its
  // encoder would write one (length -1), but the record size computation before it calls
  // Buffer.byteLength(null) and throws a TypeError (record/v0/index.js, sizeOfHeaders).
  const messages = [
    { key: null, value: 'v1' },
    { key: 'k2', value: null },
    { key: 'k3', value: '' },
    { key: 'k4', value: 'v4', headers: { h1: ['a', 'b'], empty: '' } },
  ]
  const expected = [
    [null, 'v1', []],
    ['k2', null, []],
    ['k3', '', []],
    ['k4', 'v4', [['h1', 'a'], ['h1', 'b'], ['empty', '']]],
  ]
  ctx.step('produce 5 records')
  const res = await producer.send({ topic, messages, acks: -1, timeout: 30000 })
  check(res.length === 1 && res[0].errorCode === 0, `unexpected produce result ${JSON.stringify(res)}`)
  const ends = await logEnds(admin, topic)
  const records = await consume(ctx, { topic, groupId: ctx.group(), ends })
  const got = records.map(r => [str(r.key), str(r.value), headerPairs(r.headers)])
  check(JSON.stringify(got) === JSON.stringify(expected), `expected ${JSON.stringify(expected)}, read ${JSON.stringify(got)}`)
  return { records: got }
}

async function idempotent(ctx) {
  const admin = await ctx.admin()
  const topic = ctx.topic()
  await createTopic(ctx, admin, topic, 1)
  const producer = await ctx.producer({ idempotent: true, maxInFlightRequests: 1 })
  for (let b = 0; b < 4; b++) {
    ctx.step(`idempotent produce, batch ${b + 1}/4 (50 records)`)
    const messages = []
    for (let i = b * 50; i < (b + 1) * 50; i++) messages.push({ key: `k-${i}`, value: `v-${i}` })
    const res = await producer.send({ topic, messages, acks: -1, timeout: 30000 })
    check(res.length === 1 && res[0].errorCode === 0, `unexpected produce result ${JSON.stringify(res)}`)
    check(Number(res[0].baseOffset) === b * 50, `batch ${b + 1}: expected base offset ${b * 50}, saw ${res[0].baseOffset}`)
  }
  const ends = await logEnds(admin, topic)
  check(ends[0] === 200, `expected log end offset 200, saw ${ends[0]}`)
  const records = await consume(ctx, { topic, groupId: ctx.group(), ends })
  check(records.length === 200, `expected 200 records, read ${records.length}`)
  records.forEach((r, i) => {
    check(r.offset === i && str(r.value) === `v-${i}`, `record ${i}: expected offset ${i} v-${i}, saw ${r.offset} ${str(r.value)}`)
  })
  return { records: 200, offsets: [0, 199] }
}

async function groupResume(ctx) {
  const admin = await ctx.admin()
  const topic = ctx.topic()
  const group = ctx.group()
  await createTopic(ctx, admin, topic, 3)
  const producer = await ctx.producer()
  ctx.step('produce 30 records')
  const first = Array.from({ length: 30 }, (_, i) => ({ value: `first-${i}`, partition: i % 3 }))
  await producer.send({ topic, messages: first, acks: -1, timeout: 30000 })
  let ends = await logEnds(admin, topic)
  check(JSON.stringify(ends) === '[10,10,10]', `expected log ends [10,10,10], saw ${JSON.stringify(ends)}`)
  const a = await consume(ctx, { topic, groupId: group, ends, commit: true, label: 'consumer A' })
  const aValues = new Set(a.map(r => str(r.value)))
  check(a.length === 30 && aValues.size === 30, `consumer A: expected the 30 records, read ${a.length} (${aValues.size} distinct)`)
  ctx.step('produce 10 more records')
  const second = Array.from({ length: 10 }, (_, i) => ({ value: `second-${i}`, partition: i % 3 }))
  await producer.send({ topic, messages: second, acks: -1, timeout: 30000 })
  ends = await logEnds(admin, topic)
  check(JSON.stringify(ends) === '[14,13,13]', `expected log ends [14,13,13], saw ${JSON.stringify(ends)}`)
  const b = await consume(ctx, { topic, groupId: group, ends, commit: true, label: 'consumer B' })
  const bValues = b.map(r => str(r.value))
  const old = bValues.filter(v => aValues.has(v))
  check(old.length === 0, `consumer B read ${old.length} of the first 30 records again (e.g. ${old.slice(0, 3)})`)
  check(
    b.length === 10 && new Set(bValues).size === 10 && bValues.every(v => v.startsWith('second-')),
    `consumer B: expected the 10 new records, read ${JSON.stringify(bValues)}`
  )
  ctx.step('fetch committed offsets')
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] })
  const t = offsets.find(x => x.topic === topic)
  check(t, `fetchOffsets: no entry for ${topic}`)
  const committed = []
  for (const p of t.partitions) committed[p.partition] = Number(p.offset)
  check(JSON.stringify(committed) === '[14,13,13]', `expected committed [14,13,13], saw ${JSON.stringify(committed)}`)
  return { first: a.length, second: b.length, committed }
}

async function timestampOffsets(ctx) {
  const admin = await ctx.admin()
  const topic = ctx.topic()
  await createTopic(ctx, admin, topic, 1)
  const t0 = Math.round((Date.now() - 60000) / 1000) * 1000
  const producer = await ctx.producer()
  ctx.step('produce 3 records with create timestamps')
  const res = await producer.send({
    topic,
    messages: [0, 1, 2].map(i => ({ key: `k-${i}`, value: `v-${i}`, timestamp: String(t0 + i * 1000) })),
    acks: -1,
    timeout: 30000,
  })
  check(res.length === 1 && res[0].errorCode === 0, `unexpected produce result ${JSON.stringify(res)}`)
  ctx.step('list offsets: earliest, latest')
  const off = (await admin.fetchTopicOffsets(topic)).find(o => o.partition === 0)
  const earliest = Number(off.low)
  const latest = Number(off.high)
  const byTs = async ts => {
    ctx.step(`list offsets by timestamp t0+${ts - t0}`)
    const r = await admin.fetchTopicOffsetsByTimestamp(topic, ts)
    return Number(r.find(o => o.partition === 0).offset)
  }
  const at500 = await byTs(t0 + 500)
  const at2000 = await byTs(t0 + 2000)
  let after = await byTs(t0 + 10000)
  // KafkaJS's fetchTopicOffsetsByTimestamp answers "no such offset" (the broker's -1) with the
  // partition's latest offset instead (admin/index.js); that answer is reported as -1 here.
  // A timestamp lookup that wrongly found offset 3 would look the same through this API.
  if (after === latest) after = -1
  const observed = { earliest, latest, 't0+500': at500, 't0+2000': at2000, after_last: after }
  const want = { earliest: 0, latest: 3, 't0+500': 1, 't0+2000': 2, after_last: -1 }
  check(JSON.stringify(observed) === JSON.stringify(want), `expected ${JSON.stringify(want)}, saw ${JSON.stringify(observed)}`)
  return observed
}

async function largeRecords(ctx) {
  const admin = await ctx.admin()
  const topic = ctx.topic()
  await createTopic(ctx, admin, topic, 1, { 'max.message.bytes': '200000' })
  // KafkaJS has no client-side request or record size limit to raise; no retries, so the
  // broker's answer to the over-limit record is what send() reports.
  const producer = await ctx.producer({ retry: { retries: 0 } }, newKafka(ctx.bootstrap, { retries: 0 }))
  const near = Buffer.alloc(190000)
  for (let i = 0; i < near.length; i++) near[i] = (i * 31 + 7) & 0xff
  const observed = {}
  ctx.step('produce a 190000-byte record')
  try {
    const res = await producer.send({ topic, messages: [{ key: 'near', value: near }], acks: -1, timeout: 30000 })
    observed.near_limit = res[0].errorCode === 0 ? 'ok' : `error code ${res[0].errorCode}`
  } catch (e) {
    observed.near_limit = errorType(e) || describeError(e)
  }
  check(observed.near_limit === 'ok', `190000-byte record: expected ok, saw ${observed.near_limit}`)
  ctx.step('produce a 210000-byte record')
  try {
    await producer.send({ topic, messages: [{ key: 'over', value: Buffer.alloc(210000, 1) }], acks: -1, timeout: 30000 })
    observed.over_limit = 'ok'
  } catch (e) {
    observed.over_limit = errorType(e) || describeError(e)
  }
  check(observed.over_limit === 'MESSAGE_TOO_LARGE', `210000-byte record: expected MESSAGE_TOO_LARGE, saw ${observed.over_limit}`)
  ctx.step('produce a small record afterwards')
  try {
    const res = await producer.send({ topic, messages: [{ key: 'after', value: 'small' }], acks: -1, timeout: 30000 })
    observed.after = res[0].errorCode === 0 ? 'ok' : `error code ${res[0].errorCode}`
  } catch (e) {
    observed.after = errorType(e) || describeError(e)
  }
  check(observed.after === 'ok', `small record after the refused one: expected ok, saw ${observed.after}`)
  const ends = await logEnds(admin, topic)
  check(ends[0] === 2, `expected log end offset 2 (the refused record not written), saw ${ends[0]}`)
  const records = await consume(ctx, { topic, groupId: ctx.group(), ends })
  check(records.length === 2, `expected 2 records, read ${records.length}`)
  check(records[0].value && records[0].value.equals(near), `the 190000-byte record did not read back byte-identical (length ${records[0].value && records[0].value.length})`)
  check(str(records[1].value) === 'small', `expected the small record at offset 1, saw ${str(records[1].value)}`)
  return observed
}

const TABLE = {
  metadata,
  topic_admin: topicAdmin,
  compression_none: compression(null, CompressionTypes.None),
  compression_gzip: compression('gzip', CompressionTypes.GZIP),
  compression_snappy: compression('snappy', CompressionTypes.Snappy),
  compression_lz4: compression('lz4', CompressionTypes.LZ4),
  compression_zstd: compression('zstd', CompressionTypes.ZSTD),
  keyed_partitioning: keyedPartitioning,
  headers_nulls: headersNulls,
  idempotent,
  group_resume: groupResume,
  timestamp_offsets: timestampOffsets,
  large_records: largeRecords,
}

async function runScenarios(args) {
  const wanted = args.only ? args.only.split(',').filter(Boolean) : SCENARIOS
  for (const name of wanted) {
    const ctx = new Ctx(name, args.bootstrap, args['run-id'])
    const started = process.hrtime.bigint()
    let outcome
    let timer
    const timeout = new Promise(resolve => {
      timer = setTimeout(() => {
        resolve({ status: 'fail', reason: `timed out after ${TIMEOUT_MS / 1000} s in ${ctx.currentStep}` })
      }, TIMEOUT_MS)
    })
    const body = (async () => {
      const fn = TABLE[name]
      if (!fn) throw new Failed(`no such scenario in this program: ${name}`)
      return { status: 'pass', observed: (await fn(ctx)) || {} }
    })().catch(e => {
      if (e instanceof Unsupported) return { status: 'unsupported', reason: e.message }
      if (e instanceof Failed) return { status: 'fail', reason: `${e.message} (step: ${ctx.currentStep})` }
      return { status: 'fail', reason: `${describeError(e)} (step: ${ctx.currentStep})` }
    })
    outcome = await Promise.race([body, timeout])
    clearTimeout(timer)
    ctx.cancelled = true
    await ctx.closeAll()
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    emit({
      client: CLIENT,
      version: VERSION,
      scenario: name,
      status: outcome.status,
      reason: String(outcome.reason || '').split(/\s+/).join(' ').trim().slice(0, 1000),
      seconds: Math.round(seconds * 1000) / 1000,
      observed: outcome.observed || {},
    })
  }
}

// ---- member ----

// KafkaJS's RoundRobinAssigner under the protocol name every other library uses, `roundrobin`.
// Its member metadata and assignment are the standard ConsumerProtocol encodings (version 0,
// AssignerProtocol.MemberMetadata / MemberAssignment), so Java and librdkafka members can share
// a group with it.
const RoundRobin = config => ({ ...PartitionAssigners.roundRobin(config), name: 'roundrobin' })

async function member(args) {
  const kafka = newKafka(args.bootstrap)
  const consumer = kafka.consumer({
    groupId: args.group,
    partitionAssigners: [RoundRobin],
    allowAutoTopicCreation: false,
    maxWaitTimeInMs: 100,
    heartbeatInterval: 500,
    sessionTimeout: 10000,
    rebalanceTimeout: 30000,
  })
  let assigned = null
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    const parts = [...(payload.memberAssignment[args.topic] || [])].sort((a, b) => a - b)
    log(`[kafkajs member] joined: protocol ${payload.groupProtocol}, leader ${payload.isLeader}, partitions ${JSON.stringify(parts)}`)
    if (assigned === null || JSON.stringify(parts) !== JSON.stringify(assigned)) {
      assigned = parts
      emit({ event: 'assigned', partitions: parts })
    }
  })
  consumer.on(consumer.events.CRASH, ({ payload }) => log(`[kafkajs member] crash: ${describeError(payload.error)}`))

  let closing = null
  const close = async () => {
    if (!closing) {
      closing = (async () => {
        try {
          await consumer.disconnect()
          emit({ event: 'closed' })
          process.exitCode = 0
        } catch (e) {
          log(`[kafkajs member] close failed: ${describeError(e)}`)
          process.exitCode = 1
        }
        process.exit()
      })()
    }
    return closing
  }
  process.stdin.on('data', () => {})
  process.stdin.on('end', close)
  process.stdin.on('close', close)

  await consumer.connect()
  await consumer.subscribe({ topics: [args.topic], fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch, isRunning, isStale }) => {
      if (!batch.messages.length || !isRunning() || isStale()) return
      const after = String(Number(batch.lastOffset()) + 1)
      // Synchronous commit of the batch, then its records; a failed commit (a rebalance) throws,
      // nothing is printed, and the records are read again by whoever owns the partition next.
      await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: after }])
      for (const m of batch.messages) {
        emit({ event: 'record', partition: batch.partition, offset: Number(m.offset), value: str(m.value) })
      }
    },
  })
}

// ---- command line ----

function parseArgs(argv) {
  const [command, ...rest] = argv
  const args = { command }
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`)
    const eq = a.indexOf('=')
    if (eq > 0) args[a.slice(2, eq)] = a.slice(eq + 1)
    else {
      if (i + 1 >= rest.length) throw new Error(`${a} needs a value`)
      args[a.slice(2)] = rest[++i]
    }
  }
  const need = command === 'scenarios' ? ['bootstrap', 'run-id'] : command === 'member' ? ['bootstrap', 'group', 'topic'] : null
  if (!need) throw new Error('usage: kafkajs scenarios --bootstrap H:P --run-id RID [--only A,B] | member --bootstrap H:P --group G --topic T')
  for (const n of need) if (!args[n]) throw new Error(`${command}: --${n} is required`)
  return args
}

async function main() {
  let args
  try {
    args = parseArgs(process.argv.slice(2))
  } catch (e) {
    log(e.message)
    process.exit(2)
  }
  // A library promise rejected after its scenario gave up must not kill the run.
  process.on('unhandledRejection', e => log(`unhandled rejection: ${describeError(e)}`))
  if (args.command === 'scenarios') {
    await runScenarios(args)
    process.exit(0)
  } else {
    await member(args)
  }
}

main().catch(e => {
  log(`harness error: ${(e && e.stack) || e}`)
  process.exit(1)
})
