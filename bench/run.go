package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ProgressInterval is how often Run reports progress: four times a
// second, often enough for a live line, rarely enough to cost nothing.
const ProgressInterval = 250 * time.Millisecond

// A Phase is a part of a run.
type Phase string

// The phases of a run, in order.
const (
	// PhaseConnect opens the connections.
	PhaseConnect Phase = "connect"
	// PhaseWarmup runs the load without measuring it.
	PhaseWarmup Phase = "warmup"
	// PhaseRun runs the measured load.
	PhaseRun Phase = "run"
	// PhaseDrain waits for the last replies.
	PhaseDrain Phase = "drain"
	// PhaseHold keeps the connections open and idle (Config.Hold).
	PhaseHold Phase = "hold"
)

// Progress is a snapshot of a run in progress.
type Progress struct {
	// Phase is the part of the run under way.
	Phase Phase
	// Elapsed is the time since the phase's start: since Run was called
	// while connecting, since the load started during the warmup, and
	// since the measuring started afterwards.
	Elapsed time.Duration
	// Messages is the number of correct replies counted so far.
	Messages int64
	// Rate is the number of replies counted per second since the last
	// report.
	Rate float64
	// Errors is the number of errors so far.
	Errors int64
}

// An engine carries a run's connections.
type engine interface {
	name() string
	// recorders returns the engine's recorders, fixed when it is made.
	recorders() []*recorder
	// run connects, calls connected once every connection is open or has
	// failed, waits for the plan's start, carries the load, holds,
	// closes, and returns.
	run(connected func())
	// cancel wakes connections blocked in I/O once the plan's stop is set.
	cancel()
}

// Run carries the load that cfg describes and checks every reply. It
// calls progress, if not nil, every ProgressInterval from the calling
// goroutine. Cancelling ctx stops the run at once; Run then returns the
// result so far, marked Interrupted, and ctx's error.
//
// Run returns an error for a Config it cannot run (wrapping ErrBadConfig,
// or porta.ErrBadAddress), and ErrNoConnection, with the result, when not
// one connection could be opened. Wrong replies and failed connections are
// not errors of Run: they are counted in the Result (see Result.OK).
//
// Runs share nothing: Run may be called from several goroutines at once.
func Run(ctx context.Context, cfg Config, progress func(Progress)) (*Result, error) {
	s, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	p := newPlan(s)
	eng, err := newEngine(p)
	if err != nil {
		return nil, err
	}

	connected := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		eng.run(func() { close(connected) })
	}()
	if testHookEngineStarted != nil {
		testHookEngineStarted(done)
	}
	var stopAt int64
	stopWatch := context.AfterFunc(ctx, func() {
		p.stop.Store(true)
		eng.cancel()
	})
	defer stopWatch()

	ticker := time.NewTicker(ProgressInterval)
	defer ticker.Stop()
	started := false
	onConnected := func() {
		connected = nil
		if p.stop.Load() {
			stopAt = p.now()
		} else if opened(eng) == 0 {
			p.stop.Store(true)
			stopAt = -1
		}
		p.begin()
		started = true
	}
	var last int64
	lastAt := p.now()
	for waiting := true; waiting; {
		select {
		case <-connected:
			onConnected()
		case <-done:
			// When every connection fails at once, the engine may be done
			// before this loop first looks, and select picks either of the
			// two ready channels: the connections' outcome must still count.
			select {
			case <-connected:
				onConnected()
			default:
			}
			waiting = false
		case <-ticker.C:
			if progress == nil {
				continue
			}
			pr := p.progress(eng, started)
			now := p.now()
			if pr.Phase == PhaseRun || pr.Phase == PhaseDrain || pr.Phase == PhaseHold {
				pr.Rate = float64(pr.Messages-last) / (float64(now-lastAt) / 1e9)
				last = pr.Messages
			}
			lastAt = now
			progress(pr)
		}
	}
	endAt := p.now()
	if stopAt == 0 && p.stop.Load() {
		stopAt = endAt
	}

	interrupted := ctx.Err() != nil
	// The measured time ends with the duration, or before it if every
	// connection ended first.
	elapsed := min(p.mEnd, endAt) - p.mStart
	if p.Messages > 0 {
		elapsed = 0
		for _, r := range eng.recorders() {
			elapsed = max(elapsed, r.last-p.mStart)
		}
	}
	if interrupted && stopAt > 0 {
		elapsed = min(elapsed, stopAt-p.mStart)
	}
	res := p.result(eng.name(), eng.recorders(), elapsed, interrupted)
	if stopAt == -1 {
		err := errors.New("every connection failed")
		if len(res.Examples) > 0 {
			err = errors.New(res.Examples[0].Err)
		}
		return res, fmt.Errorf("%w to %s: %w", ErrNoConnection, p.addr, err)
	}
	if interrupted {
		return res, ctx.Err()
	}
	return res, nil
}

// testHookEngineStarted, if set (by tests), is called by Run once the
// engine has started, with the channel that is closed when it is done.
var testHookEngineStarted func(done <-chan struct{})

// newEngine picks and makes the engine for p.
func newEngine(p *plan) (engine, error) {
	if p.Engine != EngineGoroutine {
		e, ok, err := newEpollEngine(p)
		if err != nil {
			return nil, err
		}
		if ok {
			return e, nil
		}
		if p.Engine == EngineEpoll {
			return nil, fmt.Errorf("%w: the epoll engine cannot carry %s here", ErrBadConfig, p.addr)
		}
	}
	return newGoroutineEngine(p), nil
}

// opened returns the number of connections that opened.
func opened(e engine) int {
	n := 0
	for _, r := range e.recorders() {
		n += len(r.connects)
	}
	return n
}

// progress takes a snapshot of the run. started says whether the plan's
// times are set.
func (p *plan) progress(e engine, started bool) Progress {
	var pr Progress
	for _, r := range e.recorders() {
		pr.Messages += r.live.messages.Load()
		pr.Errors += r.live.errors.Load()
	}
	now := p.now()
	switch {
	case !started:
		pr.Phase, pr.Elapsed = PhaseConnect, time.Duration(now)
	case p.holding.Load():
		pr.Phase, pr.Elapsed = PhaseHold, time.Duration(now-p.mStart)
	case now < p.mStart:
		pr.Phase, pr.Elapsed = PhaseWarmup, time.Duration(now-p.t0)
	case now < p.mEnd:
		pr.Phase, pr.Elapsed = PhaseRun, time.Duration(now-p.mStart)
	default:
		pr.Phase, pr.Elapsed = PhaseDrain, time.Duration(now-p.mStart)
	}
	return pr
}

// publish makes the recorder's count visible to progress reports.
func (r *recorder) publish() { r.live.messages.Store(r.messages) }

// errTimeout is the error of a connection that waited too long for a
// reply.
func errTimeout(d time.Duration) error { return fmt.Errorf("no reply within %v", d) }
