package broker

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/netpoll"
	"github.com/hydrogen-mq/hydrogen/telemetry"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// Stream is one connected client. Its methods are safe for concurrent use.
type Stream struct {
	conn *netpoll.Conn
	list *StreamList // &view
	view StreamList  // this stream's view of every stream: it publishes as this stream
	id   uint64      // the connection's ID, kept here for the StreamList's index
	rt   *actorRuntime

	connPID  *actor.PID // the connection actor; nil before the first frame (SpawnOnFirstFrame) and once released (ReleaseWhenQuiet)
	spawned  bool       // spawning connPID was tried; on the stream's loop only
	released bool       // its actors were released while quiet and not made again; on the loop only
	// ready: its connection actor has started its application (the
	// credential, if any, accepted), and appStopped: its per-stream
	// application stopped on its own. Set by the connection actor, read
	// by the loop, which releases only a ready stream's actors.
	ready      atomic.Bool
	appStopped atomic.Bool
	gen        uint32     // connection actors made for it, which names each (spawnConn); on the loop only
	appPID     *actor.PID // the application actor frames go to

	shard int // index of the StreamList shard holding it
	slot  int // position in that shard, guarded by the shard's lock

	pending  atomic.Int32 // frames handed to actors and not yet handled
	flowMu   sync.Mutex   // orders pause and resume decisions
	paused   pauses       // why reading is paused, under flowMu
	telem    atomic.Int32 // telemetry requests waiting for their span
	identity atomic.Pointer[Identity]

	valMu  sync.Mutex
	values []value // Stream.SetValue's, by key; few, so a slice

	gmu    sync.Mutex
	groups []*group // the groups it joined
	left   bool     // closed: it left every group and joins none

	bmu   sync.Mutex
	batch batch // broadcasts gathered during a run of its on-loop application
}

type value struct {
	key, val any
}

// SetValue attaches val to the stream under key, replacing what was there
// (a nil val removes it). Values belong to the stream, not to an actor:
// they survive the application actor's restarts, may be read by any actor
// that has the stream, and go once the application has handled Closed.
// Use a key of a type of your own (as context.WithValue asks), or
// Key for typed access. Safe for concurrent use; an on-loop
// handler needs no lock of its own.
func (s *Stream) SetValue(key, val any) {
	s.valMu.Lock()
	defer s.valMu.Unlock()
	for i := range s.values {
		if s.values[i].key == key {
			if val == nil {
				s.values = append(s.values[:i], s.values[i+1:]...)
			} else {
				s.values[i].val = val
			}
			return
		}
	}
	if val != nil {
		s.values = append(s.values, value{key, val})
	}
}

// Value is what SetValue attached under key; nil if nothing, or once the
// stream has closed and its application has handled Closed.
func (s *Stream) Value(key any) any {
	s.valMu.Lock()
	defer s.valMu.Unlock()
	for _, v := range s.values {
		if v.key == key {
			return v.val
		}
	}
	return nil
}

func (s *Stream) clearValues() {
	s.valMu.Lock()
	s.values = nil
	s.valMu.Unlock()
}

// pauses are the reasons a stream's reading is paused; it is read again
// when there is none.
type pauses uint8

const (
	pauseInbound pauses = 1 << iota // frames waiting for the application past MaxInbound
	pauseAuth                       // the credential is being checked
)

// setPause sets or clears one reason to pause reading, and pauses or
// resumes the connection when that changes whether there is any.
func (s *Stream) setPause(why pauses, on bool) {
	s.flowMu.Lock()
	s.setPauseLocked(why, on)
	s.flowMu.Unlock()
}

// setPauseLocked is setPause with flowMu held, so that a decision and its
// effect are one step.
func (s *Stream) setPauseLocked(why pauses, on bool) {
	was := s.paused
	if on {
		s.paused |= why
	} else {
		s.paused &^= why
	}
	switch {
	case was == 0 && s.paused != 0:
		s.conn.PauseRead()
	case was != 0 && s.paused == 0:
		s.conn.ResumeRead()
	}
}

// ID is the stream's number: unique among the broker's streams for the
// life of its process, never reused, so it may name a stream in messages
// between actors (StreamList.Get finds the stream again).
func (s *Stream) ID() uint64 { return s.id }

// RemoteAddr is the client's address.
func (s *Stream) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// Identity is who the stream authenticated as; nil when the broker does
// not authenticate. It is set before the application hears of the stream
// (Connected) and never changes.
func (s *Stream) Identity() *Identity { return s.identity.Load() }

// Send queues payload as one frame to this stream; it copies payload.
// Frames sent from one actor are written in the order sent. It fails with
// ErrClosed once the stream closed, with ErrFrameTooLarge for a payload
// over 65,535 bytes, and with ErrSlowConsumer (closing the stream) when
// the stream's outbound queue is over its bound.
//
// For flow control the stream is its own producer: when what is sent to
// it piles up past 3/4 of its bound, its own reading stalls (a client
// that does not read its replies is not read either).
func (s *Stream) Send(payload []byte) error {
	s.view.set.batches.flush()
	return s.conn.SendFrom(s.conn, payload)
}

// Refuse answers a frame the application will not act on — one from an
// identity not allowed to publish, say — with the object
// {"refused": reason} (docs/PROTOCOL.md) and counts it (frames_refused in
// the telemetry reply). The stream stays open.
func (s *Stream) Refuse(reason string) error {
	s.rt.refused.Add(1)
	s.view.set.batches.flush()
	return s.conn.SendFrom(s.conn, telemetry.RefusalReply(reason))
}

// Close closes the stream; what is queued gets one attempt at being
// written first. Application actors then receive Closed with the reason
// (nil means ErrClosed).
func (s *Stream) Close(reason error) {
	s.view.set.batches.flush()
	s.conn.Close(reason)
}

// Queued reports the outbound bytes queued and not yet written.
func (s *Stream) Queued() int { return s.conn.Queued() }

// telemetryPeer is a stream as the telemetry path sees it
// (actors.TelemetryPeer): a type of its own, so that Stream's methods
// stay those of the handler API.
type telemetryPeer Stream

func (s *Stream) telemetryPeer() *telemetryPeer { return (*telemetryPeer)(s) }

// Reply implements actors.TelemetryPeer: as Stream.Send.
func (p *telemetryPeer) Reply(payload []byte) error { return (*Stream)(p).Send(payload) }

// ReplyFrame implements actors.TelemetryPeer.
func (p *telemetryPeer) ReplyFrame(frame []byte) error { return p.conn.SendFrame(frame) }

// Owe implements actors.TelemetryPeer.
func (p *telemetryPeer) Owe() { p.conn.Owe() }

// Settle implements actors.TelemetryPeer.
func (p *telemetryPeer) Settle() { p.conn.Settle() }

// Waiting implements actors.TelemetryPeer.
func (p *telemetryPeer) Waiting() *atomic.Int32 { return &p.telem }

// readPaused reports whether reading s is paused: the application is
// behind, or the credential is being checked.
func (s *Stream) readPaused() bool {
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	return s.paused != 0
}

// framesDone counts n frames handled (a read's, all of them): reading
// resumes once the backlog has halved from the bound that paused it.
func (s *Stream) framesDone(n int) {
	if s.pending.Add(-int32(n)) > s.rt.resumeAt {
		return
	}
	s.flowMu.Lock()
	if s.paused&pauseInbound != 0 && s.pending.Load() <= s.rt.resumeAt {
		s.setPauseLocked(pauseInbound, false)
	}
	s.flowMu.Unlock()
}

// framesIn counts n frames handed to actors and pauses reading when the
// backlog passes the bound. Called on the stream's event loop.
func (s *Stream) framesIn(n int) {
	if s.pending.Add(int32(n)) <= s.rt.maxInbound {
		return
	}
	s.flowMu.Lock()
	// Re-check under the lock: the actors may have caught up meanwhile, and
	// a pause decided on a stale count would never be undone.
	if s.paused&pauseInbound == 0 && s.pending.Load() > s.rt.maxInbound {
		s.setPauseLocked(pauseInbound, true)
	}
	s.flowMu.Unlock()
}

// StreamList is every open stream of the broker. Broadcasts encode a frame
// once and append the shared bytes to each stream's outbound queue
// directly, without a message to any actor. Its methods are safe for
// concurrent use.
//
// The list an application actor gets with a stream's messages (Connected,
// Received, Closed) is that stream's view of every stream: its broadcasts
// are made on that stream's behalf, so that when a receiver cannot keep
// up, the stream that feeds it is the one whose reading stalls (see
// Config.Overflow). The broker's own list publishes on nobody's
// behalf.
type StreamList struct {
	set  *streamSet
	from *Stream // the producer of what this view broadcasts; nil for none
}

// streamSet holds the open streams. They are kept in shards (as many as
// event loops, by stream ID), so that opening and closing a stream
// contends only with broadcasts passing its own shard, and a broadcast
// holds each shard's read lock only while it appends to that shard's
// queues.
type streamSet struct {
	shards []streamShard
	n      atomic.Int64

	// remote, when set, also carries every broadcast to the other nodes
	// of a cluster; nil on a broker running alone. Set before serving.
	remote func(from *Stream, group string, payload []byte)
	// known and whenKnown, when set (a clustered broker), say whether
	// and when the other nodes know the groups with members here (see
	// Group.WhenReachable); read without synchronisation, like remote.
	known     func(group string) bool
	whenKnown func(group string, fn func(confirmed bool))

	groups      groups
	batches     batches // streams holding broadcasts gathered in a run
	memberships atomic.Int64
}

type streamShard struct {
	mu      sync.RWMutex
	streams []*Stream
	byID    map[uint64]*Stream
	_       [32]byte // separate the shards' locks onto their own cache lines
}

func newStreamList(shards int) *StreamList {
	return &StreamList{set: &streamSet{shards: make([]streamShard, max(shards, 1))}}
}

// setView makes s.list s's view of the list: what it broadcasts, it
// produces.
func (l *StreamList) setView(s *Stream) {
	s.view = StreamList{set: l.set, from: s}
	s.list = &s.view
}

func (l *streamSet) add(s *Stream, shard int) {
	s.shard = shard % len(l.shards)
	sh := &l.shards[s.shard]
	sh.mu.Lock()
	s.slot = len(sh.streams)
	sh.streams = append(sh.streams, s)
	if sh.byID == nil {
		sh.byID = map[uint64]*Stream{}
	}
	sh.byID[s.ID()] = s
	sh.mu.Unlock()
	l.n.Add(1)
}

func (l *streamSet) remove(s *Stream) {
	sh := &l.shards[s.shard]
	sh.mu.Lock()
	last := len(sh.streams) - 1
	if s.slot <= last && sh.streams[s.slot] == s {
		moved := sh.streams[last]
		sh.streams[s.slot] = moved
		moved.slot = s.slot
		sh.streams[last] = nil
		sh.streams = sh.streams[:last]
		delete(sh.byID, s.ID())
		// Give memory back after a wave of disconnects.
		if cap(sh.streams) > 1024 && len(sh.streams) < cap(sh.streams)/4 {
			sh.streams = append([]*Stream(nil), sh.streams...)
		}
	}
	sh.mu.Unlock()
	l.n.Add(-1)
}

// Len is the number of open streams.
func (l *StreamList) Len() int { return int(l.set.n.Load()) }

// Get is the open stream numbered id (Stream.ID), or nil when there is
// none: it closed, or never was. A *Stream may be kept after it closes:
// its methods then fail with ErrClosed, and Get no longer finds it.
func (l *StreamList) Get(id uint64) *Stream {
	sh := &l.set.shards[id%uint64(len(l.set.shards))]
	sh.mu.RLock()
	s := sh.byID[id]
	sh.mu.RUnlock()
	return s
}

// Broadcast sends payload to every open stream and returns how many
// streams it was queued for. Streams that have closed, or that are closed
// now as slow consumers, are skipped; no stream waits for another.
//
// Called by an application running on the event loop (OnEventLoop) with
// its own messages' list, the frame is queued when the handler's run of
// its mailbox ends, together with the other frames that run broadcast —
// one append per stream for a read's worth of frames — and the count is
// of the streams open when it was called. Order is kept: anything the
// handler sends after a broadcast (Send, a group's broadcast, Close)
// queues the broadcast first.
func (l *StreamList) Broadcast(payload []byte) (int, error) {
	return l.BroadcastExcept(nil, payload)
}

// BroadcastExcept sends payload to every open stream but except (which may
// be nil), as Broadcast does.
func (l *StreamList) BroadcastExcept(except *Stream, payload []byte) (int, error) {
	if len(payload) > wire.MaxPayload {
		return 0, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(payload))
	}
	if l.set.remote != nil {
		l.set.remote(except, "", payload)
	}
	if l.from != nil && l.from.gather(except, payload) {
		n := l.Len()
		if except != nil {
			n--
		}
		return max(n, 0), nil
	}
	frame, err := wire.Encode(payload)
	if err != nil {
		return 0, err
	}
	return l.sendFrameExcept(except, frame), nil
}

// setRemote makes Broadcast and BroadcastExcept, and a Group's, also hand
// each payload to publish, with the stream excepted (the publishing
// stream, for the built-in applications; nil for Broadcast) and the
// group's name ("" for the whole list). A clustered broker sets it to
// publish to the other nodes, and hands what they publish to
// deliverRemote, which does not call it again. publish must copy payload
// and must not block. Call it before the first broadcast: it is read
// without synchronisation.
func (l *StreamList) setRemote(publish func(from *Stream, group string, payload []byte)) {
	l.set.remote = publish
}

// deliverRemote queues what another node published to the streams here:
// to every stream when group is "", else to the group's members (none, if
// it has none here). It returns how many streams it was queued for, and
// does not publish anything again.
func (l *StreamList) deliverRemote(group string, payload []byte) (int, error) {
	frame, err := wire.Encode(payload)
	if err != nil {
		return 0, err
	}
	if group == "" {
		return l.sendFrameExcept(nil, frame), nil
	}
	return Group{set: l.set, name: group}.sendFrame(nil, frame), nil
}

// sendFrameExcept queues an encoded frame (wire.Encode) to every open
// stream but except, sharing its bytes, and returns how many streams it
// was queued for. The frame must not be modified afterwards.
func (l *StreamList) sendFrameExcept(except *Stream, frame []byte) int {
	l.set.batches.flush()
	var producer *netpoll.Conn
	if l.from != nil {
		producer = l.from.conn
	}
	sent := 0
	for i := range l.set.shards {
		sh := &l.set.shards[i]
		sh.mu.RLock()
		for _, s := range sh.streams {
			if s != except && s.conn.SendFrameFrom(producer, frame) == nil {
				sent++
			}
		}
		sh.mu.RUnlock()
	}
	return sent
}

// sendFrames queues f to every open stream but except, on behalf of the
// view's producer, and returns how many streams it was queued for.
func (l *StreamList) sendFrames(except *Stream, f netpoll.Frames) int {
	var producer *netpoll.Conn
	if l.from != nil {
		producer = l.from.conn
	}
	sent := 0
	for i := range l.set.shards {
		sh := &l.set.shards[i]
		sh.mu.RLock()
		for _, s := range sh.streams {
			if s != except && s.conn.SendFramesFrom(producer, f) == nil {
				sent++
			}
		}
		sh.mu.RUnlock()
	}
	return sent
}

// Each calls fn for every open stream until fn returns false. fn runs
// outside the list's locks, on each shard's streams as they were when the
// shard was reached: it may Send to, Close and broadcast to streams, but
// must not block. A stream that closes meanwhile may still be passed to
// fn; its methods then fail with ErrClosed.
func (l *StreamList) Each(fn func(*Stream) bool) {
	bp := eachPool.Get().(*[]*Stream)
	defer func() {
		clear(*bp)
		if cap(*bp) <= maxKeptEach {
			eachPool.Put(bp)
		}
	}()
	for i := range l.set.shards {
		sh := &l.set.shards[i]
		sh.mu.RLock()
		*bp = append((*bp)[:0], sh.streams...)
		sh.mu.RUnlock()
		for _, s := range *bp {
			if !fn(s) {
				return
			}
		}
	}
}

// eachPool holds Each's copies of a shard; maxKeptEach bounds the size of
// those it keeps.
var eachPool = sync.Pool{New: func() any { return new([]*Stream) }}

const maxKeptEach = 4096
