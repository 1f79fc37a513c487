// Package bench generates load against a message server and checks every
// reply. It is the engine behind "porta bench" and works against any server
// that speaks one of the framings of package frame, not only porta.
//
// # Load shape
//
// Run opens Config.Conns connections (at Config.ConnectRate per second if
// set), waits until all are up, runs Config.Warmup without counting, then
// measures for Config.Duration or until Config.Messages replies have come
// back. Each connection keeps Config.Pipeline messages outstanding.
//
// Without Config.Rate the load is a closed model: a connection sends its
// next message as soon as a reply comes back, and latency runs from the
// send to the reply. With Config.Rate the load is an open model, as wrk2's:
// each connection has a schedule (Rate/Conns messages per second), and
// latency runs from a message's scheduled send time, so that a server that
// stalls cannot hide its stalls by slowing the generator down
// (coordinated omission). A message is sent at its scheduled time if fewer
// than Pipeline are outstanding, else as soon as one comes back.
//
// # Checking
//
// Every message is distinct: its body, Config.Size bytes, starts with the
// connection's sequence number in decimal (as many digits as fit, up to
// 12) followed by letters. Every reply is compared with the expected one
// (see Config.Expect), so a wrong, missing, reordered or extra reply is
// counted by kind (see ErrorKind), and the first few are kept as examples.
// With Expect "text:STR" replies are all alike, so reordering cannot be
// told from correct order.
//
// # Engines
//
// On Linux, TCP and Unix loads run on an epoll engine, built like a C load
// generator: nonblocking sockets and epoll loops, each on its own OS thread
// and, when the process can spare the P, waiting in epoll_wait(2) without
// the Go scheduler (see Config.Loops). It checks correct replies by
// comparing the bytes received with the expected replies as a stream, and
// switches a connection to a frame.Decoder at the first byte that differs,
// to split and classify what the server sent. The goroutine engine, one
// goroutine per connection on the net package with a frame.Decoder each,
// is the portable fallback. Config.Engine picks one; the default picks
// epoll where it is available.
//
// # Latency
//
// Latencies are recorded in nanoseconds in HDR histograms
// (github.com/HdrHistogram/hdrhistogram-go, 3 significant digits, up to 60
// s): one per event loop in the epoll engine and one sparse histogram per
// connection in the goroutine engine, each written by one goroutine only
// and merged when the run ends, so recording takes no lock.
package bench
