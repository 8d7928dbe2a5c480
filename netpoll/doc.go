// Package netpoll is hydrogen's network core: a listener and N epoll event
// loops, built on golang.org/x/sys/unix rather than Go's net package, that
// read and decode frames and write queued frames with writev.
//
// Each loop owns an epoll instance and the connections assigned to it;
// only the loop goroutine touches their fds, and it reports each
// connection's life to a Handler: OnOpen, then OnFrames with every frame
// one read produced, then OnClose exactly once with the reason.
// Every loop also accepts: the listening sockets are in every loop's epoll
// (EPOLLEXCLUSIVE: a connection wakes one loop), and a loop keeps what it
// accepts unless another has fewer connections, which then gets it.
//
// A loop never blocks its thread in epoll_wait. It polls without blocking
// and, when nothing is ready, parks its goroutine on the Go runtime's
// poller until its epoll fd (itself pollable) turns readable. A sleeping
// loop so holds no thread and no P, and the scheduler can run the
// handlers it woke, and wake it, on the same thread; blocking in
// epoll_wait instead left the woken goroutines waiting for the runtime to
// retake the P (echo through the broker ran at 0.6 of the speed).
//
// Events are level-triggered: a loop reads at most one buffer from a
// ready connection per wakeup, so a busy connection cannot starve the
// rest, and pausing reads is only a change of the registered mask.
//
// Writing: Conn.Send copies a frame into the connection's queue and
// Conn.SendFrame queues shared, pre-encoded bytes (a broadcast encodes
// once); either may be called from any goroutine. The first Send of a
// batch puts the connection on its loop's ready list and wakes the loop
// through an eventfd, at most once per batch (and not at all while the
// loop is awake); the loop swaps the queue out under the connection's
// mutex and writes it with writev, outside any lock, waiting for EPOLLOUT
// when the socket is full. While the handler holds a Batch from the
// connection, Sends to it only queue: releasing the batch schedules the
// write, so the replies to one read leave in one writev, as a
// goroutine-per-connection server flushes once per read.
//
// Flow control: SendFrom and SendFrameFrom name the producer, the
// connection whose frame caused the Send. A Send that takes a queue past
// 3/4 of Config.MaxPending stalls its producer's reading until the queue is
// below 1/2 again; Config.Overflow says what bounds that. Under
// OverflowClose (the default) a stall lasts 2 to 5 ms per read, and a
// queue that would pass MaxPending is closed as a slow consumer. Under
// OverflowThrottle the stall lasts as long as the queue is full, which is
// lossless for every consumer that keeps reading. Either way a queue that
// makes no write progress for Config.WriteTimeout is a slow consumer, and
// nobody else waits for it.
//
// Memory: Config.MaxMemory bounds the outbound queues and the read buffers
// (frames split across reads, batches the handler holds) of all
// connections together: at 3/4 of it every loop stops reading, and when
// that does not resolve it the connections holding the most bytes are
// closed (ErrMemoryLimit); a Send that would pass it is refused. A frame
// split across reads borrows a buffer that fits it and gives it back once
// complete, and a queue's buffers past 4 KiB go back to shared pools once
// written, so an idle connection holds what a fresh one does.
//
// Time limits: a frame begun must complete within Config.FrameTimeout; a
// connection that completes no frame for Config.IdleTimeout is idle; TCP
// keepalive (Config.TCPKeepAlive) finds peers that vanished. A peer that
// half-closes gets every reply to what it sent, those the layer above
// owes it (Owe, Settle) included, then the close. A Handler that is also
// a QuietHandler hears, from the same tick, of each connection that has
// completed no frame for QuietTicks ticks, so that it can let go of what
// it holds for it.
//
// Limits: the layer above can PauseRead a connection for inbound
// backpressure. Config.MaxConns bounds open connections and
// Config.MaxConnsPerIP those from one address; a connection over either
// gets one error frame saying so, and is closed and counted. When accept
// fails for lack of file descriptors, the listener is unwatched for a
// growing backoff (5 ms to 1 s), so the loop neither spins nor stops
// serving, and accepting resumes when descriptors free up.
//
// A Conn is a handle, never an fd: after it closes its Send returns
// ErrClosed, and epoll events carry a generation beside the fd, so
// nothing meant for a closed connection can reach the next one the kernel
// gives the same fd number.
//
// Concurrency: Server and Conn methods are safe for concurrent use.
package netpoll
