package bench

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/porta-project/porta/frame"
)

// A plan is what every connection of a run shares: the settings and the
// clock. The times are nanoseconds since base, on the monotonic clock.
type plan struct {
	*settings
	base  time.Time
	start chan struct{} // closed when the load starts; t0, mStart, mEnd are set before
	stop  atomic.Bool   // the run was cancelled: stop at once

	holding atomic.Bool // some connections are in the hold phase

	t0     int64 // the load (and the warmup) starts
	mStart int64 // measuring starts
	mEnd   int64 // measuring ends; math.MaxInt64 without a time limit

	interval float64 // open model: nanoseconds between one connection's messages

	tmpl templates
}

func newPlan(s *settings) *plan {
	p := &plan{settings: s, base: time.Now(), start: make(chan struct{}), tmpl: newTemplates(s)}
	if s.Rate > 0 {
		p.interval = float64(s.Conns) * 1e9 / s.Rate
	}
	return p
}

// now returns the time since the plan's base.
func (p *plan) now() int64 { return int64(time.Since(p.base)) }

// begin fixes the phase times from t0 and starts the load.
func (p *plan) begin() {
	p.t0 = p.now()
	p.mStart = later(p.t0, p.Warmup)
	p.mEnd = math.MaxInt64
	if p.Duration > 0 {
		p.mEnd = later(p.mStart, p.Duration)
	}
	close(p.start)
}

// later returns the time d after t, or math.MaxInt64 (never) if that is
// past the range of the clock.
func later(t int64, d time.Duration) int64 {
	if int64(d) > math.MaxInt64-t {
		return math.MaxInt64
	}
	return t + int64(d)
}

// maxExamples is how many examples of errors each recorder keeps, and a
// Result shows.
const maxExamples = 5

// latencySink is a histogram being recorded into: dense for an epoll loop,
// sparse for one connection of the goroutine engine.
type latencySink interface {
	RecordValues(v, n int64) error
}

// A recorder collects what one goroutine observes: counts, latencies and
// the first examples of errors. Only its goroutine writes it, except the
// live counters, which the progress reporter reads.
type recorder struct {
	lat      latencySink
	runValue int64 // a run of equal latencies not yet in lat
	runCount int64
	connects []int64 // connection times, ns
	counts   [numKinds]int64
	examples []Example
	messages int64 // replies counted
	last     int64 // when the last counted reply came

	live liveCounts
}

// liveCounts are a recorder's running totals for progress reports.
type liveCounts struct {
	messages, errors atomic.Int64
	_                [48]byte // keep recorders' counters on separate cache lines
}

func newRecorder(sparse bool) *recorder {
	r := &recorder{}
	if sparse {
		r.lat = hdrhistogram.NewPacked(1, maxLatency, latencyDigits)
	} else {
		r.lat = hdrhistogram.New(1, maxLatency, latencyDigits)
	}
	return r
}

// record records one latency. Replies read together to messages sent
// together have the same latency, so equal values are collected and
// recorded as one run.
func (r *recorder) record(v int64) {
	if v == r.runValue {
		r.runCount++
		return
	}
	r.flush()
	r.runValue, r.runCount = v, 1
}

// flush records the collected run of latencies.
func (r *recorder) flush() {
	if r.runCount > 0 {
		r.lat.RecordValues(r.runValue, r.runCount)
		r.runCount = 0
	}
}

// fail counts n errors of kind k, keeping ex as an example if there is
// room.
func (r *recorder) fail(k ErrorKind, n int64, ex Example) {
	if n <= 0 {
		return
	}
	r.counts[k] += n
	r.live.errors.Add(n)
	if len(r.examples) < maxExamples {
		ex.Kind = k.String()
		r.examples = append(r.examples, ex)
	}
}

// A session is the state of one connection's conversation, whichever
// engine carries it: what to send next, what is outstanding and what the
// next reply must be. Only one goroutine uses it at a time.
type session struct {
	p   *plan
	rec *recorder
	id  int // the connection's index, 0 to Conns-1

	msg  counter // the next message's sequence number
	want body    // the shape of a correct reply's body (echo and upper)

	// The outstanding messages are a ring of Pipeline slots, oldest at
	// head: their send stamps, and their expected framed replies back to
	// back, so that the replies of one read are checked with one
	// comparison.
	stamps   []int64
	expected []byte // slot i is expected[i*replyLen:(i+1)*replyLen]
	head     int
	out      int // messages outstanding

	sent, recvd uint64 // messages sent; replies received
	quota       int64  // Messages mode: messages left to send while measuring
	countFrom   uint64 // Messages mode: the first message sent while measuring
	sched       uint64 // open model: scheduled messages sent
	due         int    // open model: messages due and not yet sent
	stopped     bool   // sends no more
	lastActive  int64  // last send with nothing outstanding, or last reply
	rawMatched  int    // Raw framing: bytes of the current reply matched
	started     bool   // the load has started: the plan's times are set
}

func newSession(p *plan, rec *recorder, id int) *session {
	ss := &session{
		p:         p,
		rec:       rec,
		id:        id,
		msg:       newCounter(p.Size),
		stamps:    make([]int64, p.Pipeline),
		expected:  make([]byte, p.Pipeline*p.tmpl.replyLen),
		quota:     -1,
		countFrom: math.MaxUint64,
	}
	// Each slot holds the expected reply from the start; sending a message
	// changes only the digits in its slot, if replies carry them.
	copyUnits(ss.expected, p.tmpl.replies, p.Pipeline, p.tmpl.replyLen)
	if p.expect != expectText {
		ss.want = newBody(p.Size, p.expect == expectUpper)
	}
	if p.Messages > 0 {
		ss.quota = p.Messages / int64(p.Conns)
		if int64(id) < p.Messages%int64(p.Conns) {
			ss.quota++
		}
	}
	return ss
}

// maxOffset is the latest time a schedule names, in nanoseconds after the
// plan's base or the load's start: 2^62 ns, 146 years, which leaves room
// to add the two without overflow. Later times are never.
const maxOffset = 1 << 62

// offset converts a time computed in floating point, in nanoseconds, to
// an offset, or to math.MaxInt64 (never) past maxOffset.
func offset(ns float64) int64 {
	if ns >= maxOffset {
		return math.MaxInt64
	}
	return int64(ns)
}

// connectAt returns when connection id may start to connect, paced by
// the connect rate.
func (p *plan) connectAt(id int) int64 {
	if p.ConnectRate <= 0 {
		return 0
	}
	return offset(float64(id) * 1e9 / p.ConnectRate)
}

// scheduled returns the open model's send time of the connection's
// message number k, math.MaxInt64 if it is never.
func (ss *session) scheduled(k uint64) int64 {
	d := offset((float64(k)*float64(ss.p.Conns) + float64(ss.id)) * 1e9 / ss.p.Rate)
	if d == math.MaxInt64 {
		return d
	}
	return ss.p.t0 + d
}

// schedule makes due the open model's messages scheduled up to now, and
// returns the time of the next one.
func (ss *session) schedule(now int64) int64 {
	k := firstLate(ss.sched+uint64(ss.due), func(k uint64) bool {
		t := ss.scheduled(k)
		return t > now || t >= ss.p.mEnd
	})
	ss.due = int(k - ss.sched)
	return ss.scheduled(k)
}

// firstLate returns the first k from lo on for which late holds, where
// late, once true, stays true for every greater k: by steps that double,
// then by bisection, so that a schedule far behind (a rate far above what
// the server answers) costs a few dozen calls, not one per message due.
func firstLate(lo uint64, late func(uint64) bool) uint64 {
	if late(lo) {
		return lo
	}
	step := uint64(1)
	hi := lo + step
	for !late(hi) { // late(lo) is false
		lo = hi
		step *= 2
		hi = lo + step
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if late(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// checkStop stops sending when the measured time is over, the run was
// cancelled, or the quota is spent, and reports whether sends stopped.
func (ss *session) checkStop(now int64) bool {
	if !ss.stopped && (now >= ss.p.mEnd || ss.p.stop.Load() || ss.quota == 0) {
		ss.stopped = true
	}
	return ss.stopped
}

// done reports whether the session has nothing more to do: it sends no
// more and nothing is outstanding.
func (ss *session) done() bool { return ss.stopped && ss.out == 0 }

// appendMessages appends the messages the session may send now to dst,
// framed, stamps them and returns dst. In the closed model it fills the
// pipeline; in the open model it sends the due messages that the pipeline
// has room for. A batch of messages is one copy of the template and then
// the sequence number written into each, and into its slot of expected
// replies.
func (ss *session) appendMessages(dst []byte, now int64) []byte {
	if ss.checkStop(now) {
		return dst
	}
	n := ss.p.Pipeline - ss.out
	open := ss.p.Rate > 0
	if open {
		n = min(n, ss.due)
	}
	measuring := now >= ss.p.mStart
	if measuring && ss.quota >= 0 {
		n = int(min(int64(n), ss.quota))
		ss.quota -= int64(n)
	}
	if n <= 0 {
		ss.checkStop(now)
		return dst
	}
	if measuring && ss.countFrom == math.MaxUint64 {
		ss.countFrom = ss.sent
	}
	if ss.out == 0 {
		ss.lastActive = now
	}
	t := &ss.p.tmpl
	at := len(dst)
	dst = appendUnits(dst, t.msgs, n, ss.p.wireSize)
	slot := ss.head + ss.out // the first free one
	if slot >= len(ss.stamps) {
		slot -= len(ss.stamps)
	}
	seq := ss.msg // in registers while the loop runs
	at += t.bodyAt
	for range n {
		stamp := now
		if open {
			stamp = ss.scheduled(ss.sched)
			ss.sched++
			ss.due--
		}
		ss.stamps[slot] = stamp
		seq.put(dst[at:])
		if t.replyDigits {
			seq.put(ss.expected[slot*t.replyLen+t.bodyAt:])
		}
		seq.next()
		at += ss.p.wireSize
		if slot++; slot == len(ss.stamps) {
			slot = 0
		}
	}
	ss.msg = seq
	ss.out += n
	ss.sent += uint64(n)
	ss.checkStop(now)
	return dst
}

// oldest returns the expected framed reply of the oldest outstanding
// message.
func (ss *session) oldest() []byte {
	r := ss.p.tmpl.replyLen
	return ss.expected[ss.head*r : (ss.head+1)*r]
}

// reply checks one reply that arrived at now and records it.
func (ss *session) reply(p []byte, now int64) {
	if ss.out == 0 {
		ss.rec.fail(KindExtra, 1, Example{Conn: ss.id, Seq: ss.recvd, Got: quote(p), At: ss.at(now)})
		return
	}
	t := &ss.p.tmpl
	want := ss.oldest()[t.bodyAt : t.bodyAt+ss.p.replyLength]
	if bytes.Equal(p, want) {
		ss.complete(1, now)
		return
	}
	seq, _ := ss.take(now) // want stays intact: no message is added before it is used
	ss.mismatch(p, want, seq, now)
}

// take takes the oldest outstanding message off the ring, as its reply
// has come, and returns its sequence number and stamp.
func (ss *session) take(now int64) (seq uint64, stamp int64) {
	stamp = ss.popStamp()
	ss.out--
	ss.lastActive = now
	seq = ss.recvd
	ss.recvd++
	return seq, stamp
}

// popStamp moves the ring's head past the oldest outstanding message and
// returns its send stamp; the caller counts the message out.
func (ss *session) popStamp() int64 {
	stamp := ss.stamps[ss.head]
	if ss.head++; ss.head == len(ss.stamps) {
		ss.head = 0
	}
	return stamp
}

// mismatch counts a reply p to message seq that is not want, the
// expected one.
func (ss *session) mismatch(p, want []byte, seq uint64, now int64) {
	ex := Example{Conn: ss.id, Seq: seq, Got: quote(p), Want: quote(want), At: ss.at(now)}
	if ss.p.expect != expectText {
		if got, ok := ss.want.seq(p); ok {
			ex.Err = fmt.Sprintf("reply of message %d where message %d's was due", got, seq%ss.want.wrap())
			ss.rec.fail(KindReordered, 1, ex)
			return
		}
	}
	ss.rec.fail(KindWrong, 1, ex)
}

// stream matches bytes received against the expected replies, framed, as
// one stream of bytes, and counts each reply as it completes: the fast way
// to check correct replies, with no framing to parse, and one comparison
// for all the replies of a read. It stops at the reply in which a byte
// differs or at the first byte that comes with nothing outstanding, and
// returns the number of bytes matched and whether all of p matched. The
// bytes of a reply under way are counted in ss.rawMatched, and are not
// part of the number returned when its reply goes wrong.
func (ss *session) stream(p []byte, now int64) (int, bool) {
	r := ss.p.tmpl.replyLen
	n := 0
	for n < len(p) && ss.out > 0 {
		// The expected bytes from the reply under way to the last
		// outstanding one or the end of the ring, whichever comes first.
		end := min(ss.head+ss.out, len(ss.stamps)) * r
		want := ss.expected[ss.head*r+ss.rawMatched : end]
		k := min(len(want), len(p)-n)
		got := p[n : n+k]
		if !bytes.Equal(got, want[:k]) {
			i := 0
			for got[i] == want[i] {
				i++
			}
			done := (ss.rawMatched + i) / r
			if done > 0 {
				n += done*r - ss.rawMatched
				ss.rawMatched = 0
			}
			ss.complete(done, now)
			return n, false
		}
		n += k
		total := ss.rawMatched + k
		ss.rawMatched = total % r
		ss.complete(total/r, now)
	}
	return n, n == len(p)
}

// complete takes the k oldest outstanding messages off the ring, as
// their correct replies came at now, and records those that fall in the
// measured part of the run: the messages sent while measuring in Messages
// mode, else the replies that come while measuring.
func (ss *session) complete(k int, now int64) {
	if k <= 0 {
		return
	}
	skip := k // the first skip messages are not recorded
	if ss.quota >= 0 {
		if ss.countFrom <= ss.recvd {
			skip = 0
		} else if d := ss.countFrom - ss.recvd; d < uint64(k) {
			skip = int(d)
		}
	} else if now >= ss.p.mStart && now < ss.p.mEnd {
		skip = 0
	}
	r := ss.rec
	for i := range k {
		stamp := ss.popStamp()
		if i >= skip {
			r.record(min(max(now-stamp, 1), maxLatency))
		}
	}
	if n := k - skip; n > 0 {
		r.messages += int64(n)
		r.last = max(r.last, now)
	}
	ss.out -= k
	ss.recvd += uint64(k)
	ss.lastActive = now
}

// partial returns the bytes of the reply under way that stream has
// matched: to hand them to a decoder when the stream goes wrong.
func (ss *session) partial() []byte { return ss.oldest()[:ss.rawMatched] }

// rawBytes matches bytes received with Raw framing against the expected
// replies, which are told apart only by their length. It returns false if
// the stream went wrong and the connection must be closed, as it cannot be
// resynchronised.
func (ss *session) rawBytes(p []byte, now int64) bool {
	n, ok := ss.stream(p, now)
	if ok {
		return true
	}
	p = p[n:]
	if ss.out == 0 {
		ss.rec.fail(KindExtra, 1, Example{Conn: ss.id, Seq: ss.recvd, Got: quote(p), At: ss.at(now)})
		return false
	}
	rest := ss.oldest()[ss.rawMatched:]
	k := min(len(rest), len(p))
	ss.rec.fail(KindWrong, 1, Example{Conn: ss.id, Seq: ss.recvd, Got: quote(p[:k]), Want: quote(rest[:k]),
		Err: fmt.Sprintf("differs at byte %d of the reply", ss.rawMatched), At: ss.at(now)})
	ss.take(now) // counted as wrong, not missing
	return false
}

// end records that the connection ended with err (nil when the run ended
// it): kind k for the connection, and its outstanding messages as missing.
// A connection that ends at a cancelled run's close loses nothing.
func (ss *session) end(k ErrorKind, err error, now int64) {
	if err != nil {
		ss.rec.fail(k, 1, Example{Conn: ss.id, Seq: ss.recvd, Err: err.Error(), At: ss.at(now)})
	}
	if !ss.p.stop.Load() {
		ss.rec.fail(KindMissing, int64(ss.out), Example{Conn: ss.id, Seq: ss.recvd,
			Err: fmt.Sprintf("%d messages unanswered when the connection ended", ss.out), At: ss.at(now)})
	}
	ss.out = 0
	ss.stopped = true
}

// decodeFailed ends the connection after its replies' decoder failed
// with err: at a reply too long to be one, which counts as the wrong
// reply of the oldest outstanding message, or at the end of the stream.
func (ss *session) decodeFailed(err error, now int64) {
	if !errors.Is(err, frame.ErrTooLong) {
		ss.end(ioKind(err), err, now)
		return
	}
	ex := Example{Conn: ss.id, Seq: ss.recvd, Err: fmt.Sprintf("reply longer than %d bytes", ss.p.maxReply), At: ss.at(now)}
	if ss.out > 0 {
		ss.take(now)
	}
	ss.rec.fail(KindWrong, 1, ex)
	ss.end(0, nil, now)
}

// timedOut reports whether the session has waited longer than the timeout
// for a reply.
func (ss *session) timedOut(now int64) bool {
	return ss.out > 0 && now-ss.lastActive > int64(ss.p.Timeout)
}

// at converts a plan time to seconds since the load started.
func (ss *session) at(now int64) float64 {
	if !ss.started {
		return 0
	}
	return float64(now-ss.p.t0) / 1e9
}
