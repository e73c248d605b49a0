// The matrix's `franz-go` client: github.com/twmb/franz-go (kgo, and kadm for admin).
// See ../../../CONTRACT.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"sluice.dev/matrix/internal/mx"
)

const client = "franz-go"

// ---- clients ----

// newClient is a kgo client of the scenario's broker; it is closed when the scenario ends.
func newClient(ctx *mx.Ctx, opts ...kgo.Opt) *kgo.Client {
	base := []kgo.Opt{
		kgo.SeedBrokers(ctx.Bootstrap),
		kgo.ProducerLinger(5 * time.Millisecond),
		kgo.FetchMaxWait(250 * time.Millisecond),
		kgo.RetryTimeout(20 * time.Second),
		// kadm's Metadata and ListTopics answer from the client's metadata cache when it is
		// younger than this (default 5 s); the polls for leaders and deletions need it fresh.
		kgo.MetadataMinAge(100 * time.Millisecond),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	mx.Must(err, "new client")
	ctx.Cleanup(cl.Close)
	return cl
}

func newAdmin(ctx *mx.Ctx) *kadm.Client { return kadm.NewClient(newClient(ctx)) }

// errName is Kafka's name for the broker error inside a franz-go error.
func errName(err error) string {
	if err == nil {
		return "no error"
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Message
	}
	return err.Error()
}

// createTopic creates the topic (replication factor 1) and waits until every partition has a leader.
func createTopic(ctx *mx.Ctx, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	ctx.Step(fmt.Sprintf("create topic with %d partitions", partitions))
	_, err := adm.CreateTopic(ctx, partitions, 1, configs, topic)
	mx.Must(err, "create topic")
	waitLeaders(ctx, adm, topic, int(partitions))
}

// waitLeaders waits until the topic's metadata shows n partitions, each with a leader.
func waitLeaders(ctx *mx.Ctx, adm *kadm.Client, topic string, n int) {
	ctx.Poll("wait for partition leaders", 50*time.Millisecond, func() (bool, string) {
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		td, ok := md.Topics[topic]
		if !ok || td.Err != nil {
			return false, fmt.Sprintf("topic: %v", td.Err)
		}
		if len(td.Partitions) != n {
			return false, fmt.Sprintf("%d partitions", len(td.Partitions))
		}
		for _, p := range td.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false, fmt.Sprintf("partition %d leader %d err %v", p.Partition, p.Leader, p.Err)
			}
		}
		return true, ""
	})
}

// produce sends the records, waits for every ack and returns them (with partition and offset).
func produce(ctx *mx.Ctx, cl *kgo.Client, recs []*kgo.Record) []*kgo.Record {
	res := cl.ProduceSync(ctx, recs...)
	for i, r := range res {
		if r.Err != nil {
			mx.Fail("produce of record %d failed: %s (%v)", i, errName(r.Err), r.Err)
		}
	}
	return recs
}

func offsetsOf(recs []*kgo.Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.Offset
	}
	return out
}

func toRecord(r *kgo.Record) mx.Record {
	hs := make([]mx.Header, 0, len(r.Headers))
	for _, h := range r.Headers {
		hs = append(hs, mx.Header{Key: h.Key, Value: h.Value})
	}
	return mx.Record{Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Headers: hs}
}

// readPartition reads `count` records of one partition from its beginning (no group).
func readPartition(ctx *mx.Ctx, topic string, partition int32, count int) []mx.Record {
	cl := newClient(ctx, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {partition: kgo.NewOffset().AtStart()},
	}))
	defer cl.Close()
	var out []mx.Record
	for len(out) < count && ctx.Remaining() > time.Second {
		pctx, cancel := ctx.Sub(500 * time.Millisecond)
		fetches := cl.PollFetches(pctx)
		cancel()
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled) {
				mx.Fail("fetch %s[%d]: %s (%v)", fe.Topic, fe.Partition, errName(fe.Err), fe.Err)
			}
		}
		fetches.EachRecord(func(r *kgo.Record) { out = append(out, toRecord(r)) })
	}
	mx.Check(len(out) == count, "read %d records of %s[%d], expected %d", len(out), topic, partition, count)
	return out
}

// ---- scenarios ----

func metadata(ctx *mx.Ctx) *mx.Obs {
	adm := newAdmin(ctx)
	topic := ctx.Topic(1)
	createTopic(ctx, adm, topic, 3, nil)
	ctx.Step("metadata")
	md, err := adm.Metadata(ctx, topic)
	mx.Must(err, "metadata")
	host, portStr, _ := net.SplitHostPort(ctx.Bootstrap)
	port, _ := strconv.Atoi(portStr)
	listed := map[int32]bool{}
	atBootstrap := false
	for _, b := range md.Brokers {
		listed[b.NodeID] = true
		if b.Host == host && int(b.Port) == port {
			atBootstrap = true
		}
	}
	mx.Check(len(md.Brokers) >= 1, "no brokers listed")
	mx.Check(atBootstrap, "no broker at %s: %v", ctx.Bootstrap, md.Brokers)
	td := md.Topics[topic]
	mx.Check(td.Err == nil, "topic error %v", td.Err)
	mx.Check(len(td.Partitions) == 3, "%d partitions, expected 3", len(td.Partitions))
	replicas := []int{}
	for _, p := range td.Partitions.Sorted() {
		mx.Check(listed[p.Leader], "partition %d leader %d is not a listed broker", p.Partition, p.Leader)
		mx.Check(len(p.Replicas) == 1, "partition %d has replicas %v, expected 1", p.Partition, p.Replicas)
		replicas = append(replicas, len(p.Replicas))
	}
	var controllerListed any // null when the broker reports no controller
	if md.Controller >= 0 {
		controllerListed = listed[md.Controller]
		mx.Check(listed[md.Controller], "controller %d is not a listed broker", md.Controller)
	}
	return mx.NewObs().Set("brokers", len(md.Brokers)).Set("partitions", len(td.Partitions)).
		Set("replicas", replicas).Set("controller_listed", controllerListed)
}

func topicAdmin(ctx *mx.Ctx) *mx.Obs {
	adm := newAdmin(ctx)
	topic := ctx.Topic(1)
	obs := mx.NewObs()
	createTopic(ctx, adm, topic, 3, map[string]*string{"retention.ms": kadm.StringPtr("3600000")})

	ctx.Step("describe topic")
	md, err := adm.Metadata(ctx, topic)
	mx.Must(err, "describe topic")
	obs.Set("partitions", len(md.Topics[topic].Partitions))
	mx.Check(len(md.Topics[topic].Partitions) == 3, "describe: %d partitions, expected 3", len(md.Topics[topic].Partitions))

	configs := func() map[string]kadm.Config {
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		mx.Must(err, "describe configs")
		rc, err := rcs.On(topic, nil)
		mx.Must(err, "describe configs")
		mx.Must(rc.Err, "describe configs")
		out := map[string]kadm.Config{}
		for _, c := range rc.Configs {
			out[c.Key] = c
		}
		mx.Check(out["retention.ms"].Value != nil && out["cleanup.policy"].Value != nil,
			"retention.ms or cleanup.policy missing from the described configs")
		return out
	}
	ctx.Step("describe configs")
	cfg := configs()
	obs.Set("retention_ms", *cfg["retention.ms"].Value)
	mx.Check(cfg["retention.ms"].Source == kmsg.ConfigSourceDynamicTopicConfig,
		"retention.ms source %v, expected a topic override", cfg["retention.ms"].Source)
	obs.Set("cleanup_policy", *cfg["cleanup.policy"].Value)
	mx.Check(cfg["cleanup.policy"].Source != kmsg.ConfigSourceDynamicTopicConfig, "cleanup.policy is not a default")
	mx.Check(obs.Get("retention_ms") == "3600000", "retention.ms %v, expected 3600000", obs.Get("retention_ms"))
	mx.Check(obs.Get("cleanup_policy") == "delete", "cleanup.policy %v, expected delete", obs.Get("cleanup_policy"))

	ctx.Step("incremental alter configs")
	ars, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("7200000")}}, topic)
	mx.Must(err, "incremental alter configs")
	ar, err := ars.On(topic, nil)
	mx.Must(err, "incremental alter configs")
	mx.Must(ar.Err, "incremental alter configs")
	// Kafka applies an acknowledged config change to its brokers asynchronously: poll.
	altered := ""
	for ctx.Remaining() > 2*time.Second {
		if altered = *configs()["retention.ms"].Value; altered == "7200000" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	obs.Set("retention_ms_altered", altered)
	mx.Check(altered == "7200000", "retention.ms after alter %q, expected 7200000", altered)

	ctx.Step("create partitions")
	cps, err := adm.UpdatePartitions(ctx, 4, topic)
	mx.Must(err, "create partitions")
	mx.Must(cps.Error(), "create partitions")
	waitLeaders(ctx, adm, topic, 4)
	md, err = adm.Metadata(ctx, topic)
	mx.Must(err, "metadata")
	obs.Set("partitions_after_create_partitions", len(md.Topics[topic].Partitions))

	ctx.Step("create again")
	_, err = adm.CreateTopic(ctx, 3, 1, nil, topic)
	obs.Set("create_again", errName(err))
	mx.Check(obs.Get("create_again") == "TOPIC_ALREADY_EXISTS", "create again: %v (%v)", obs.Get("create_again"), err)

	ctx.Step("delete topic")
	_, err = adm.DeleteTopic(ctx, topic)
	mx.Must(err, "delete topic")
	ctx.Poll("deleted topic gone from metadata", 100*time.Millisecond, func() (bool, string) {
		tds, err := adm.ListTopics(ctx)
		if err != nil {
			return false, err.Error()
		}
		return !tds.Has(topic), "still listed"
	})

	ctx.Step("delete unknown topic")
	_, err = adm.DeleteTopic(ctx, topic+"-never")
	obs.Set("delete_unknown", errName(err))
	mx.Check(obs.Get("delete_unknown") == "UNKNOWN_TOPIC_OR_PARTITION", "delete unknown: %v (%v)", obs.Get("delete_unknown"), err)
	return obs
}

func compression(codec string) mx.Scenario {
	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	return func(ctx *mx.Ctx) *mx.Obs {
		topic := ctx.Topic(1)
		createTopic(ctx, newAdmin(ctx), topic, 1, nil)
		ctx.Step("produce with " + codec)
		cl := newClient(ctx, kgo.ProducerBatchCompression(codecs[codec]))
		recs := make([]*kgo.Record, 100)
		for i := range recs {
			k, v := mx.KV("k-", "v-", i)
			recs[i] = &kgo.Record{Topic: topic, Key: k, Value: v}
		}
		mx.CheckAckedOffsets(offsetsOf(produce(ctx, cl, recs)), 100)
		ctx.Step("consume")
		read := readPartition(ctx, topic, 0, 100)
		mx.CheckSequence(read, 100, func(i int) ([]byte, []byte) { return mx.KV("k-", "v-", i) })
		return mx.NewObs().Set("records", len(read)).Set("offsets", []int64{read[0].Offset, read[len(read)-1].Offset})
	}
}

func keyedPartitioning(ctx *mx.Ctx) *mx.Obs {
	topic := ctx.Topic(1)
	createTopic(ctx, newAdmin(ctx), topic, 6, nil)
	cl := newClient(ctx) // the default partitioner
	keys := mx.KeyedKeys()
	rounds := []map[string]int32{{}, {}}
	for rnd := range rounds {
		ctx.Step(fmt.Sprintf("produce round %d", rnd+1))
		recs := make([]*kgo.Record, len(keys))
		for i, k := range keys {
			recs[i] = &kgo.Record{Topic: topic, Key: []byte(k), Value: []byte(fmt.Sprintf("r%d-%s", rnd+1, k))}
		}
		for _, r := range produce(ctx, cl, recs) { // the produce promise's record has its partition
			rounds[rnd][string(r.Key)] = r.Partition
		}
	}
	ctx.Step("read every partition")
	found, read := mx.ReadKeyed(rounds[0], func(p int32, n int) []mx.Record { return readPartition(ctx, topic, p, n) })
	return mx.CheckKeyed(keys, rounds[0], rounds[1], found, read)
}

func headersNulls(ctx *mx.Ctx) *mx.Obs {
	topic := ctx.Topic(1)
	createTopic(ctx, newAdmin(ctx), topic, 1, nil)
	sent := mx.HeadersNullsSent(true) // kgo.RecordHeader's Value is a []byte: nil is sent as null
	ctx.Step("produce")
	recs := make([]*kgo.Record, len(sent))
	for i, s := range sent {
		r := &kgo.Record{Topic: topic, Key: s.Key, Value: s.Value}
		for _, h := range s.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		recs[i] = r
	}
	produce(ctx, newClient(ctx), recs)
	ctx.Step("consume")
	got := readPartition(ctx, topic, 0, len(sent))
	mx.CheckSameRecords(got, sent)
	return mx.NewObs().Set("records", mx.RecordsJSON(got))
}

func idempotent(ctx *mx.Ctx) *mx.Obs {
	topic := ctx.Topic(1)
	createTopic(ctx, newAdmin(ctx), topic, 1, nil)
	ctx.Step("idempotent produce")
	// franz-go's producer is idempotent unless DisableIdempotentWrite; acks=all is required for it.
	cl := newClient(ctx, kgo.RequiredAcks(kgo.AllISRAcks()))
	recs := make([]*kgo.Record, 200)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("i-%d", i))}
	}
	mx.CheckAckedOffsets(offsetsOf(produce(ctx, cl, recs)), 200)
	ctx.Step("consume")
	read := readPartition(ctx, topic, 0, 200)
	mx.CheckSequence(read, 200, func(i int) ([]byte, []byte) { return nil, []byte(fmt.Sprintf("i-%d", i)) })
	return mx.NewObs().Set("records", len(read)).Set("offsets", []int64{read[0].Offset, read[len(read)-1].Offset})
}

// readGroup polls a group consumer until it has `count` records.
func readGroup(ctx *mx.Ctx, cl *kgo.Client, count int) []*kgo.Record {
	var out []*kgo.Record
	for len(out) < count && ctx.Remaining() > time.Second {
		pctx, cancel := ctx.Sub(500 * time.Millisecond)
		fetches := cl.PollFetches(pctx)
		cancel()
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled) {
				mx.Fail("group fetch %s[%d]: %s (%v)", fe.Topic, fe.Partition, errName(fe.Err), fe.Err)
			}
		}
		out = append(out, fetches.Records()...)
	}
	mx.Check(len(out) == count, "group read %d records, expected %d", len(out), count)
	return out
}

func groupResume(ctx *mx.Ctx) *mx.Obs {
	topic, group := ctx.Topic(1), ctx.Group(1)
	adm := newAdmin(ctx)
	createTopic(ctx, adm, topic, 3, nil)
	prod := newClient(ctx, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	batch := func(prefix string, n int) []*kgo.Record {
		recs := make([]*kgo.Record, n)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: topic, Partition: int32(i % 3), Value: []byte(fmt.Sprintf("%s-%d", prefix, i))}
		}
		return recs
	}
	ctx.Step("produce 30")
	produce(ctx, prod, batch("a", 30))
	consumer := func() *kgo.Client {
		return newClient(ctx, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	}

	ctx.Step("consumer A")
	a := consumer()
	first := readGroup(ctx, a, 30)
	mx.Must(a.CommitUncommittedOffsets(ctx), "consumer A commit")
	a.Close() // leaves the group

	ctx.Step("produce 10 more")
	produce(ctx, prod, batch("b", 10))

	ctx.Step("consumer B")
	b := consumer()
	second := readGroup(ctx, b, 10)
	var values []string
	for _, r := range second {
		values = append(values, string(r.Value))
	}
	sort.Strings(values)
	want := []string{}
	for i := 0; i < 10; i++ {
		want = append(want, fmt.Sprintf("b-%d", i))
	}
	sort.Strings(want)
	mx.Check(fmt.Sprint(values) == fmt.Sprint(want), "consumer B read %v, expected %v", values, want)
	mx.Must(b.CommitUncommittedOffsets(ctx), "consumer B commit")
	b.Close()

	ctx.Step("fetch committed offsets")
	ors, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	mx.Must(err, "fetch offsets")
	committed := make([]int64, 3)
	for p := int32(0); p < 3; p++ {
		o, ok := ors.Lookup(topic, p)
		mx.Check(ok, "no committed offset for partition %d", p)
		mx.Must(o.Err, fmt.Sprintf("committed offset of partition %d", p))
		committed[p] = o.At
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
	recs := make([]*kgo.Record, 3)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("t-%d", i)), Timestamp: time.UnixMilli(t0 + 1000*int64(i))}
	}
	produce(ctx, newClient(ctx), recs)

	ctx.Step("list offsets")
	cl := newClient(ctx)
	adm = kadm.NewClient(cl)
	one := func(what string, lo kadm.ListedOffsets, err error) int64 {
		mx.Must(err, what)
		o, ok := lo.Lookup(topic, 0)
		mx.Check(ok, "%s: no answer for partition 0", what)
		mx.Must(o.Err, what)
		return o.Offset
	}
	earliest, err := adm.ListStartOffsets(ctx, topic)
	obs := mx.NewObs().Set("earliest", one("list start offsets", earliest, err))
	latest, err := adm.ListEndOffsets(ctx, topic)
	obs.Set("latest", one("list end offsets", latest, err))
	// kadm.ListOffsetsAfterMilli answers "no record at or after this time" with the end offset
	// (a second request), so the by-time look-ups use the ListOffsets request itself (kmsg, sent
	// to the partition's leader by the kgo client), whose -1 is the broker's own answer.
	forTime := func(ts int64) int64 {
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = 0
		rp.Timestamp = ts
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		mx.Must(err, "list offsets by time")
		mx.Check(len(resp.Topics) == 1 && len(resp.Topics[0].Partitions) == 1, "list offsets by time: answer for %d topics", len(resp.Topics))
		p := resp.Topics[0].Partitions[0]
		mx.Must(kerr.ErrorForCode(p.ErrorCode), "list offsets by time")
		if p.Offset < 0 {
			return -1
		}
		return p.Offset
	}
	obs.Set("t0+500", forTime(t0+500)).Set("t0+2000", forTime(t0+2000)).Set("after_last", forTime(t0+10000))
	mx.CheckObs(obs, mx.TimestampWant())
	return obs
}

func largeRecords(ctx *mx.Ctx) *mx.Obs {
	topic := ctx.Topic(1)
	createTopic(ctx, newAdmin(ctx), topic, 1, map[string]*string{"max.message.bytes": kadm.StringPtr("200000")})
	// Client-side limits raised so that the broker decides; no compression; no retries.
	cl := newClient(ctx, kgo.ProducerBatchMaxBytes(1048576), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordRetries(0))
	send := func(v []byte) error {
		return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: v}).FirstErr()
	}
	return mx.LargeRecords(ctx, send, errName, func(n int) []mx.Record { return readPartition(ctx, topic, 0, n) })
}

// ---- member ----

// member is one consumer-group member (roundrobin) for the runner's mixed_group scenario.
func member(a mx.MemberArgs) error {
	stdin := mx.StdinClosed()
	var mu sync.Mutex
	assigned := map[int32]bool{}
	last := "" // the last set printed
	report := func(force bool) {
		ps := []int32{}
		for p := range assigned {
			ps = append(ps, p)
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		if s := fmt.Sprint(ps); force || s != last {
			last = s
			mx.Emit(map[string]any{"event": "assigned", "partitions": ps})
		}
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(a.Bootstrap),
		kgo.ConsumerGroup(a.Group),
		kgo.ConsumeTopics(a.Topic),
		kgo.Balancers(kgo.RoundRobinBalancer()),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(250*time.Millisecond),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			mu.Lock()
			defer mu.Unlock()
			for _, p := range m[a.Topic] {
				assigned[p] = true
			}
			report(true) // every completed assignment, even when nothing new was assigned
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			mu.Lock()
			defer mu.Unlock()
			for _, p := range m[a.Topic] {
				delete(assigned, p)
			}
			report(false)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			mu.Lock()
			defer mu.Unlock()
			for _, p := range m[a.Topic] {
				delete(assigned, p)
			}
			report(false)
		}),
	)
	if err != nil {
		return err
	}
	for {
		select {
		case <-stdin:
			cl.Close() // leaves the group (revoking its partitions first)
			mx.Emit(map[string]any{"event": "closed"})
			return nil
		default:
		}
		pctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fetches := cl.PollRecords(pctx, 500)
		cancel()
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				mx.Log("member: fetch error %s[%d]: %v", t, p, err)
			}
		})
		if recs := fetches.Records(); len(recs) > 0 {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := cl.CommitRecords(cctx, recs...); err != nil {
				mx.Log("member: commit failed: %v", err) // the records are printed anyway
			}
			cancel()
			for _, r := range recs {
				mx.Emit(map[string]any{"event": "record", "partition": r.Partition, "offset": r.Offset, "value": string(r.Value)})
			}
		}
		cl.AllowRebalance()
	}
}

func main() {
	version := fmt.Sprintf("%s (kadm %s)", mx.ModuleVersion("github.com/twmb/franz-go"), mx.ModuleVersion("github.com/twmb/franz-go/pkg/kadm"))
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
