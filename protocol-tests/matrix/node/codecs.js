'use strict'
// Compression codecs for KafkaJS, which has only gzip built in (see ../CONTRACT.md, scenario 3).
//
//   snappy: kafkajs-snappy (pure JS, snappyjs)
//   lz4:    @2l/kafkajs-lz4 (lz4-napi: prebuilt Node-API binaries from the registry, no compile
//           step; LZ4 frame format with independent blocks, as Kafka expects). The older
//           kafkajs-lz4 needs a node-gyp build of the `lz4` package.
//   zstd:   zstd-codec (zstd compiled to WebAssembly, no native build), wrapped here. The KafkaJS
//           project's own @kafkajs/zstd depends on cppzst 2.0.6, whose node-gyp build fails
//           against Node 20's V8 headers (they need C++17; cppzst compiles as C++14).
//
// Each codec is wrapped so that a scenario can check that its producer compressed and its
// consumer decompressed with it (counts per codec).

const { CompressionTypes, CompressionCodecs } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const LZ4Codec = require('@2l/kafkajs-lz4')
const { ZstdCodec } = require('zstd-codec')

const usage = {} // codec name -> { compress: n, decompress: n }

let zstdReady = null
function zstd() {
  if (!zstdReady) zstdReady = new Promise(resolve => ZstdCodec.run(z => resolve(z)))
  return zstdReady
}

const ZstdKafkaCodec = () => ({
  async compress(encoder) {
    const z = await zstd()
    // One-shot ZSTD_compress (level 3, zstd's default); the frame carries its content size.
    const out = new z.Simple().compress(encoder.buffer, 3)
    if (!out) throw new Error('zstd compression failed')
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength)
  },
  async decompress(buffer) {
    const z = await zstd()
    // Streaming decompression: accepts frames without a content size (Java's ZstdOutputStream).
    const out = new z.Streaming().decompress(buffer)
    if (!out) throw new Error('zstd decompression failed')
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength)
  },
})

function counted(name, codecFactory) {
  usage[name] = { compress: 0, decompress: 0 }
  return () => {
    const codec = codecFactory()
    return {
      async compress(encoder) {
        const out = await codec.compress(encoder)
        usage[name].compress += 1
        return out
      },
      async decompress(buffer) {
        const out = await codec.decompress(buffer)
        usage[name].decompress += 1
        return out
      },
    }
  }
}

let registered = false
function registerCodecs() {
  if (registered) return
  registered = true
  CompressionCodecs[CompressionTypes.GZIP] = counted('gzip', CompressionCodecs[CompressionTypes.GZIP])
  CompressionCodecs[CompressionTypes.Snappy] = counted('snappy', SnappyCodec)
  CompressionCodecs[CompressionTypes.LZ4] = counted('lz4', new LZ4Codec().codec)
  CompressionCodecs[CompressionTypes.ZSTD] = counted('zstd', ZstdKafkaCodec)
}

module.exports = { registerCodecs, usage }
