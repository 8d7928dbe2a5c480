package broker_test

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// heapInUse is the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC() // a second pass frees what the first one's finalizers let go
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// TestIdleConnectionGivesMemoryBack: a connection that once sent a
// 65,535-byte frame in two reads, and got it echoed, holds no more once
// idle than one that only ever sent a few bytes: the read buffer that held
// the split frame, and the queue that held the reply, went back.
func TestIdleConnectionGivesMemoryBack(t *testing.T) {
	const n = 1000
	b := start(t, broker.Config{}, broker.Echo(), true, broker.OnEventLoop())
	var conns []net.Conn
	reply := make([]byte, wire.FrameSize(wire.MaxPayload)) // shared: the clients hold nothing per connection but their socket
	group := func(size int) int64 {
		before := heapInUse()
		frame, _ := wire.Encode(make([]byte, size))
		for range n {
			c, err := net.DialTimeout("tcp", b.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if size > 1000 {
				// Two reads: the broker holds the first part (its carry
				// buffer counts in the memory budget) before the rest comes.
				if _, err := c.Write(frame[:30000]); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the first part to be read", 10*time.Second, func() bool { return b.Stats().IO.MemoryUsed > 0 })
				frame = frame[30000:]
			}
			if _, err := c.Write(frame); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, reply[:wire.FrameSize(size)]); err != nil {
				t.Fatal(err)
			}
			frame, _ = wire.Encode(make([]byte, size))
		}
		return (heapInUse() - before) / n
	}
	group(5) // grows the tables that keep their size (stream list, fd table, actor registry)
	small := group(5)
	big := group(wire.MaxPayload)
	t.Logf("live heap per idle connection, clients included: %d bytes after a small echo, %d after a split 64 KiB one", small, big)
	if big > small+1024 {
		t.Errorf("a connection idle after a split 64 KiB frame holds %d bytes of heap, one after a small frame %d: want at most 1 KiB more", big, small)
	}
	for _, c := range conns {
		c.Close()
	}
}
