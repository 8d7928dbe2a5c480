package cluster_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hydrogen-mq/hydrogen/internal/testnet"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// BenchmarkPubSubTwoNodes is the road not taken, measured: protoactor's
// own cluster PubSub (a topic actor, a BatchingProducer on the publishing
// node, a subscriber on the other) carrying the same 64-byte frames
// between two nodes as BenchmarkAcrossTwoNodes. It reports frames/s at
// the subscriber, and how many frames never arrived.
func BenchmarkPubSubTwoNodes(b *testing.B) {
	if raceDetector {
		b.Skip("protoactor-go races with itself when two nodes share a process (see raceDetector)")
	}
	addrs := []string{testnet.ClusterAddr(b), testnet.ClusterAddr(b)}
	var hosts []string
	for _, a := range addrs {
		h, p, _ := net.SplitHostPort(a)
		port, _ := strconv.Atoi(p)
		hosts = append(hosts, net.JoinHostPort(h, strconv.Itoa(port+1)))
	}
	var cls []*pacluster.Cluster
	for _, a := range addrs {
		h, p, _ := net.SplitHostPort(a)
		port, _ := strconv.Atoi(p)
		sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return testLogger() }))
		cfg := pacluster.Configure("pubsub", automanaged.NewWithConfig(time.Second, port+1, hosts...), disthash.New(),
			remote.Configure(h, port, remote.WithAdvertisedHost(a), remote.WithEndpointWriterQueueSize(4096)))
		c := pacluster.New(sys, cfg)
		c.StartMember()
		cls = append(cls, c)
	}
	defer func() {
		for _, c := range cls {
			c.Shutdown(true)
		}
	}()
	for deadline := time.Now().Add(20 * time.Second); cls[0].MemberList.Length() < 2 || cls[1].MemberList.Length() < 2; {
		if time.Now().After(deadline) {
			b.Fatal("the two nodes did not see each other")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var got atomic.Int64
	if _, err := cls[1].SubscribeWithReceive("bench", func(ctx actor.Context) {
		if _, ok := ctx.Message().(*wrapperspb.BytesValue); ok {
			got.Add(1)
		}
	}); err != nil {
		b.Fatal(err)
	}
	producer := cls[0].BatchingProducer("bench", pacluster.WithBatchingProducerMaxQueueSize(100000))
	defer producer.Dispose()
	payload := make([]byte, 64)
	b.SetBytes(64)
	b.ResetTimer()
	start := time.Now()
	ctx := context.Background()
	for i := 0; i < b.N; {
		_, err := producer.Produce(ctx, &wrapperspb.BytesValue{Value: payload})
		var full *pacluster.ProducerQueueFullException
		switch {
		case err == nil:
			i++
		case errors.As(err, &full):
			time.Sleep(50 * time.Microsecond)
		default:
			b.Fatal(err)
		}
	}
	// Wait for everything, or until nothing has arrived for two seconds.
	last, lastN := time.Now(), int64(-1)
	for got.Load() < int64(b.N) {
		if n := got.Load(); n != lastN {
			last, lastN = time.Now(), n
		} else if time.Since(last) > 2*time.Second {
			break
		}
		time.Sleep(50 * time.Microsecond)
	}
	el := time.Since(start)
	if got.Load() < int64(b.N) {
		el = last.Sub(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(got.Load())/el.Seconds(), "frames/s")
	b.ReportMetric(float64(int64(b.N)-got.Load()), "lost")
}
