package reliability_test

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"
)

// A logCapture is a slog.Handler that keeps the records a test asks
// about, so that it can check what the server logged (which connections
// closed and why, one stack per panic) without parsing text.
type logCapture struct {
	mu     sync.Mutex
	keep   map[string]bool // messages whose records are kept
	limit  int             // the most records kept; 0 means no limit
	recs   []logRecord
	counts map[string]int // every record, kept or not, by message
	attrs  []slog.Attr    // from WithAttrs
	parent *logCapture    // the capture that stores, for a WithAttrs child
}

// A logRecord is one captured log record.
type logRecord struct {
	Time  time.Time
	Level slog.Level
	Msg   string
	Attrs map[string]slog.Value
}

// newLogCapture returns a capture that counts every record and keeps up
// to limit (0: all) of those whose message is one of msgs.
func newLogCapture(limit int, msgs ...string) *logCapture {
	c := &logCapture{keep: make(map[string]bool), limit: limit, counts: make(map[string]int)}
	for _, m := range msgs {
		c.keep[m] = true
	}
	return c
}

// logger returns a logger writing to the capture.
func (c *logCapture) logger() *slog.Logger { return slog.New(c) }

func (c *logCapture) root() *logCapture {
	if c.parent != nil {
		return c.parent
	}
	return c
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	root := c.root()
	root.mu.Lock()
	defer root.mu.Unlock()
	root.counts[r.Message]++
	if !root.keep[r.Message] || (root.limit > 0 && len(root.recs) >= root.limit) {
		return nil
	}
	rec := logRecord{Time: r.Time, Level: r.Level, Msg: r.Message, Attrs: make(map[string]slog.Value)}
	for _, a := range c.attrs {
		rec.Attrs[a.Key] = a.Value.Resolve()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.Resolve()
		return true
	})
	root.recs = append(root.recs, rec)
	return nil
}

func (c *logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return &logCapture{parent: c.root(), attrs: append(slices.Clone(c.attrs), as...)}
}

func (c *logCapture) WithGroup(string) slog.Handler { return c }

// count returns how many records with message msg were logged.
func (c *logCapture) count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[msg]
}

// kept returns the number of records kept so far: an index for since.
func (c *logCapture) kept() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recs)
}

// since returns the kept records with message msg from index i on.
func (c *logCapture) since(i int, msg string) []logRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logRecord
	for _, r := range c.recs[min(i, len(c.recs)):] {
		if r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}

// str returns the record's attribute key as a string ("" if absent).
func (r logRecord) str(key string) string {
	v, ok := r.Attrs[key]
	if !ok {
		return ""
	}
	return v.String()
}

// uint returns the record's attribute key as a count.
func (r logRecord) uint(key string) uint64 {
	v, ok := r.Attrs[key]
	if !ok {
		return 0
	}
	switch v.Kind() {
	case slog.KindUint64:
		return v.Uint64()
	case slog.KindInt64:
		return uint64(v.Int64())
	}
	n, _ := strconv.ParseUint(v.String(), 10, 64)
	return n
}
