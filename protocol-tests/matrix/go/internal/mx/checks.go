package mx

import (
	"bytes"
	"fmt"
	"sort"
)

// Header is one record header as sent or read back; a nil Value is a null value.
type Header struct {
	Key   string
	Value []byte
}

// Record is a record as sent or read back, whatever the library; nil Key/Value are nulls.
type Record struct {
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
}

// Str is a nullable string for JSON: nil stays null.
func Str(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// KV is the i-th key and value of the compression and similar scenarios: k-i, v-i.
func KV(prefixK, prefixV string, i int) ([]byte, []byte) {
	return []byte(fmt.Sprintf("%s%d", prefixK, i)), []byte(fmt.Sprintf("%s%d", prefixV, i))
}

// CheckSequence checks that read is exactly n records at offsets 0..n-1 whose key and value are
// want(i) (a nil want key means the key must be null).
func CheckSequence(read []Record, n int, want func(i int) (key, value []byte)) {
	Check(len(read) == n, "read %d records, expected %d", len(read), n)
	for i, r := range read {
		k, v := want(i)
		Check(r.Offset == int64(i), "record %d is at offset %d, expected %d", i, r.Offset, i)
		Check(sameBytes(r.Key, k), "record at offset %d has key %v, expected %v", r.Offset, Str(r.Key), Str(k))
		Check(sameBytes(r.Value, v), "record at offset %d has value %.40q, expected %.40q", r.Offset, r.Value, v)
	}
}

// CheckAckedOffsets checks that the acknowledged offsets are 0..n-1 in order.
func CheckAckedOffsets(acked []int64, n int) {
	Check(len(acked) == n, "%d records acknowledged, expected %d", len(acked), n)
	for i, o := range acked {
		Check(o == int64(i), "record %d acknowledged at offset %d, expected %d", i, o, i)
	}
}

// sameBytes is true when a and b are both null or both non-null with equal bytes.
func sameBytes(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

// HeadersNullsSent is what headers_nulls sends; withNullHeader adds (k5, v5, n=null).
func HeadersNullsSent(withNullHeader bool) []Record {
	recs := []Record{
		{Key: nil, Value: []byte("v1")},
		{Key: []byte("k2"), Value: nil},
		{Key: []byte("k3"), Value: []byte{}},
		{Key: []byte("k4"), Value: []byte("v4"), Headers: []Header{{"h1", []byte("a")}, {"h1", []byte("b")}, {"empty", []byte{}}}},
	}
	if withNullHeader {
		recs = append(recs, Record{Key: []byte("k5"), Value: []byte("v5"), Headers: []Header{{"n", nil}}})
	}
	return recs
}

// RecordsJSON is headers_nulls' observed form: [[key, value, [[name, value], ...]], ...].
func RecordsJSON(recs []Record) []any {
	out := make([]any, 0, len(recs))
	for _, r := range recs {
		hs := make([]any, 0, len(r.Headers))
		for _, h := range r.Headers {
			hs = append(hs, []any{h.Key, Str(h.Value)})
		}
		out = append(out, []any{Str(r.Key), Str(r.Value), hs})
	}
	return out
}

// CheckSameRecords checks keys, values and headers (names, values, order; null vs empty).
func CheckSameRecords(got, sent []Record) {
	same := len(got) == len(sent)
	for i := 0; same && i < len(got); i++ {
		g, s := got[i], sent[i]
		same = sameBytes(g.Key, s.Key) && sameBytes(g.Value, s.Value) && len(g.Headers) == len(s.Headers)
		for j := 0; same && j < len(g.Headers); j++ {
			same = g.Headers[j].Key == s.Headers[j].Key && sameBytes(g.Headers[j].Value, s.Headers[j].Value)
		}
	}
	if !same {
		Fail("read back %s, sent %s", jsonString(RecordsJSON(got)), jsonString(RecordsJSON(sent)))
	}
}

// KeyedKeys are keyed_partitioning's keys: key-0 .. key-59.
func KeyedKeys() []string {
	keys := make([]string, 60)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
	}
	return keys
}

// ReadKeyed reads back keyed_partitioning's records: from each partition that round1 (key ->
// reported partition) names, two records per key reported there (read(p, n) reads n records of
// partition p). It returns, per key, the partitions its records were read from, and the count read.
func ReadKeyed(round1 map[string]int32, read func(p int32, n int) []Record) (map[string][]int32, int) {
	perPartition := map[int32]int{}
	for _, p := range round1 {
		perPartition[p] += 2
	}
	found := map[string][]int32{}
	total := 0
	for p, n := range perPartition {
		for _, r := range read(p, n) {
			found[string(r.Key)] = append(found[string(r.Key)], p)
			total++
		}
	}
	return found, total
}

// CheckKeyed checks keyed_partitioning: each key's two sends went to one partition (per the
// delivery reports round1, round2) and reading every partition found the key's two records in
// that partition and nowhere else (found: key -> partitions it was read from, one per record).
func CheckKeyed(keys []string, round1, round2 map[string]int32, found map[string][]int32, read int) *Obs {
	partitionOf := map[string]int32{}
	for _, k := range keys {
		p1, ok1 := round1[k]
		p2, ok2 := round2[k]
		Check(ok1 && ok2, "no delivery report for %s", k)
		Check(p1 == p2, "%s went to partition %d, then to %d", k, p1, p2)
		f := append([]int32(nil), found[k]...)
		sort.Slice(f, func(i, j int) bool { return f[i] < f[j] })
		Check(len(f) == 2 && f[0] == p1 && f[1] == p1, "%s reported in partition %d, found in %v", k, p1, f)
		partitionOf[k] = p1
	}
	Check(read == 2*len(keys), "read %d records in all partitions, expected %d", read, 2*len(keys))
	return NewObs().Set("records", read).Set("partition_of", partitionOf)
}

// TimestampWant is what timestamp_offsets expects.
func TimestampWant() *Obs {
	return NewObs().Set("earliest", int64(0)).Set("latest", int64(3)).
		Set("t0+500", int64(1)).Set("t0+2000", int64(2)).Set("after_last", int64(-1))
}

// CheckObs fails unless got and want have the same JSON form.
func CheckObs(got, want *Obs) {
	g, w := jsonString(got), jsonString(want)
	Check(g == w, "saw %s, expected %s", g, w)
}

// LargeValue is large_records' record near the limit: n bytes, a fixed non-repeating pattern.
func LargeValue(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((i * 7) % 251)
	}
	return b
}

func jsonString(v any) string {
	b, err := jsonMarshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// LargeRecords is large_records after the topic (max.message.bytes=200000) and the producer
// exist: a 190000-byte record is accepted, a 210000-byte one is refused with MESSAGE_TOO_LARGE,
// a small one after it is accepted, and the two accepted values read back in order. send
// produces one value synchronously; errName names a send error; read reads partition 0.
func LargeRecords(ctx *Ctx, send func([]byte) error, errName func(error) string,
	read func(count int) []Record) *Obs {
	obs := NewObs()
	near := LargeValue(190000)
	ctx.Step("produce 190000 bytes")
	err := send(near)
	Check(err == nil, "190000-byte record refused: %s (%v)", errName(err), err)
	obs.Set("near_limit", "ok")
	ctx.Step("produce 210000 bytes")
	err = send(make([]byte, 210000))
	obs.Set("over_limit", errName(err))
	Check(obs.Get("over_limit") == "MESSAGE_TOO_LARGE", "210000-byte record: %v (%v)", obs.Get("over_limit"), err)
	ctx.Step("produce after")
	err = send([]byte("small"))
	if err == nil {
		obs.Set("after", "ok")
	} else {
		obs.Set("after", errName(err))
	}
	Check(err == nil, "small record after the refusal: %s (%v)", errName(err), err)
	ctx.Step("read back")
	got := read(2)
	Check(string(got[0].Value) == string(near), "190000-byte value read back differs (%d bytes)", len(got[0].Value))
	Check(string(got[1].Value) == "small", "small value read back as %.40q", got[1].Value)
	return obs
}
