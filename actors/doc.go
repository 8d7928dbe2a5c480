// Package actors is hydrogen's actor machinery on protoactor-go, the
// parts that do not depend on what a stream is: package broker builds
// its runtime (connection actors, application actors, the StreamList) out
// of them, and is the public face. Handlers import broker, never this
// package.
//
//   - Dispatcher runs actor mailboxes on a pool of long-lived worker
//     goroutines, with a watchdog that adds workers behind blocked
//     handlers.
//   - LoopMailbox is the mailbox of actors that run on the goroutine
//     sending to them (for a stream's frames, its event loop): it binds
//     its run function once, takes a read's frames in one push
//     (PostUserMessages), and tells its RunHooks when each run begins and
//     ends, which is how broker gathers an on-loop handler's broadcasts.
//   - RestartAlways and SharedSupervisor are the supervision of
//     application actors: restart after every panic, with no failure
//     history kept, and tell the broker when a shared application stopped
//     itself. RateLimit and QuietHandler keep the logs readable.
//   - Telemetry judges 0x0D requests and runs the telemetry actor that
//     answers them once their span has passed; Document assembles the
//     telemetry document, for those replies and for HTTP /stats alike.
//     It sees a stream only as a TelemetryPeer.
//   - Package actors/cluster joins brokers into a cluster.
//
// The split: the types a handler sees (Stream, StreamList, Group, the
// messages, Identity) and the code that needs their insides (the runtime
// that is netpoll's Handler, the connection actor, broadcasts and their
// batches, authentication) live in broker, unexported where handlers must
// not reach. What lives here works through small interfaces (RunHooks,
// TelemetryPeer) and functions, so that actors never imports broker.
//
// Concurrency: Dispatcher, LoopMailbox, Telemetry and RateLimit are safe
// for concurrent use; a mailbox runs on one goroutine at a time.
package actors
