// The matrix's `sarama` client: github.com/IBM/sarama (ClusterAdmin for admin).
// See ../../../CONTRACT.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"sluice.dev/matrix/internal/mx"
)

const client = "sarama"

// ---- clients ----

// config is the base configuration: a recent Kafka version that Sarama knows, results returned.
func config() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_0_0_0
	cfg.ClientID = "mx-sarama"
	cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
	cfg.Metadata.Retry.Max = 10
	cfg.Admin.Retry.Backoff = 50 * time.Millisecond
	cfg.Admin.Timeout = 20 * time.Second
	cfg.Producer.Return.Successes = true // needed by the SyncProducer
	cfg.Producer.Return.Errors = true
	cfg.Producer.Retry.Backoff = 50 * time.Millisecond
	cfg.Producer.Flush.Frequency = 5 * time.Millisecond
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	cfg.Consumer.Retry.Backoff = 50 * time.Millisecond
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	return cfg
}

func addrs(ctx *mx.Ctx) []string { return []string{ctx.Bootstrap} }

func newAdmin(ctx *mx.Ctx) sarama.ClusterAdmin {
	ctx.Step("connect the cluster admin")
	adm, err := sarama.NewClusterAdmin(addrs(ctx), config())
	mx.Must(err, "new cluster admin")
	ctx.Cleanup(func() { adm.Close() })
	return adm
}

func newProducer(ctx *mx.Ctx, tune func(*sarama.Config)) sarama.SyncProducer {
	cfg := config()
	if tune != nil {
		tune(cfg)
	}
	p, err := sarama.NewSyncProducer(addrs(ctx), cfg)
	mx.Must(err, "new producer")
	ctx.Cleanup(func() { p.Close() })
	return p
}

// errName is Kafka's name for the broker error inside a Sarama error (KError is the code).
func errName(err error) string {
	if err == nil {
		return "no error"
	}
	var pes sarama.ProducerErrors
	if errors.As(err, &pes) && len(pes) > 0 {
		err = pes[0].Err
	}
	var pe *sarama.ProducerError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var dce *sarama.DescribeConfigError
	if errors.As(err, &dce) {
		return mx.ErrorName(int16(dce.Err))
	}
	var ke sarama.KError
	if errors.As(err, &ke) {
		return mx.ErrorName(int16(ke))
	}
	return err.Error()
}

// must fails the scenario on an error (Sarama's ErrNoError, code 0, is not one).
func must(err error, what string) {
	if err != nil && !errors.Is(err, sarama.ErrNoError) {
		mx.Fail("%s: %s (%v)", what, errName(err), err)
	}
}

func strp(s string) *string { return &s }

// enc is a Sarama Encoder of b; nil (no encoder) for a null key or value.
func enc(b []byte) sarama.Encoder {
	if b == nil {
		return nil
	}
	return sarama.ByteEncoder(b)
}

// createTopic creates the topic (replication factor 1) and waits until every partition has a leader.
func createTopic(ctx *mx.Ctx, adm sarama.ClusterAdmin, topic string, partitions int32, configs map[string]*string) {
	ctx.Step(fmt.Sprintf("create topic with %d partitions", partitions))
	must(adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: configs}, false), "create topic")
	waitLeaders(ctx, adm, topic, int(partitions))
}

// waitLeaders waits until the topic's metadata shows n partitions, each with a leader.
func waitLeaders(ctx *mx.Ctx, adm sarama.ClusterAdmin, topic string, n int) {
	ctx.Poll("wait for partition leaders", 50*time.Millisecond, func() (bool, string) {
		mds, err := adm.DescribeTopics([]string{topic})
		if err != nil {
			return false, err.Error()
		}
		if len(mds) != 1 || mds[0].Err != sarama.ErrNoError {
			return false, fmt.Sprintf("topic metadata %v", mds)
		}
		if len(mds[0].Partitions) != n {
			return false, fmt.Sprintf("%d partitions", len(mds[0].Partitions))
		}
		for _, p := range mds[0].Partitions {
			if p.Err != sarama.ErrNoError || p.Leader < 0 {
				return false, fmt.Sprintf("partition %d leader %d err %v", p.ID, p.Leader, p.Err)
			}
		}
		return true, ""
	})
}

// send sends the messages, waits for every ack (each message then has its partition and offset).
func send(p sarama.SyncProducer, msgs []*sarama.ProducerMessage) {
	if err := p.SendMessages(msgs); err != nil {
		var pes sarama.ProducerErrors
		if errors.As(err, &pes) && len(pes) > 0 {
			mx.Fail("produce failed for %d records, first: %s (%v)", len(pes), errName(pes[0].Err), pes[0].Err)
		}
		mx.Fail("produce failed: %s (%v)", errName(err), err)
	}
}

func offsetsOf(msgs []*sarama.ProducerMessage) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Offset
	}
	return out
}

func toRecord(m *sarama.ConsumerMessage) mx.Record {
	hs := make([]mx.Header, 0, len(m.Headers))
	for _, h := range m.Headers {
		hs = append(hs, mx.Header{Key: string(h.Key), Value: h.Value})
	}
	return mx.Record{Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Headers: hs}
}

// readPartition reads `count` records of one partition from its beginning (no group).
func readPartition(ctx *mx.Ctx, topic string, partition int32, count int) []mx.Record {
	c, err := sarama.NewConsumer(addrs(ctx), config())
	must(err, "new consumer")
	done := ctx.Cleanup(func() { c.Close() })
	defer done()
	pc, err := c.ConsumePartition(topic, partition, sarama.OffsetOldest)
	must(err, "consume partition")
	defer pc.Close()
	var out []mx.Record
	timeout := time.After(ctx.Remaining() - time.Second)
loop:
	for len(out) < count {
		select {
		case m := <-pc.Messages():
			out = append(out, toRecord(m))
		case e := <-pc.Errors():
			mx.Fail("consume %s[%d]: %s (%v)", topic, partition, errName(e.Err), e.Err)
		case <-timeout:
			break loop
		}
	}
	mx.Check(len(out) == count, "read %d records of %s[%d], expected %d", len(out), topic, partition, count)
	return out
}

// ---- scenarios ----

func metadata(ctx *mx.Ctx) *mx.Obs {
	adm := newAdmin(ctx)
	topic := ctx.Topic(1)
	createTopic(ctx, adm, topic, 3, nil)
	ctx.Step("describe cluster")
	brokers, controller, err := adm.DescribeCluster()
	must(err, "describe cluster")
	listed := map[int32]bool{}
	atBootstrap := false
	var seen []string
	for _, b := range brokers {
		listed[b.ID()] = true
		seen = append(seen, fmt.Sprintf("%d@%s", b.ID(), b.Addr()))
		host, port, _ := net.SplitHostPort(b.Addr())
		if net.JoinHostPort(host, port) == ctx.Bootstrap {
			atBootstrap = true
		}
	}
	mx.Check(len(brokers) >= 1, "no brokers listed")
	mx.Check(atBootstrap, "no broker at %s: %v", ctx.Bootstrap, seen)
	ctx.Step("describe topic")
	mds, err := adm.DescribeTopics([]string{topic})
	must(err, "describe topics")
	mx.Check(len(mds) == 1 && mds[0].Err == sarama.ErrNoError, "topic metadata %v", mds)
	parts := append([]*sarama.PartitionMetadata(nil), mds[0].Partitions...)
	sort.Slice(parts, func(i, j int) bool { return parts[i].ID < parts[j].ID })
	mx.Check(len(parts) == 3, "%d partitions, expected 3", len(parts))
	replicas := []int{}
	for _, p := range parts {
		mx.Check(listed[p.Leader], "partition %d leader %d is not a listed broker", p.ID, p.Leader)
		mx.Check(len(p.Replicas) == 1, "partition %d has replicas %v, expected 1", p.ID, p.Replicas)
		replicas = append(replicas, len(p.Replicas))
	}
	var controllerListed any // null when the broker reports no controller
	if controller >= 0 {
		controllerListed = listed[controller]
		mx.Check(listed[controller], "controller %d is not a listed broker", controller)
	}
	return mx.NewObs().Set("brokers", len(brokers)).Set("partitions", len(parts)).
		Set("replicas", replicas).Set("controller_listed", controllerListed)
}

func topicAdmin(ctx *mx.Ctx) *mx.Obs {
	adm := newAdmin(ctx)
	topic := ctx.Topic(1)
	obs := mx.NewObs()
	createTopic(ctx, adm, topic, 3, map[string]*string{"retention.ms": strp("3600000")})

	ctx.Step("describe topic")
	mds, err := adm.DescribeTopics([]string{topic})
	must(err, "describe topics")
	mx.Check(len(mds) == 1, "describe: %d topics", len(mds))
	obs.Set("partitions", len(mds[0].Partitions))
	mx.Check(len(mds[0].Partitions) == 3, "describe: %d partitions, expected 3", len(mds[0].Partitions))

	configs := func() map[string]sarama.ConfigEntry {
		entries, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
		must(err, "describe configs")
		out := map[string]sarama.ConfigEntry{}
		for _, e := range entries {
			out[e.Name] = e
		}
		return out
	}
	ctx.Step("describe configs")
	cfg := configs()
	ret, okR := cfg["retention.ms"]
	cp, okC := cfg["cleanup.policy"]
	mx.Check(okR && okC, "retention.ms or cleanup.policy missing from the described configs")
	obs.Set("retention_ms", ret.Value)
	mx.Check(ret.Source == sarama.SourceTopic, "retention.ms source %v, expected a topic override", ret.Source)
	obs.Set("cleanup_policy", cp.Value)
	mx.Check(cp.Source != sarama.SourceTopic, "cleanup.policy is not a default")
	mx.Check(ret.Value == "3600000", "retention.ms %q, expected 3600000", ret.Value)
	mx.Check(cp.Value == "delete", "cleanup.policy %q, expected delete", cp.Value)

	ctx.Step("incremental alter configs")
	must(adm.IncrementalAlterConfig(sarama.TopicResource, topic, map[string]sarama.IncrementalAlterConfigsEntry{
		"retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: strp("7200000")},
	}, false), "incremental alter configs")
	// Kafka applies an acknowledged config change to its brokers asynchronously: poll.
	altered := ""
	for ctx.Remaining() > 2*time.Second {
		if altered = configs()["retention.ms"].Value; altered == "7200000" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	obs.Set("retention_ms_altered", altered)
	mx.Check(altered == "7200000", "retention.ms after alter %q, expected 7200000", altered)

	ctx.Step("create partitions")
	must(adm.CreatePartitions(topic, 4, nil, false), "create partitions")
	waitLeaders(ctx, adm, topic, 4)
	mds, err = adm.DescribeTopics([]string{topic})
	must(err, "describe topics")
	obs.Set("partitions_after_create_partitions", len(mds[0].Partitions))

	ctx.Step("create again")
	err = adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false)
	obs.Set("create_again", errName(err))
	mx.Check(obs.Get("create_again") == "TOPIC_ALREADY_EXISTS", "create again: %v (%v)", obs.Get("create_again"), err)

	ctx.Step("delete topic")
	must(adm.DeleteTopic(topic), "delete topic")
	ctx.Poll("deleted topic gone from metadata", 100*time.Millisecond, func() (bool, string) {
		topics, err := adm.ListTopics()
		if err != nil {
			return false, err.Error()
		}
		_, listed := topics[topic]
		return !listed, "still listed"
	})

	ctx.Step("delete unknown topic")
	err = adm.DeleteTopic(topic + "-never")
	obs.Set("delete_unknown", errName(err))
	mx.Check(obs.Get("delete_unknown") == "UNKNOWN_TOPIC_OR_PARTITION", "delete unknown: %v (%v)", obs.Get("delete_unknown"), err)
	return obs
}

func compression(codec string) mx.Scenario {
	codecs := map[string]sarama.CompressionCodec{
		"none": sarama.CompressionNone, "gzip": sarama.CompressionGZIP, "snappy": sarama.CompressionSnappy,
		"lz4": sarama.CompressionLZ4, "zstd": sarama.CompressionZSTD,
	}
	return func(ctx *mx.Ctx) *mx.Obs {
		topic := ctx.Topic(1)
		createTopic(ctx, newAdmin(ctx), topic, 1, nil)
		ctx.Step("produce with " + codec)
		p := newProducer(ctx, func(c *sarama.Config) { c.Producer.Compression = codecs[codec] })
		msgs := make([]*sarama.ProducerMessage, 100)
		for i := range msgs {
			k, v := mx.KV("k-", "v-", i)
			msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: enc(k), Value: enc(v)}
		}
		send(p, msgs)
		mx.CheckAckedOffsets(offsetsOf(msgs), 100)
		ctx.Step("consume")
		read := readPartition(ctx, topic, 0, 100)
		mx.CheckSequence(read, 100, func(i int) ([]byte, []byte) { return mx.KV("k-", "v-", i) })
		return mx.NewObs().Set("records", len(read)).Set("offsets", []int64{read[0].Offset, read[len(read)-1].Offset})
	}
}

func keyedPartitioning(ctx *mx.Ctx) *mx.Obs {
	topic := ctx.Topic(1)
	createTopic(ctx, newAdmin(ctx), topic, 6, nil)
	p := newProducer(ctx, nil) // the default (hash) partitioner
	keys := mx.KeyedKeys()
	rounds := []map[string]int32{{}, {}}
	for rnd := range rounds {
		ctx.Step(fmt.Sprintf("produce round %d", rnd+1))
		msgs := make([]*sarama.ProducerMessage, len(keys))
		for i, k := range keys {
			msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(fmt.Sprintf("r%d-%s", rnd+1, k))}
		}
		send(p, msgs)
		for i, m := range msgs { // the acknowledged message carries its partition
			rounds[rnd][keys[i]] = m.Partition
		}
	}
	ctx.Step("read every partition")
	found, read := mx.ReadKeyed(rounds[0], func(p int32, n int) []mx.Record { return readPartition(ctx, topic, p, n) })
	return mx.CheckKeyed(keys, rounds[0], rounds[1], found, read)
}

func headersNulls(ctx *mx.Ctx) *mx.Obs {
	topic := ctx.Topic(1)
	createTopic(ctx, newAdmin(ctx), topic, 1, nil)
	sent := mx.HeadersNullsSent(true) // sarama.RecordHeader's Value is a []byte: nil is sent as null
	ctx.Step("produce")
	msgs := make([]*sarama.ProducerMessage, len(sent))
	for i, s := range sent {
		m := &sarama.ProducerMessage{Topic: topic, Key: enc(s.Key), Value: enc(s.Value)}
		for _, h := range s.Headers {
			m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
		}
		msgs[i] = m
	}
	send(newProducer(ctx, nil), msgs)
	ctx.Step("consume")
	got := readPartition(ctx, topic, 0, len(sent))
	mx.CheckSameRecords(got, sent)
	return mx.NewObs().Set("records", mx.RecordsJSON(got))
}

func idempotent(ctx *mx.Ctx) *mx.Obs {
	topic := ctx.Topic(1)
	createTopic(ctx, newAdmin(ctx), topic, 1, nil)
	ctx.Step("idempotent produce")
	p := newProducer(ctx, func(c *sarama.Config) {
		c.Producer.Idempotent = true // needs Version >= V0_11, acks=all and one request in flight
		c.Producer.RequiredAcks = sarama.WaitForAll
		c.Net.MaxOpenRequests = 1
	})
	msgs := make([]*sarama.ProducerMessage, 200)
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf("i-%d", i))}
	}
	send(p, msgs)
	mx.CheckAckedOffsets(offsetsOf(msgs), 200)
	ctx.Step("consume")
	read := readPartition(ctx, topic, 0, 200)
	mx.CheckSequence(read, 200, func(i int) ([]byte, []byte) { return nil, []byte(fmt.Sprintf("i-%d", i)) })
	return mx.NewObs().Set("records", len(read)).Set("offsets", []int64{read[0].Offset, read[len(read)-1].Offset})
}

// groupReader is a ConsumerGroupHandler that marks each message and hands it over.
type groupReader struct {
	out     chan *sarama.ConsumerMessage
	mu      sync.Mutex
	session sarama.ConsumerGroupSession
}

func (g *groupReader) Setup(s sarama.ConsumerGroupSession) error {
	g.mu.Lock()
	g.session = s
	g.mu.Unlock()
	return nil
}

func (g *groupReader) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (g *groupReader) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			s.MarkMessage(m, "")
			select {
			case g.out <- m:
			case <-s.Context().Done():
				return nil
			}
		case <-s.Context().Done():
			return nil
		}
	}
}

// readGroup joins the group, reads `count` records, commits them and leaves the group.
func readGroup(ctx *mx.Ctx, topic, group string, count int) []*sarama.ConsumerMessage {
	cg, err := sarama.NewConsumerGroup(addrs(ctx), group, config())
	must(err, "new consumer group")
	closeGroup := ctx.Cleanup(func() { cg.Close() })
	go func() {
		for e := range cg.Errors() {
			mx.Log("[%s %s] consumer group error: %v", ctx.Client, ctx.Scenario, e)
		}
	}()
	h := &groupReader{out: make(chan *sarama.ConsumerMessage, 1000)}
	gctx, cancel := context.WithCancel(ctx)
	consumed := make(chan error, 1)
	go func() {
		var err error
		for gctx.Err() == nil {
			if err = cg.Consume(gctx, []string{topic}, h); err != nil {
				break
			}
		}
		consumed <- err
	}()
	var out []*sarama.ConsumerMessage
	timeout := time.After(ctx.Remaining() - 2*time.Second)
loop:
	for len(out) < count {
		select {
		case m := <-h.out:
			out = append(out, m)
		case err := <-consumed:
			mx.Fail("consumer group stopped: %s (%v)", errName(err), err)
		case <-timeout:
			break loop
		}
	}
	mx.Check(len(out) == count, "group read %d records, expected %d", len(out), count)
	h.mu.Lock()
	h.session.Commit() // synchronous commit of the marked offsets
	h.mu.Unlock()
	cancel()
	<-consumed
	closeGroup() // leaves the group
	return out
}

func groupResume(ctx *mx.Ctx) *mx.Obs {
	topic, group := ctx.Topic(1), ctx.Group(1)
	adm := newAdmin(ctx)
	createTopic(ctx, adm, topic, 3, nil)
	p := newProducer(ctx, func(c *sarama.Config) { c.Producer.Partitioner = sarama.NewManualPartitioner })
	batch := func(prefix string, n int) []*sarama.ProducerMessage {
		msgs := make([]*sarama.ProducerMessage, n)
		for i := range msgs {
			msgs[i] = &sarama.ProducerMessage{Topic: topic, Partition: int32(i % 3), Value: sarama.StringEncoder(fmt.Sprintf("%s-%d", prefix, i))}
		}
		return msgs
	}
	ctx.Step("produce 30")
	send(p, batch("a", 30))
	ctx.Step("consumer A")
	first := readGroup(ctx, topic, group, 30)
	ctx.Step("produce 10 more")
	send(p, batch("b", 10))
	ctx.Step("consumer B")
	second := readGroup(ctx, topic, group, 10)
	var values, want []string
	for _, m := range second {
		values = append(values, string(m.Value))
	}
	for i := 0; i < 10; i++ {
		want = append(want, fmt.Sprintf("b-%d", i))
	}
	sort.Strings(values)
	sort.Strings(want)
	mx.Check(fmt.Sprint(values) == fmt.Sprint(want), "consumer B read %v, expected %v", values, want)

	ctx.Step("fetch committed offsets")
	resp, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2}})
	must(err, "list consumer group offsets")
	committed := make([]int64, 3)
	for part := int32(0); part < 3; part++ {
		b := resp.GetBlock(topic, part)
		mx.Check(b != nil, "no committed offset for partition %d", part)
		if b.Err != sarama.ErrNoError {
			mx.Fail("committed offset of partition %d: %s", part, mx.ErrorName(int16(b.Err)))
		}
		committed[part] = b.Offset
	}
	mx.Check(fmt.Sprint(committed) == "[14 13 13]", "committed %v, expected [14 13 13]", committed)
	return mx.NewObs().Set("first", len(first)).Set("second", len(second)).Set("committed", committed)
}

func timestampOffsets(ctx *mx.Ctx) *mx.Obs {
	topic := ctx.Topic(1)
	adm := newAdmin(ctx)
	createTopic(ctx, adm, topic, 1, nil)
	t0 := (time.Now().Unix() - 60) * 1000
	ctx.Step("produce with timestamps")
	msgs := make([]*sarama.ProducerMessage, 3)
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf("t-%d", i)), Timestamp: time.UnixMilli(t0 + 1000*int64(i))}
	}
	send(newProducer(ctx, nil), msgs)

	ctx.Step("list offsets")
	list := func(query int64) int64 {
		res, err := adm.ListOffsets(map[string]map[int32]int64{topic: {0: query}}, nil)
		must(err, "list offsets")
		r := res[topic][0]
		mx.Check(r != nil, "list offsets %d: no answer for partition 0", query)
		must(r.Err, fmt.Sprintf("list offsets %d", query))
		if r.Offset < 0 {
			return -1
		}
		return r.Offset
	}
	obs := mx.NewObs().Set("earliest", list(sarama.OffsetOldest)).Set("latest", list(sarama.OffsetNewest)).
		Set("t0+500", list(t0+500)).Set("t0+2000", list(t0+2000)).Set("after_last", list(t0+10000))
	mx.CheckObs(obs, mx.TimestampWant())
	return obs
}

func largeRecords(ctx *mx.Ctx) *mx.Obs {
	topic := ctx.Topic(1)
	createTopic(ctx, newAdmin(ctx), topic, 1, map[string]*string{"max.message.bytes": strp("200000")})
	// Client-side limit raised so that the broker decides; no compression; no retries.
	p := newProducer(ctx, func(c *sarama.Config) {
		c.Producer.MaxMessageBytes = 1048576
		c.Producer.Compression = sarama.CompressionNone
		c.Producer.Retry.Max = 0
	})
	send := func(v []byte) error {
		_, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(v)})
		return err
	}
	return mx.LargeRecords(ctx, send, errName, func(n int) []mx.Record { return readPartition(ctx, topic, 0, n) })
}

// ---- member ----

// memberHandler prints the assignment of each session and each record after committing it.
type memberHandler struct {
	topic string
	mu    sync.Mutex
	last  string
}

func (h *memberHandler) report(ps []int32, force bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ps = append([]int32{}, ps...)
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	if s := fmt.Sprint(ps); force || s != h.last {
		h.last = s
		mx.Emit(map[string]any{"event": "assigned", "partitions": ps})
	}
}

func (h *memberHandler) Setup(s sarama.ConsumerGroupSession) error {
	h.report(s.Claims()[h.topic], true)
	return nil
}

func (h *memberHandler) Cleanup(sarama.ConsumerGroupSession) error {
	h.report(nil, false) // the session's partitions are revoked
	return nil
}

func (h *memberHandler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		var batch []*sarama.ConsumerMessage
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			batch = append(batch, m)
		case <-s.Context().Done():
			return nil
		}
	drain: // the rest of what was fetched: one poll batch
		for len(batch) < 500 {
			select {
			case m, ok := <-claim.Messages():
				if !ok {
					break drain
				}
				batch = append(batch, m)
			default:
				break drain
			}
		}
		s.MarkMessage(batch[len(batch)-1], "")
		s.Commit() // synchronous; a failure is reported on the group's Errors channel
		for _, m := range batch {
			mx.Emit(map[string]any{"event": "record", "partition": m.Partition, "offset": m.Offset, "value": string(m.Value)})
		}
	}
}

// member is one consumer-group member (roundrobin) for the runner's mixed_group scenario.
func member(a mx.MemberArgs) error {
	stdin := mx.StdinClosed()
	cfg := config()
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin()}
	cg, err := sarama.NewConsumerGroup([]string{a.Bootstrap}, a.Group, cfg)
	if err != nil {
		return err
	}
	go func() {
		for e := range cg.Errors() {
			mx.Log("member: consumer group error: %v", e)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-stdin; cancel() }()
	h := &memberHandler{topic: a.Topic}
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, []string{a.Topic}, h); err != nil && ctx.Err() == nil {
			mx.Log("member: consume: %v", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := cg.Close(); err != nil { // leaves the group
		mx.Log("member: close: %v", err)
	}
	mx.Emit(map[string]any{"event": "closed"})
	return nil
}

func main() {
	version := mx.ModuleVersion("github.com/IBM/sarama")
	table := map[string]mx.Scenario{
		"metadata":           metadata,
		"topic_admin":        topicAdmin,
		"keyed_partitioning": keyedPartitioning,
		"headers_nulls":      headersNulls,
		"idempotent":         idempotent,
		"group_resume":       groupResume,
		"timestamp_offsets":  timestampOffsets,
		"large_records":      largeRecords,
	}
	for _, c := range mx.Codecs {
		table["compression_"+c] = compression(c)
	}
	mx.Main(client, version, table, member)
}
