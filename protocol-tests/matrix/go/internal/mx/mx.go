// Package mx is the shared harness of the matrix's Go client programs (cmd/franz, cmd/sarama):
// command line, JSON lines, the scenario runner loop with its 60 s limit, and checks that do not
// depend on the client library. See ../../../CONTRACT.md.
//
// A program defines its scenarios as functions taking a *Ctx and returning the scenario's
// observed facts, and a member function; then calls Main:
//
//	mx.Main("franz-go", version, map[string]mx.Scenario{"metadata": metadata, ...}, member)
//
// Inside a scenario: ctx.Topic(1) / ctx.Topic(2) / ctx.Group(1) name things, ctx.Step("...") says
// what it is doing (a timeout names the step), mx.Check(cond, "expected ..., saw ...") fails the
// scenario, mx.Must(err, "what") fails it on a library error, mx.Unsupported("...") reports it
// unsupported. A panic of any other kind is a failure with its message.
package mx

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// Scenarios are the contract's scenarios, in their order.
var Scenarios = []string{
	"metadata",
	"topic_admin",
	"compression_none",
	"compression_gzip",
	"compression_snappy",
	"compression_lz4",
	"compression_zstd",
	"keyed_partitioning",
	"headers_nulls",
	"idempotent",
	"group_resume",
	"timestamp_offsets",
	"large_records",
}

// Codecs are the compression scenarios' codecs (scenario compression_<codec>).
var Codecs = []string{"none", "gzip", "snappy", "lz4", "zstd"}

// Timeout is how long one scenario may take.
const Timeout = 60 * time.Second

// Scenario runs one scenario and returns its observed facts (it panics through Check/Must).
type Scenario func(ctx *Ctx) *Obs

// ---- outcomes ----

type failure struct{ msg string }

type unsupported struct{ msg string }

// Fail ends the scenario as failed with the message.
func Fail(format string, args ...any) { panic(failure{fmt.Sprintf(format, args...)}) }

// Check fails the scenario with the message unless cond holds.
func Check(cond bool, format string, args ...any) {
	if !cond {
		Fail(format, args...)
	}
}

// Must fails the scenario when err is not nil: "<what>: <error>".
func Must(err error, what string) {
	if err != nil {
		Fail("%s: %v", what, err)
	}
}

// Unsupported ends the scenario as unsupported: the library has no API for it.
func Unsupported(format string, args ...any) { panic(unsupported{fmt.Sprintf(format, args...)}) }

// ---- the scenario context ----

// Ctx is one scenario's context: its names, its current step and its deadline. It is a
// context.Context that ends at the scenario's deadline (for library calls that take one).
type Ctx struct {
	context.Context
	Client, Scenario, Bootstrap, RunID string

	mu       sync.Mutex
	step     string
	cleanups []func()
}

// Cleanup registers fn (closing a client) to run when the scenario ends, and returns a function
// that runs it now instead; fn runs at most once either way.
func (c *Ctx) Cleanup(fn func()) func() {
	var once sync.Once
	run := func() { once.Do(fn) }
	c.mu.Lock()
	c.cleanups = append(c.cleanups, run)
	c.mu.Unlock()
	return run
}

// runCleanups runs the registered cleanups, last first, each protected from panics.
func (c *Ctx) runCleanups() {
	c.mu.Lock()
	fns := c.cleanups
	c.cleanups = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					Log("[%s %s] cleanup panicked: %v", c.Client, c.Scenario, r)
				}
			}()
			fns[i]()
		}()
	}
}

// Topic is the scenario's n-th topic: mx-<client>-<scenario>-<RID>, with -<n> for n >= 2.
func (c *Ctx) Topic(n int) string {
	base := fmt.Sprintf("mx-%s-%s-%s", c.Client, c.Scenario, c.RunID)
	if n <= 1 {
		return base
	}
	return fmt.Sprintf("%s-%d", base, n)
}

// Group is the scenario's n-th consumer group: the same name as Topic(n).
func (c *Ctx) Group(n int) string { return c.Topic(n) }

// Step records (and logs to stderr) what the scenario is doing.
func (c *Ctx) Step(what string) {
	c.mu.Lock()
	c.step = what
	c.mu.Unlock()
	Log("[%s %s] %s", c.Client, c.Scenario, what)
}

// CurrentStep is the last step recorded.
func (c *Ctx) CurrentStep() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.step
}

// Remaining is the time left before the scenario's deadline.
func (c *Ctx) Remaining() time.Duration {
	d, _ := c.Deadline()
	return time.Until(d)
}

// Sub is a context for one call: at most d, and never past the scenario's deadline.
func (c *Ctx) Sub(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c, d)
}

// Poll calls fn every `every` until it returns true; fails the scenario with what fn last
// reported (`last`) when the deadline is near.
func (c *Ctx) Poll(what string, every time.Duration, fn func() (done bool, last string)) {
	for {
		done, last := fn()
		if done {
			return
		}
		if c.Remaining() < 2*time.Second {
			Fail("%s: not done before the deadline (last seen: %s)", what, last)
		}
		time.Sleep(every)
	}
}

// ---- observed facts, in the order they were set ----

// Obs is a JSON object whose keys keep the order they were set in.
type Obs struct {
	keys []string
	vals map[string]any
}

// NewObs is an empty Obs.
func NewObs() *Obs { return &Obs{vals: map[string]any{}} }

// Set sets key to v (keeping the first position of key) and returns o.
func (o *Obs) Set(key string, v any) *Obs {
	if _, ok := o.vals[key]; !ok {
		o.keys = append(o.keys, key)
	}
	o.vals[key] = v
	return o
}

// Get is the value of key (nil when unset).
func (o *Obs) Get(key string) any { return o.vals[key] }

// MarshalJSON writes the keys in order.
func (o *Obs) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	if o != nil {
		for i, k := range o.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			kj, _ := jsonMarshal(k)
			vj, err := jsonMarshal(o.vals[k])
			if err != nil {
				return nil, err
			}
			b.Write(kj)
			b.WriteString(": ")
			b.Write(vj)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// ---- output ----

var outMu sync.Mutex

// Emit writes v as one JSON line on stdout (one write, so it is flushed at once).
func Emit(v any) {
	line, err := jsonMarshal(v)
	if err != nil {
		line, _ = jsonMarshal(map[string]string{"error": err.Error()})
	}
	outMu.Lock()
	defer outMu.Unlock()
	os.Stdout.Write(append(line, '\n'))
}

// Log writes one diagnostic line on stderr.
func Log(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000")+" "+format+"\n", args...)
}

// ---- the scenario runner ----

type resultLine struct {
	Client   string  `json:"client"`
	Version  string  `json:"version"`
	Scenario string  `json:"scenario"`
	Status   string  `json:"status"`
	Reason   string  `json:"reason"`
	Seconds  float64 `json:"seconds"`
	Observed *Obs    `json:"observed"`
}

// RunScenarios runs the named scenarios (all when names is empty) one after another, each in
// its own goroutine under the 60 s limit, and prints one line for each.
func RunScenarios(client, version, bootstrap, runID string, table map[string]Scenario, names []string) {
	if len(names) == 0 {
		names = Scenarios
	}
	for _, name := range names {
		started := time.Now()
		cctx, cancel := context.WithTimeout(context.Background(), Timeout)
		ctx := &Ctx{Context: cctx, Client: client, Scenario: name, Bootstrap: bootstrap, RunID: runID, step: "start"}
		type outcome struct {
			status, reason string
			obs            *Obs
		}
		done := make(chan outcome, 1)
		go func() {
			var out outcome
			defer func() {
				if r := recover(); r != nil {
					switch e := r.(type) {
					case failure:
						out = outcome{status: "fail", reason: fmt.Sprintf("%s (step: %s)", e.msg, ctx.CurrentStep())}
					case unsupported:
						out = outcome{status: "unsupported", reason: e.msg}
					default:
						out = outcome{status: "fail", reason: fmt.Sprintf("panic: %v (step: %s)", r, ctx.CurrentStep())}
						Log("[%s %s] panic: %v\n%s", client, name, r, debug.Stack())
					}
				}
				ctx.runCleanups()
				done <- out
			}()
			fn, ok := table[name]
			if !ok {
				Fail("no such scenario in this program: %s", name)
			}
			obs := fn(ctx)
			if obs == nil {
				obs = NewObs()
			}
			out = outcome{status: "pass", obs: obs}
		}()
		var out outcome
		select {
		case out = <-done:
		case <-time.After(Timeout + time.Second):
			// The scenario's goroutine is left behind (its context has ended, so its calls that
			// take one return); the next scenario runs.
			out = outcome{status: "fail", reason: fmt.Sprintf("timed out after %d s in %s", int(Timeout/time.Second), ctx.CurrentStep())}
		}
		cancel()
		if out.obs == nil {
			out.obs = NewObs()
		}
		reason := strings.Join(strings.Fields(out.reason), " ")
		if len(reason) > 1000 {
			reason = reason[:1000]
		}
		secs := float64(time.Since(started).Milliseconds()) / 1000
		Emit(resultLine{client, version, name, out.status, reason, secs, out.obs})
	}
}

// MemberArgs are the arguments of the `member` sub-command.
type MemberArgs struct {
	Bootstrap, Group, Topic string
}

// Main parses the command line and runs `scenarios` or `member`. It exits 2 on a usage error
// and 1 when member returns an error.
func Main(client, version string, table map[string]Scenario, member func(MemberArgs) error) {
	usage := func() {
		fmt.Fprintf(os.Stderr, "usage: %s scenarios --bootstrap HOST:PORT --run-id RID [--only NAME,...]\n"+
			"       %s member --bootstrap HOST:PORT --group G --topic T\n", os.Args[0], os.Args[0])
		os.Exit(2)
	}
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "scenarios":
		fs := flag.NewFlagSet("scenarios", flag.ExitOnError)
		bootstrap := fs.String("bootstrap", "", "HOST:PORT")
		runID := fs.String("run-id", "", "run id (suffix of topic and group names)")
		only := fs.String("only", "", "comma-separated scenario names")
		fs.Parse(os.Args[2:])
		if *bootstrap == "" || *runID == "" {
			usage()
		}
		var names []string
		for _, n := range strings.Split(*only, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
		Log("%s: %s", client, version)
		RunScenarios(client, version, *bootstrap, *runID, table, names)
	case "member":
		fs := flag.NewFlagSet("member", flag.ExitOnError)
		var a MemberArgs
		fs.StringVar(&a.Bootstrap, "bootstrap", "", "HOST:PORT")
		fs.StringVar(&a.Group, "group", "", "consumer group")
		fs.StringVar(&a.Topic, "topic", "", "topic")
		fs.Parse(os.Args[2:])
		if a.Bootstrap == "" || a.Group == "" || a.Topic == "" {
			usage()
		}
		if err := member(a); err != nil {
			Log("member: %v", err)
			os.Exit(1)
		}
	default:
		usage()
	}
}

// StdinClosed is closed when stdin reaches EOF (the runner's signal for `member` to leave).
func StdinClosed() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		close(done)
	}()
	return done
}

// ---- versions and errors ----

// ModuleVersion is the version of the module at path that this binary was built with.
func ModuleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range info.Deps {
		if d.Path == path {
			if d.Replace != nil {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return "unknown"
}

// ErrorName is Kafka's name for a protocol error code.
func ErrorName(code int16) string {
	if n, ok := kafkaErrorNames[code]; ok {
		return n
	}
	return fmt.Sprintf("ERROR_CODE_%d", code)
}

// jsonMarshal is json.Marshal without HTML escaping (a reason may contain "->" or "<").
func jsonMarshal(v any) ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
