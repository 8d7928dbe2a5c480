// Package cluster joins hydrogen brokers into one protoactor-go cluster and
// carries their broadcasts from node to node.
//
// Membership is protoactor-go's: cluster.Cluster with a ClusterProvider
// (the automanaged provider over a fixed peer list by default; consul,
// etcd or Kubernetes by setting Config.Provider), gossip and the member
// list's ClusterTopology events. This package adds no membership protocol
// of its own; it reacts to joins and leaves, and logs them.
//
// The data path is protoactor-go's remote: every node runs one receiver
// actor under a well-known name, and a node's broadcasts go straight to
// the receiver actor of every other member, in batches. Cluster PubSub was
// read and set aside: its topic is a virtual actor living on one node, so
// every batch takes two hops, the topic's node is a single point every
// broadcast waits on (a request and reply per batch), and its
// subscriptions, kept in an empty store, are lost when the topic moves
// after a join or a leave. Sending directly takes one hop and keeps
// nothing in a single place.
//
// # Batches
//
// Publish appends the frame to the current batch under a short lock and
// returns; it never blocks and never waits for the network. A batch is
// sent when the sender goroutine gets to it, which under load is when the
// previous batches have been acknowledged, so batches grow with the load
// (up to 64 KiB of frames). On the wire a batch is one
// wrapperspb.BytesValue whose bytes are the protobuf encoding of
//
//	message Batch {
//	  uint64 node = 1;            // the sending node's incarnation
//	  uint64 seq = 2;             // batch number, 1, 2, 3 ... per sending node
//	  uint64 first = 3;           // node-wide number of the first frame
//	  repeated Frame frames = 4;  // in publish order
//	}
//	message Frame {
//	  uint64 publisher = 1;       // who published it (a stream, for the broker)
//	  bytes payload = 2;
//	}
//
// written with protowire (fields may come in any order on the protobuf
// wire, so the header follows the frames and frames are encoded once, as
// they are published).
//
// # Bounds and what is dropped
//
// Nothing is unbounded. Each peer has at most Window batches in flight
// (sent, not acknowledged) and behind them a backlog of at most
// MaxPending bytes. A batch moves into the backlogs as soon as one peer
// has room for it; a peer without room loses it: dropped for that peer
// only, counted per frame, logged at most once a second, and seen by the
// peer as a gap in the batch numbers. When no peer has room, batches wait
// on the publishing side, bounded by MaxPending bytes too; past that,
// Publish drops the frame, counts it and returns ErrFull. So a node that
// cannot keep up loses frames, and nobody else waits: not the other peers
// and not the publishing node's own streams. A batch unacknowledged for
// AckTimeout is taken as lost and frees its place in the window.
//
// # Order
//
// Frames are numbered in the order Publish appends them, under one lock,
// so the frames of one publisher (calls made one after another) are in
// order within the node's sequence. Batches to one peer leave from a
// single goroutine in sequence order, travel over the one remote
// connection protoactor keeps per address (FIFO), and are handled by one
// receiver actor (its mailbox is FIFO), which calls deliver for each frame
// in order. Nothing is ever resent, and a receiver drops any batch whose
// number is not above the last it saw from that node, so there are no
// duplicates. A node does not send to itself.
package cluster
